"""French identifiers: FINESS and RPPS Luhn keys, department codes, regions, NIR (INS) keys."""

from __future__ import annotations

import pytest

from domain.errors import InvalidFieldError
from domain.identifiers import (
    OCCITANIE,
    check_department,
    check_finess,
    check_nir,
    check_region,
    check_rpps,
    luhn_key,
    luhn_ok,
    region_of,
)


def nir(body: str) -> str:
    """A NIR with its key: 97 - (n mod 97), where n is the 13-character body (2A → 19, 2B → 18)."""
    numeric = body[:5] + body[5:7].replace("2A", "19").replace("2B", "18") + body[7:]
    return body + f"{97 - int(numeric) % 97:02d}"


# ------------------------------------------------------------------ Luhn


def test_luhn_on_known_numbers():
    assert luhn_ok("79927398713")  # the textbook example
    assert not luhn_ok("79927398710")
    assert luhn_key("7992739871") == "3"


# ------------------------------------------------------------------ FINESS


@pytest.mark.parametrize("finess", ["310781406", "340780477", "300780038"])
def test_finess_valid(finess):
    assert check_finess(finess) == finess


def test_finess_is_trimmed():
    assert check_finess(" 310781406 ") == "310781406"


@pytest.mark.parametrize("finess", ["310781407", "340780470", "300780031"])
def test_finess_wrong_key_refused(finess):
    with pytest.raises(InvalidFieldError) as e:
        check_finess(finess)
    assert e.value.field == "finess"
    assert "clé" in e.value.message


@pytest.mark.parametrize("finess", ["31078140", "3107814060", "", "31O781406", "3107 81406"])
def test_finess_wrong_length_or_characters_refused(finess):
    with pytest.raises(InvalidFieldError) as e:
        check_finess(finess)
    assert e.value.field == "finess"
    assert "9 chiffres" in e.value.message


def test_finess_error_names_the_given_field():
    with pytest.raises(InvalidFieldError) as e:
        check_finess("310781407", field="recipient_finess")
    assert e.value.field == "recipient_finess"


# ------------------------------------------------------------------ RPPS


def test_rpps_valid():
    body = "1000123456"
    number = body + luhn_key(body)
    assert check_rpps(number) == number
    assert luhn_ok(number)


def test_rpps_wrong_key_refused():
    body = "1000123456"
    good = int(luhn_key(body))
    bad = body + str((good + 1) % 10)
    with pytest.raises(InvalidFieldError) as e:
        check_rpps(bad)
    assert e.value.field == "rpps"
    assert "clé" in e.value.message


@pytest.mark.parametrize("value", ["1000012345", "100001234567", "1000A123456", ""])
def test_rpps_wrong_length_refused(value):
    with pytest.raises(InvalidFieldError) as e:
        check_rpps(value)
    assert e.value.field == "rpps"
    assert "11 chiffres" in e.value.message


def test_rpps_single_digit_change_is_caught():
    body = "1234567890"
    number = body + luhn_key(body)
    for i in range(11):
        altered = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :]
        with pytest.raises(InvalidFieldError):
            check_rpps(altered)


# ------------------------------------------------------------------ departments and regions


@pytest.mark.parametrize(("given", "expected"), [("31", "31"), ("2A", "2A"), ("2b", "2B"), ("974", "974"), (" 09 ", "09")])
def test_department_ok(given, expected):
    assert check_department(given) == expected


@pytest.mark.parametrize("code", ["20", "99", "XX", "", "975", "310", "3"])
def test_department_refused(code):
    with pytest.raises(InvalidFieldError) as e:
        check_department(code)
    assert e.value.field == "department"


def test_department_refused_names_given_field():
    with pytest.raises(InvalidFieldError) as e:
        check_department("20", field="birth_department")
    assert e.value.field == "birth_department"


@pytest.mark.parametrize(
    ("department", "region"),
    [
        ("31", "OCC"), ("34", "OCC"), ("09", "OCC"), ("66", "OCC"), ("48", "OCC"),
        ("2A", "COR"), ("2B", "COR"), ("75", "IDF"), ("13", "PACA"), ("33", "NA"),
        ("69", "ARA"), ("974", "REU"), ("971", "GUA"), ("976", "MAY"),
    ],
)
def test_region_of_department(department, region):
    assert region_of(department) == region


def test_occitanie_has_its_thirteen_departments():
    occ = {d for d in ["09", "11", "12", "30", "31", "32", "34", "46", "48", "65", "66", "81", "82"]}
    assert OCCITANIE == "OCC"
    assert {d for d in occ if region_of(d) == "OCC"} == occ


def test_region_of_unknown_department_is_a_field_error():
    with pytest.raises(InvalidFieldError) as e:
        region_of("20")
    assert e.value.field == "department"


def test_check_region():
    assert check_region("occ") == "OCC"
    with pytest.raises(InvalidFieldError) as e:
        check_region("LR")  # Languedoc-Roussillon is gone since 2016
    assert e.value.field == "region"


# ------------------------------------------------------------------ NIR (INS)


def test_nir_key_is_97_minus_n_mod_97():
    body = "1850578006084"
    key = 97 - int(body) % 97
    value = body + f"{key:02d}"
    assert check_nir(value) == value


def test_nir_with_spaces_is_normalised():
    value = nir("2690549588157")
    spaced = f"{value[0]} {value[1:3]} {value[3:5]} {value[5:7]} {value[7:10]} {value[10:13]} {value[13:]}"
    assert check_nir(spaced) == value


def test_nir_wrong_key_refused():
    value = nir("1850578006084")
    wrong = value[:13] + f"{(int(value[13:]) % 97) + 1:02d}"
    assert wrong != value
    with pytest.raises(InvalidFieldError) as e:
        check_nir(wrong)
    assert e.value.field == "ins"
    assert "clé" in e.value.message


@pytest.mark.parametrize("value", ["18505780060", "1850578006084123", "5850578006084XX", "185057800608A12"])
def test_nir_malformed_refused(value):
    with pytest.raises(InvalidFieldError) as e:
        check_nir(value, field="patient_ins")
    assert e.value.field == "patient_ins"


@pytest.mark.parametrize(("corsican", "replacement"), [("2A", "19"), ("2B", "18")])
def test_nir_corsica_key_uses_19_and_18(corsican, replacement):
    body = f"16912{corsican}004123"
    numeric = f"16912{replacement}004123"
    value = body + f"{97 - int(numeric) % 97:02d}"
    assert check_nir(value) == value
    assert check_nir(value.lower()) == value  # 2a / 2b accepted, normalised
    # the key computed as if the letter were a 0 (department 20) is refused
    as_twenty = body + f"{97 - int('1691220004123') % 97:02d}"
    assert as_twenty != value
    with pytest.raises(InvalidFieldError):
        check_nir(as_twenty)
