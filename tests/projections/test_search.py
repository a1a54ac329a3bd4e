"""Name search: one folding (domain.values.folded) for stored names, typed text and in SQL."""

from __future__ import annotations

import psycopg

from domain.values import folded
from projections.search import LATIN_LETTERS, contains, folded_sql, search_text


def test_folding_ignores_case_accents_and_surrounding_spaces():
    assert folded("  Éloïse MÜLLER-Ñúñez ") == "eloise muller-nunez"
    assert folded("e\u0301") == "e"  # typed decomposed
    assert folded(None) == "" and folded("") == ""


def test_stored_search_text_and_typed_patterns_fold_alike():
    patient = {"birth_name": "DUPONT-ÉTIENNE", "used_name": None, "first_names": "Hélène Marie"}
    assert search_text(patient) == "dupont-etienne helene marie"
    assert search_text({}) == ""
    assert contains(" Hélène ") == "%helene%"
    assert contains("du%p_o\\nt") == "%dupont%"  # LIKE's wildcards and escape typed are not wildcards


def test_the_sql_folding_is_the_domain_folding_letter_by_letter(database_url: str):
    """Every Latin-1 and Latin Extended-A letter, upper and lower case, alone and in a name, and
    combining accents typed after a letter: PostgreSQL's folded text is Python's."""
    letters = [chr(c) for c in range(0x41, 0x5B)] + [chr(c) for c in range(0x61, 0x7B)] + LATIN_LETTERS
    samples = [c for c in letters if len(folded(c)) == 1] + [
        "Hôpital Saint-Éloi", "CHU de Nîmes", "ŒUVRE DES PUPILLES", "Ærø", "Ğüçlü Şahin", "e\u0301le\u0300ve", " ß ",
    ]
    with psycopg.connect(database_url) as conn:
        got = [r[0] for r in conn.execute(
            f"SELECT {folded_sql('t')} FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, n) ORDER BY n", (samples,)
        ).fetchall()]
    assert [(s, g) for s, g in zip(samples, got, strict=True) if g.strip() != folded(s)] == []
    assert len(samples) > 200
    assert [c for c in LATIN_LETTERS if len(folded(c)) != 1] == ["Ĳ", "ĳ", "Ŀ", "ŀ", "ŉ"]  # the letters left as they are
