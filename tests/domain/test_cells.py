"""The one rule by which a text becomes a spreadsheet cell that cannot run as a formula."""

from __future__ import annotations

import pytest

from domain.cells import formula_like, neutralise_formula


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+2", "'=1+2"), ("@SUM(A1:A9)", "'@SUM(A1:A9)"), ("-2+3", "'-2+3"), ("+33", "+33"), ("+3+3", "'+3+3"),
        ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("  =1", "'  =1"), ("＝1", "'＝1"), ("-25", "-25"), ("-10.29", "-10.29"),
        ("-10,29", "-10,29"), ("", ""), ("TLO-2023-1", "TLO-2023-1"), ("a=1", "a=1"),
    ],
)
def test_formula_cells_are_neutralised_by_one_rule(value, shown):
    assert neutralise_formula(value) == shown


def test_formula_like_is_the_same_rule():
    assert formula_like("=1+2") and formula_like("-2+3") and formula_like(" @A1")
    assert not formula_like("-25") and not formula_like("TLO-1") and not formula_like("")
