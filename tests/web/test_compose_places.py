"""The commune list shipped as data (adapters/communes.py) and its autocomplete route GET /communes."""

from __future__ import annotations

import gzip

import pytest

from adapters.communes import SHIPPED, Communes, PlaceAmbiguous, PlaceNotFound, shipped
from tests.conftest import rpps
from tests.web.conftest import login

HX = {"HX-Request": "true"}


def labels(found) -> list[str]:
    return [p.label for p in found]


def test_the_shipped_list_names_its_source_and_holds_communes_former_communes_districts_and_countries():
    head = gzip.open(SHIPPED, "rt", encoding="utf-8").readline()
    assert "@etalab/decoupage-administratif 6.0.0" in head and "sha512-" in head
    places = shipped()
    kinds = {p.kind for p in places.places}
    assert kinds == {"commune", "arrondissement", "deleguee", "associee", "pays"}
    assert len([p for p in places.places if p.kind == "commune"]) > 34_000


def test_search_by_the_start_of_words_accents_and_case_ignored():
    places = shipped()
    assert labels(places.search("toul"))[:2] == ["Toul (54)", "Toulouse (31)"]  # the exact name first, then by size
    assert labels(places.search("SAINT ÉTIEN"))[0] == "Saint-Étienne (42)"
    assert labels(places.search("etienne saint"))[0] == "Saint-Étienne (42)"  # words in any order
    assert "Vieille-Toulouse (31)" in labels(places.search("toulouse"))  # a word of the name, not only its start
    assert labels(places.search("allem"))[0] == "Allemagne (étranger)"  # a country ranks with the large towns
    assert labels(places.search("st gaud"))[0] == "Saint-Gaudens (31)"  # « St », « Ste » as written on papers
    assert labels(places.search("stras"))[0] == "Strasbourg (67)" and places.resolve("Ste-Foy (85)").code == "85214"
    assert [p.code for p in places.search("31555")] == ["31555"]
    assert places.search("zzzz") == [] and places.search("  ") == []


def test_a_former_commune_is_found_and_told_as_such():
    places = shipped()
    arbignieu = places.resolve("Arbignieu")
    assert arbignieu.code == "01015" and arbignieu.kind == "deleguee"
    assert places.describe(arbignieu) == "Arbignieu (01) — commune déléguée d'Arboys en Bugey"
    assert places.by_code("01015").name == "Arboys en Bugey"  # a code names today's commune first


def test_resolve_a_name_a_label_a_code_the_ambiguous_and_the_unknown():
    places = shipped()
    assert places.resolve("toulouse").code == "31555"
    assert places.resolve("Beaulieu (43)").code == "43021"
    assert places.resolve("Allemagne (étranger)").code == "99109"
    assert places.resolve("75056").name == "Paris" and places.resolve("75101").kind == "arrondissement"
    assert places.resolve("97999") == "97999"  # well formed but not listed (a former code): kept as typed
    with pytest.raises(PlaceAmbiguous) as ambiguous:
        places.resolve("Beaulieu")
    assert len(ambiguous.value.candidates) > 5 and "43021" in {p.code for p in ambiguous.value.candidates}
    with pytest.raises(PlaceNotFound):
        places.resolve("Toulouze")
    with pytest.raises(PlaceNotFound):
        places.resolve("Toulouse (34)")


def test_a_list_loaded_from_another_file(tmp_path):
    path = tmp_path / "c.csv.gz"
    path.write_bytes(gzip.compress(b"# test\ncode;name;department;kind;parent;population\n31555;Toulouse;31;commune;;1\n"))
    places = Communes.load(path)
    assert places.source == "test" and labels(places.search("tou")) == ["Toulouse (31)"]


def test_the_route_answers_htmx_options_and_json(client, passwords):
    login(client, rpps(1))
    options = client.get("/communes?birth_place=toul", headers=HX)
    assert options.status_code == 200
    assert 'role="listbox"' in options.text and 'data-code="31555"' in options.text and 'data-label="Toulouse (31)"' in options.text
    json = client.get("/communes?q=saint-gaud").json()
    assert json[0] == {"code": "31483", "name": "Saint-Gaudens", "department": "31", "kind": "commune",
                       "label": "Saint-Gaudens (31)", "description": "Saint-Gaudens (31)"}
    assert client.get("/communes?q=t").json() == []  # one letter: nothing yet


def test_the_route_is_for_signed_in_clinicians(client, passwords):
    assert client.get("/communes?q=toul", follow_redirects=False).status_code in (302, 303, 401)
    login(client, rpps(4))  # an auditor
    assert client.get("/communes?q=toul").status_code == 403
