"""French identifiers checked by their keys: FINESS, RPPS, NIR (INS), departments, regions."""

from __future__ import annotations

import re

from domain.errors import InvalidFieldError

_OCCITANIE = ("09", "11", "12", "30", "31", "32", "34", "46", "48", "65", "66", "81", "82")

# Department code → region code (INSEE 2016 regions, short codes used across the product).
_REGION_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "OCC": _OCCITANIE,
    "ARA": ("01", "03", "07", "15", "26", "38", "42", "43", "63", "69", "73", "74"),
    "BFC": ("21", "25", "39", "58", "70", "71", "89", "90"),
    "BRE": ("22", "29", "35", "56"),
    "CVL": ("18", "28", "36", "37", "41", "45"),
    "COR": ("2A", "2B"),
    "GE": ("08", "10", "51", "52", "54", "55", "57", "67", "68", "88"),
    "HDF": ("02", "59", "60", "62", "80"),
    "IDF": ("75", "77", "78", "91", "92", "93", "94", "95"),
    "NOR": ("14", "27", "50", "61", "76"),
    "NA": ("16", "17", "19", "23", "24", "33", "40", "47", "64", "79", "86", "87"),
    "PDL": ("44", "49", "53", "72", "85"),
    "PACA": ("04", "05", "06", "13", "83", "84"),
    "GUA": ("971",),
    "MAR": ("972",),
    "GUY": ("973",),
    "REU": ("974",),
    "MAY": ("976",),
}
DEPARTMENT_REGION: dict[str, str] = {
    dep: region for region, deps in _REGION_DEPARTMENTS.items() for dep in deps
}
REGIONS: frozenset[str] = frozenset(_REGION_DEPARTMENTS)
OCCITANIE = "OCC"


def luhn_ok(digits: str) -> bool:
    """True when the string of digits ends with a valid Luhn key."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_key(digits: str) -> str:
    """The Luhn key digit to append to `digits`."""
    for key in "0123456789":
        if luhn_ok(digits + key):
            return key
    raise AssertionError("unreachable")  # pragma: no cover


def check_department(code: str, field: str = "department") -> str:
    """A French department code (2 characters, 2A/2B, or 97x overseas)."""
    code = (code or "").strip().upper()
    if code not in DEPARTMENT_REGION:
        raise InvalidFieldError(field, f"code département inconnu « {code} » (ex. 31, 2A, 974)")
    return code


def check_region(code: str, field: str = "region") -> str:
    code = (code or "").strip().upper()
    if code not in REGIONS:
        raise InvalidFieldError(
            field, f"code région inconnu « {code} » (attendu : {', '.join(sorted(REGIONS))})"
        )
    return code


def region_of(department: str) -> str:
    return DEPARTMENT_REGION[check_department(department)]


def check_finess(value: str, field: str = "finess") -> str:
    """A 9-character FINESS number whose last digit is its Luhn key.

    Corsican numbers start with 2A/2B; the key is then computed with the letter read as 0.
    """
    value = (value or "").strip().upper()
    if not re.fullmatch(r"(\d{2}|2A|2B)\d{7}", value):
        raise InvalidFieldError(field, f"FINESS invalide « {value} » : 9 chiffres attendus")
    if not luhn_ok(value.replace("A", "0").replace("B", "0")):
        raise InvalidFieldError(field, f"FINESS invalide « {value} » : clé de contrôle erronée")
    return value


def check_rpps(value: str, field: str = "rpps") -> str:
    """An 11-digit RPPS number whose last digit is its Luhn key."""
    value = (value or "").strip()
    if not re.fullmatch(r"\d{11}", value):
        raise InvalidFieldError(field, f"RPPS invalide « {value} » : 11 chiffres attendus")
    if not luhn_ok(value):
        raise InvalidFieldError(field, f"RPPS invalide « {value} » : clé de contrôle erronée")
    return value


def check_nir(value: str, field: str = "ins") -> str:
    """A 15-character NIR (the INS number): 13 characters and a 2-digit key, 97 - (n mod 97)."""
    value = (value or "").replace(" ", "").upper()
    if not re.fullmatch(r"[12378]\d{4}(\d{2}|2A|2B)\d{6}\d{2}", value):
        raise InvalidFieldError(field, "matricule INS invalide : 15 caractères attendus")
    body = value[:13].replace("2A", "19").replace("2B", "18")
    if 97 - int(body) % 97 != int(value[13:]):
        raise InvalidFieldError(field, "matricule INS invalide : clé de contrôle erronée")
    return value
