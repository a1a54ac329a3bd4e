"""Imaging import through the web: a CD uploaded as a folder keeps its paths (its DICOMDIR resolves),
abandoned imports are removed, one user's imports in progress are capped (issue 11 items 11, 12)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.adapters.test_file_import import cd_folder
from tests.conftest import PATIENT, rpps
from tests.web.conftest import csrf_from, login

HX = {"HX-Request": "true"}


@pytest.fixture()
def draft(relais, passwords, world):
    return relais.create_dossier(
        actor_id=world["requester"], workflow="imaging_transfer", question="Avis ?", consent="given",
        imaging_source="file_import", **PATIENT,
    )


def headers(client, did: str) -> dict:
    return HX | {"x-csrftoken": csrf_from(client.get(f"/dossiers/{did}/edit/imaging").text)}


def folder_upload(root: Path, top: str) -> list:
    """Every file under `root` as a browser sends a folder chosen with webkitdirectory: the multipart
    filename is the relative path under the folder's name (webkitRelativePath)."""
    files = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            files.append(("files", (f"{top}/{p.relative_to(root).as_posix()}", p.read_bytes(), "application/octet-stream")))
    return files


@pytest.mark.skipif(shutil.which("dcmmkdir") is None, reason="dcmtk not installed")
def test_a_cd_uploaded_as_a_folder_keeps_its_paths_and_its_dicomdir_resolves(client, relais, world, draft, tmp_path):
    """Before: each file landed in its own numbered folder, so the review always said « DICOMDIR
    incohérent : 4 fichier(s) référencé(s) absent(s) »."""
    study = cd_folder(tmp_path)  # DICOM/ST1/IM00000n and a DICOMDIR written by dcmtk's dcmmkdir
    login(client, rpps(1))
    r = client.post(f"/dossiers/{draft}/dicom/import", files=folder_upload(tmp_path / "cd", "CD_PATIENT"),
                    headers=headers(client, draft))
    assert r.status_code == 200, r.text[:500]
    assert "incohérent" not in r.text and "DICOMDIR lu : tous les fichiers" in r.text
    assert study["study_uid"] in r.text and "Aucune image" not in r.text
def relais_data(client) -> str:
    return str(client.app.state.services.settings.data_dir)


def test_abandoned_imports_are_removed_after_a_day(client, relais, world, draft, tmp_path, settings):
    """Before: an import never confirmed nor rejected stayed under imports/ for ever."""
    from adapters.dicom.importcleanup import remove_abandoned

    cd_folder(tmp_path)
    login(client, rpps(1))
    r = client.post(f"/dossiers/{draft}/dicom/import", files=folder_upload(tmp_path / "cd", "CD"),
                    headers=headers(client, draft))
    import_id = re.search(r"/dicom/import/([0-9a-f]{32})", r.text).group(1)
    imports = Path(relais_data(client)) / "imports"
    fresh = imports / import_id
    assert fresh.is_dir()
    old = imports / ("0" * 32)
    (old / "files").mkdir(parents=True)
    (old / "files" / "x.dcm").write_bytes(b"x" * 10)
    day_ago = time.time() - 25 * 3600
    for p in [old, old / "files", old / "files" / "x.dcm"]:
        os.utime(p, (day_ago, day_ago))
    assert remove_abandoned(imports, max_age=24 * 3600) == 1
    assert not old.exists() and fresh.is_dir()  # the one in progress is left alone


def test_the_web_process_sweeps_abandoned_imports_when_it_starts(app, relais, tmp_path):
    """The sweep is a hook of the web application (so it runs under relais up and make run)."""
    from litestar.testing import TestClient

    imports = Path(app.state.services.settings.data_dir) / "imports"
    old = imports / ("a" * 32)
    (old / "files").mkdir(parents=True)
    day_ago = time.time() - 25 * 3600
    for p in [old, old / "files"]:
        os.utime(p, (day_ago, day_ago))
    with TestClient(app=app):
        deadline = time.monotonic() + 60
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not old.exists()


def test_one_users_imports_in_progress_are_capped(relais, world, draft, settings):
    """Before: nothing bounded what one user's unconfirmed imports held on disk."""
    from dataclasses import replace

    from litestar.testing import TestClient

    from entrypoints.bootstrap import build_web_app

    app = build_web_app(replace(settings, import_user_max_bytes=3 * 1024**2))  # RELAIS_IMPORT_USER_MAX_BYTES
    blob = os.urandom(2 * 1024**2)
    with TestClient(app=app) as client:
        login(client, rpps(1))
        first = client.post(f"/dossiers/{draft}/dicom/import", files=[("files", ("a.bin", blob, "application/octet-stream"))],
                            headers=headers(client, draft))
        assert first.status_code == 200  # 2 MiB in review
        second = client.post(f"/dossiers/{draft}/dicom/import", files=[("files", ("b.bin", blob, "application/octet-stream"))],
                             headers=headers(client, draft))
        assert second.status_code in (413, 422), second.status_code
        assert "dépassent la limite de 3 Mio par utilisateur" in second.text
        imports = Path(relais_data(client)) / "imports"
        assert len(list(imports.iterdir())) == 1  # nothing of the refused upload is kept
