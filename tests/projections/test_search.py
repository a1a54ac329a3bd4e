"""Name search: one folding (domain.values.folded) for stored names and typed text."""

from __future__ import annotations

from domain.values import folded
from projections.search import contains, search_text


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
