"""Imaging from files: DICOM files, ZIPs or a CD folder uploaded, reviewed, then imported into the dossier."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import anyio
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Template

from adapters.dicom.fileimport import (
    MAX_FILES,
    MAX_TOTAL_BYTES,
    ImportRejected,
    discard,
    extract_zip,
    import_studies,
    safe_name,
    scan,
)
from adapters.dicom.importcleanup import folder_bytes, user_bytes
from adapters.dicom.recording import recorder
from adapters.private_files import private_dir, write_private
from application.errors import NotFoundError
from domain.errors import InvalidFieldError
from domain.imaging import dicom_identity, identity_rows
from web.forms import ItemForm
from web.pages.imaging import form_list, received_fragment, requester_only
from web.services import Services
from web.session import SessionUser
from web.uploads import BrokenUpload, form_boundary, receive

IMPORT_MAX_BYTES = 4 * 1024**3
IMPORT_ID = re.compile(r"[0-9a-f]{32}")


def _import_dir(services: Services, import_id: str) -> Path:
    if not IMPORT_ID.fullmatch(import_id):
        raise NotFoundError("import introuvable")
    return services.settings.data_dir / "imports" / import_id


def _review(services: Services, user: SessionUser, dossier_id: str, import_id: str, notice: str = "") -> Template:
    """The import's review: one row per study and patient identity (a study naming two patients is
    split), each compared with the dossier's patient; several patients or a difference ask for « J'ai vérifié »."""
    folder = _import_dir(services, import_id)
    owner = json.loads((folder / "owner.json").read_text()) if (folder / "owner.json").exists() else {}
    if (owner.get("dossier_id"), owner.get("practitioner_id")) != (dossier_id, user.practitioner_id):
        raise NotFoundError("import introuvable")
    result = scan(folder / "files")
    d = services.relais.get_dossier(dossier_id=dossier_id, actor_id=user.practitioner_id)
    studies = []
    for s in result.studies.values():
        (row,) = identity_rows(d.patient, {s.identity: dicom_identity(s.patient)})
        studies.append({
            "key": s.key, "uid": s.study_instance_uid, "identity": s.identity, "patient": s.patient,
            "description": s.description, "date": s.study_date, "modalities": sorted(s.modalities),
            "count": len(s.files), "accession": s.accession_number, "differences": row["differences"],
            "split": result.split(s.study_instance_uid),
        })
    several = len(result.patients) > 1
    return Template("imaging/_import_review.html", context={
        "dossier_id": dossier_id, "import_id": import_id, "studies": studies, "skipped": result.skipped,
        "refused": [(r, "chemin refusé") if isinstance(r, str) else tuple(r) for r in owner.get("refused", [])],
        "dicomdir": result.dicomdir, "must_confirm": several or any(s["differences"] for s in studies),
        "patient": d.patient, "several_patients": several, "notice": notice,
        "identities": identity_rows(d.patient, {s.identity: dicom_identity(s.patient) for s in result.studies.values()},
                                    {s.identity: len(s.files) for s in result.studies.values()}),
    })


def _gib(n: int) -> str:
    """A size as people read it: « 20 Gio », « 1,5 Gio », « 300 Mio »."""
    value, unit = (n / 1024**3, "Gio") if n >= 1024**3 else (n / 1024**2, "Mio")
    return f"{value:.1f}".rstrip("0").rstrip(".").replace(".", ",") + f" {unit}"


class OverQuota(ImportRejected):
    """One user's imports in progress would exceed RELAIS_IMPORT_USER_MAX_BYTES."""

    def __init__(self, cap: int):
        super().__init__(
            f"vos imports d'imagerie en cours dépassent la limite de {_gib(cap)} par utilisateur : importez ou "
            "abandonnez ceux qui attendent votre vérification (ils sont supprimés après un jour), ou envoyez moins "
            "de fichiers à la fois"
        )


@dataclass
class _Budget:
    """The bytes this user's imports may still take (RELAIS_IMPORT_USER_MAX_BYTES minus those in progress)."""

    cap: int
    left: int

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise OverQuota(self.cap)


class _UploadedFile:
    """An uploaded file written to `<upload>/<nnnnnn>/<name>` (nnnnnn: its rank in the form), readable by
    the platform's user only, counted against the user's budget; an aborted one is removed."""

    def __init__(self, rel: PurePosixPath, target: Path, budget: _Budget):
        self.rel, self.target, self.budget = rel, target, budget
        target.parent.mkdir(mode=0o700, parents=True)
        self.file = os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    @classmethod
    def opener(cls, upload: Path, budget: _Budget) -> Callable[[str], _UploadedFile]:
        count = 0

        def open_file(filename: str) -> _UploadedFile:
            nonlocal count
            count += 1
            rel = safe_name(filename) or PurePosixPath(f"fichier-{count}")
            return cls(rel, upload / f"{count:06d}" / rel.name, budget)

        return open_file

    def write(self, data: bytes) -> None:
        self.budget.take(len(data))
        self.file.write(data)

    def finish(self) -> tuple[str, Path]:
        self.file.close()
        return str(self.rel), self.target

    def abort(self) -> None:
        self.file.close()
        self.target.unlink(missing_ok=True)


@post("/dossiers/{dossier_id:str}/dicom/import", name="imaging-import-upload", request_max_body_size=IMPORT_MAX_BYTES)
async def import_upload(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser], dossier_id: FromPath[str],
) -> Template:
    """Files, ZIPs or a CD folder (multipart, several files) streamed to disk, then scanned."""
    await anyio.to_thread.run_sync(lambda: requester_only(services, user, dossier_id))
    boundary = form_boundary(request)
    if boundary is None:
        raise InvalidFieldError("file", "formulaire de fichiers attendu")
    import_id = uuid.uuid4().hex
    folder = _import_dir(services, import_id)
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)
    (folder / "upload").mkdir(mode=0o700)
    (folder / "files").mkdir(mode=0o700)
    owner = {"dossier_id": dossier_id, "practitioner_id": user.practitioner_id}
    write_private(folder / "owner.json", json.dumps(owner | {"refused": []}).encode())  # counted while it uploads
    cap = services.settings.import_user_max_bytes
    budget = _Budget(cap, cap - await anyio.to_thread.run_sync(
        lambda: user_bytes(folder.parent, user.practitioner_id, skip=import_id)))
    if budget.left <= 0:
        discard(folder)
        raise OverQuota(cap)
    try:
        form = await receive(request, boundary, "files", _UploadedFile.opener(folder / "upload", budget),
                             max_segments=MAX_FILES + 10)
    except BrokenUpload:
        discard(folder)
        raise InvalidFieldError("file", "envoi de fichiers incomplet ou invalide") from None
    except BaseException:  # client gone, body over the limit, cancelled: nothing of the upload is kept
        discard(folder)
        raise
    uploaded = [part for _name, part in form.files]
    if not uploaded:
        discard(folder)
        raise InvalidFieldError("file", "choisissez des fichiers DICOM, une archive ZIP ou le dossier d'un CD")

    def unpack() -> list[tuple[str, str]]:
        """ZIPs extracted each in its own folder; files of a folder upload (a CD) placed at the relative
        path the browser sent, so that a DICOMDIR finds the files it references; loose files each in
        their own folder (two files of the same name never collide)."""
        refused: list[tuple[str, str]] = []
        for rel, path in uploaded:
            with path.open("rb") as f:
                is_zip = f.read(4) == b"PK\x03\x04"
            dest = folder / "files" / path.parent.name
            if is_zip:  # what it unpacks to counts against the budget too (the archive is then removed)
                room = budget.left + path.stat().st_size
                try:
                    refused += extract_zip(path, dest, max_total=min(MAX_TOTAL_BYTES, room))
                except ImportRejected as e:
                    if room < MAX_TOTAL_BYTES and "taille" in str(e):
                        raise OverQuota(cap) from None
                    raise
                budget.take(folder_bytes(dest) - path.stat().st_size)
                path.unlink()
                continue
            name = safe_name(rel) or PurePosixPath(path.name)
            target = folder / "files" / "tree" / name if len(name.parts) > 1 else dest / name
            if target.exists():  # the same relative path sent twice: kept apart
                target = dest / name
            private_dir(target.parent)
            path.replace(target)
        return refused

    try:
        refused = await anyio.to_thread.run_sync(unpack)
    except BaseException:  # a limit broken, a disk full, anything: nothing of the upload is kept
        discard(folder)
        raise
    write_private(folder / "owner.next", json.dumps(owner | {"refused": refused}).encode())
    (folder / "owner.next").replace(folder / "owner.json")
    return await anyio.to_thread.run_sync(lambda: _review(services, user, dossier_id, import_id))


@dataclass
class ConfirmForm(ItemForm):
    study_uids: list[str] | str = field(default_factory=list)  # one value arrives as a str
    confirm_identity: str = ""


@post("/dossiers/{dossier_id:str}/dicom/import/{import_id:str}", name="imaging-import-confirm", sync_to_thread=True)
def import_confirm(
    request: Request[Any, Any, Any], services: NamedDependency[Services], user: NamedDependency[SessionUser],
    dossier_id: FromPath[str], import_id: FromPath[str],
    data: Annotated[ConfirmForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template:
    """Imports the studies chosen; several patients or an identity mismatch need an explicit confirmation."""
    requester_only(services, user, dossier_id)
    review = _review(services, user, dossier_id, import_id)
    data.require(user)  # before the studies are recorded, not only before they are attached
    rows = {s["key"]: s for s in review.context["studies"]}
    chosen = [k for k in dict.fromkeys(form_list(data.study_uids)) if k in rows]
    if not chosen:
        review.context["notice"] = "Choisissez au moins un examen à importer."
        return review
    needs = len({rows[k]["identity"] for k in chosen}) > 1 or any(rows[k]["differences"] for k in chosen)
    confirmed = data.confirm_identity == "yes"
    if needs and not confirmed:
        review.context["notice"] = "Vérifiez l'identité du patient puis cochez la confirmation."
        return review
    folder = _import_dir(services, import_id)
    web = services.imaging
    result = scan(folder / "files")
    updates = import_studies(result, chosen, store=web.store, establishment_id=user.establishment_id,
                             record=recorder(services.relais))
    study_ids = {u.study_instance_uid: u.study_id for u in updates}
    by_study: dict[str, list[str]] = {}  # study UID → the identities chosen in it
    for k in chosen:
        by_study.setdefault(rows[k]["uid"], []).append(rows[k]["identity"])
    # each study once per form sent; the first on the version shown, the next on the version the previous made;
    # only the identities chosen are attached, a confirmation recorded where one was needed
    for (uid, identities), (i, version) in zip(by_study.items(), data.versions(len(by_study)), strict=True):
        services.relais.attach_received_study(
            dossier_id=dossier_id, actor_id=data.acting(user, i), study_id=study_ids[uid], source="file_import",
            expected_version=version, identities=identities, confirm_identity=confirmed,
        )
    discard(folder)
    t = received_fragment(request, services, user, dossier_id, "", f"{len(by_study)} examen(s) importé(s) et joint(s) au télédossier.")
    t.headers["HX-Trigger"] = "imaging-changed"
    return t


HANDLERS = [import_upload, import_confirm]
