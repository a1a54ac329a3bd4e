"""The counts a PACS retrieve compares cover the same set: what the PACS announced per series against
what was recorded of those series, the series list asked again when the counts disagree (issue 11
item 8). The PACS (Orthanc) changes during the retrieve: a series removed between the study-level and
the series-level search, a series added between the search and the C-MOVE."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from adapters.dicom.qr import QueryRetrieve, QuerySession
from adapters.dicom.retrieve import Retriever
from adapters.dicom.storage import InstanceStore
from domain.imaging import received_study_id
from tests.adapters import test_retrieve_interrupted
from tests.peers import ORTHANC, Orthanc, free_port

sys.path.insert(0, str(Path(__file__).parent.parent))
from dicomdata import write_study  # noqa: E402

node = test_retrieve_interrupted.node  # our node serving, a dossier: the fixture, on this module's `pacs`
pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (scripts/system-packages.sh)")


@pytest.fixture()
def pacs(tmp_path):
    node_port = free_port()
    study = write_study(tmp_path / "study", accession="ACC-CNT", patient_id="PAT010", series=2, per_series=3)
    with Orthanc(tmp_path / "orthanc", modalities={"RELAIS": ("127.0.0.1", node_port)}) as o:
        o.upload(study["files"])
        yield {"orthanc": o, "study": study, "node_port": node_port, "folder": tmp_path}


def _retriever(relais, node) -> Retriever:
    return Retriever(app=relais, store=InstanceStore(node["settings"].dicom_root), our_aet="RELAIS", settle=1.0, timeout=10)


def _series_uids(files) -> list[str]:
    return sorted({str(dcmread(f, stop_before_pixels=True).SeriesInstanceUID) for f in files})


def test_a_series_removed_between_the_study_and_the_series_search_does_not_make_the_study_incomplete(
    relais, world, pacs, node, monkeypatch,
):
    """The study-level answer still counts 6 instances, the series list then has one series of 3:
    asked again, the PACS agrees on 3, and the 3 retrieved make it complete (it said « 3 reçues sur 6 »
    after three attempts)."""
    o, study = pacs["orthanc"], pacs["study"]
    gone = _series_uids(study["files"])[0]
    real = QuerySession.find_series
    removed: list[str] = []

    def find_series(self, study_uid):
        if not removed:
            (found,) = o.rest("/tools/lookup", gone.encode(), "POST")  # type: ignore[misc]
            o.rest(f"/series/{found['ID']}", method="DELETE")
            removed.append(gone)
        return real(self, study_uid)

    monkeypatch.setattr(QuerySession, "find_series", find_series)
    out = _retriever(relais, node).retrieve(dossier_id=node["dossier"], study_uid=study["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.expected, out.received, out.attempts) == ("completed", 3, 3, 1), out.reason
    (attached,) = relais.get_dossier(dossier_id=node["dossier"], actor_id=world["requester"]).imaging
    assert attached["instance_count"] == 3


def test_a_series_added_between_the_search_and_the_c_move_is_counted_with_the_rest(
    relais, world, pacs, node, monkeypatch,
):
    """The C-MOVE of the whole study brings a series the search did not list: the series list is asked
    again and the outcome counts it, expected and received alike (it said 6 of 6 for a study of 9)."""
    o, study = pacs["orthanc"], pacs["study"]
    extra = write_study(pacs["folder"] / "extra", accession="ACC-CNT", patient_id="PAT010", series=1, per_series=3,
                        study_uid=study["study_uid"])
    real = QueryRetrieve.move
    added: list[bool] = []

    def move(self, *args, **kwargs):
        if not added:
            o.upload(extra["files"])
            added.append(True)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(QueryRetrieve, "move", move)
    out = _retriever(relais, node).retrieve(dossier_id=node["dossier"], study_uid=study["study_uid"], node_aet="ORTHANC")
    assert (out.status, out.expected, out.received) == ("completed", 9, 9), out.reason
    s = relais.repository.get(received_study_id(world["toulouse"], study["study_uid"]))
    assert len(s.instances) == 9 and len(s.series) == 3
    assert json.loads(json.dumps(s.last_retrieve))["received"] == 9
