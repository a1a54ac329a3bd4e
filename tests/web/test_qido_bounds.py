"""QIDO-RS bounds through an independent client (`dicomweb-client`) against a live `relais serve`:
a cache-buster and other unknown parameters are ignored (named in a Warning), not refused; a `limit`
beyond the server's maximum is served, not refused; a matching value longer than any DICOM value is
refused with the reason. (The wildcard matcher's bounds on long values: tests/web/test_qido_query.py.)"""

from __future__ import annotations

import pytest

from tests.conftest import rpps
from tests.web.test_dicomweb_client import client_for, live, uids  # noqa: F401 - the module's live server

pytest.importorskip("dicomweb_client.api")


def test_a_cache_buster_and_unknown_parameters_are_ignored(live):  # noqa: F811
    c = client_for(live)
    a, b = live["A"]["uid"], live["B"]["uid"]
    assert sorted(uids(c.search_for_studies(search_filters={"_": "1733580000000"}))) == sorted([a, b])
    assert uids(c.search_for_studies(search_filters={"_": "1733580000000", "PatientID": "PAT001"})) == [b]
    assert len(c.search_for_instances(b, search_filters={"_": "1"})) == 8
    r = c._session.get(f"{live['base']}/dicomweb/dossiers/{live['did']}/studies",
                       params={"_": "1733580000000", "Foo": "bar", "PatientName": "dup*"}, timeout=30)
    assert r.status_code == 200 and uids(r.json()) == [b]
    warning = r.headers["Warning"]
    assert warning.startswith("299 relais: The following query parameters were not understood and were ignored: ")
    assert sorted(warning.rsplit(": ", 1)[1].split(", ")) == ["Foo", "_"]


def test_a_limit_beyond_the_maximum_is_served(live):  # noqa: F811
    c = client_for(live)
    b = live["B"]["uid"]
    assert len(c.search_for_instances(b, limit=10**9 - 1)) == 8
    assert len(c.search_for_instances(b, limit=10**9 - 1, offset=6)) == 2
    r = c._session.get(f"{live['base']}/dicomweb/dossiers/{live['did']}/studies/{b}/instances", params={"limit": "3"}, timeout=30)
    assert len(r.json()) == 3 and "Warning" not in r.headers  # the client's own limit: nothing to warn of


def test_an_over_long_matching_value_is_refused_with_the_reason(live):  # noqa: F811
    c = client_for(live, rpps(2))
    r = c._session.get(f"{live['base']}/dicomweb/dossiers/{live['did']}/studies", params={"PatientName": "*?" * 200}, timeout=60)
    assert r.status_code == 400 and "PatientName" in r.json()["message"] and "trop longue" in r.json()["message"]
    assert uids(c.search_for_studies(search_filters={"PatientName": "*?" * 5 + "E"})) == [live["B"]["uid"]]
