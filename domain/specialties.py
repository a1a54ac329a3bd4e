"""The words a clinician types to find a recipient: French abbreviations and their specialties (data, one place)."""

from __future__ import annotations

import re

from domain.values import folded

# What is typed (folded: lower case, no accents) -> the words it also finds in the directory's names and
# specialties (folded too). One direction only: « avc » finds the neurovascular unit, « neurologie »
# does not find every stroke pool. Keep each list short and certain: a wrong synonym adds noise to
# every search for it. A term of 3 letters or less matches at the start of a word only (« rea » does
# not find « pancréas »); a longer one anywhere in a word (« radio » finds « neuroradiologie »).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "avc": ("neurovasculaire", "neuro vasculaire", "neurologie vasculaire", "unv", "stroke"),
    "stroke": ("neurovasculaire", "neuro vasculaire", "neurologie vasculaire", "unv", "avc"),
    "unv": ("neurovasculaire", "neuro vasculaire", "neurologie vasculaire", "avc", "stroke"),
    "neurovasculaire": ("neuro vasculaire", "neurologie vasculaire", "unv", "avc", "stroke"),
    "neuro": ("unv", "nrx", "nri", "avc"),
    "nrx": ("neuroradiologie",),
    "nri": ("neuroradiologie interventionnelle",),
    "thrombectomie": ("neuroradiologie interventionnelle", "neuroradiologie"),
    "greffe": ("transplantation", "transplant"),
    "transplantation": ("greffe",),
    "nephro": ("nephrologie", "dialyse", "transplantation renale", "greffe renale"),
    "rein": ("nephrologie", "renal", "renale"),
    "rea": ("reanimation", "soins intensifs", "soins critiques", "usi", "usc"),
    "usi": ("soins intensifs", "reanimation"),
    "urgences": ("urgence", "urgentiste", "sau", "samu", "smur"),
    "urgence": ("urgences", "urgentiste", "sau", "samu", "smur"),
    "urg": ("urgence", "urgentiste", "sau", "samu", "smur"),
    "sau": ("urgence",),
    "radio": ("radiologie", "imagerie", "neuroradiologie"),
    "imagerie": ("radiologie",),
    "irm": ("radiologie", "imagerie"),
    "scanner": ("radiologie", "imagerie"),
    "cardio": ("cardiologie", "usic"),
    "usic": ("cardiologie",),
    "onco": ("oncologie", "cancerologie"),
    "ortho": ("orthopedie", "traumatologie"),
    "trauma": ("traumatologie", "orthopedie"),
    "pedia": ("pediatrie",),
    "gyneco": ("gynecologie", "obstetrique", "maternite"),
    "astreinte": ("garde", "permanence"),
    "garde": ("astreinte", "permanence"),
}

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def normalized(text: str | None) -> str:
    """Folded, ligatures spelled out, every run of other characters than letters and digits a single space."""
    return _NOT_WORD.sub(" ", folded(text).replace("œ", "oe").replace("æ", "ae")).strip()


def search_terms(typed: str) -> list[tuple[str, ...]]:
    """For each word typed (normalized, at most 6), the words any of which it finds: itself, its
    singular (« urgences » → « urgence »), its synonyms."""
    out: list[tuple[str, ...]] = []
    for word in normalized(typed).split()[:6]:
        alternatives = [word]
        if len(word) > 4 and word.endswith("s"):
            alternatives.append(word[:-1])
        for key in dict.fromkeys(alternatives):
            alternatives += SYNONYMS.get(key, ())
        out.append(tuple(dict.fromkeys(alternatives)))
    return out


def like_pattern(term: str) -> str:
    """The SQL LIKE pattern of `term` against a normalized document padded with a space each side: a term
    of 3 characters or less at the start of a word, a longer one anywhere."""
    return f"% {term}%" if len(term) <= 3 else f"%{term}%"
