"""The QIDO-RS query language's bounds: wildcard matching linear in the pattern and the value (no
regular expression built from user input), a default and a maximum `limit`, unknown parameters
(a cache-buster `_=`) ignored and named, not refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from web.dicomweb import query

LONG_NAME = "A" * 64  # the longest a PN component group is


def matches(keyword: str, pattern: str, value: str) -> bool:
    f = query.make_filter(keyword, pattern)
    return True if f is None else f.matches(value)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("dup*", "DUPONT^JEANNE", True), ("d?pont^jeanne", "DUPONT^JEANNE", True), ("DUPONT", "DUPONT^JEANNE", False),
        ("*JEANNE", "DUPONT^JEANNE", True), ("*ONT*ANN*", "DUPONT^JEANNE", True), ("*ONT*ONT*", "DUPONT^JEANNE", False),
        ("D*E", "DUPONT^JEANNE", True), ("D*E?", "DUPONT^JEANNE", False), ("??????^??????", "DUPONT^JEANNE", True),
        ("?", "", False), ("**", "", True), ("a.b", "AXB", False), ("a.b", "A.B", True), ("(x)[y]", "(X)[Y]", True),
        ("*a*a*a*b", "AAAAAB", True), ("*a*a*a*b", "AAAAAC", False), ("*^*", "DUPONT^JEANNE", True),
    ],
)
def test_wildcards(pattern, value, expected):
    assert matches("PatientName", pattern, value) is expected


def test_case_matters_where_the_standard_says_so():
    assert matches("PatientID", "pat*", "PAT001") is False and matches("PatientID", "PAT*", "PAT001") is True
    assert matches("StudyDescription", "*cerveau*", "IRM CERVEAU") is True


def test_a_pathological_pattern_does_not_backtrack():
    """Thirty stars against a long name: a regular expression built from it explores ~10^17 ways to
    fail (it never ends); the matcher looks at each character a bounded number of times. Run in a
    child so that a regression fails this test instead of hanging the suite."""
    pattern = "*?" * 30 + "B"
    code = (
        "from web.dicomweb import query\n"
        f"f = query.make_filter('PatientName', {pattern!r})\n"
        f"print(f.matches({LONG_NAME!r}), f.matches({LONG_NAME[:-1] + 'B'!r}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"]


def test_an_over_long_pattern_is_refused_with_the_reason():
    with pytest.raises(query.QueryError, match="PatientName"):
        query.make_filter("PatientName", "A*" * 200)


def test_limit_has_a_default_and_a_maximum():
    assert query.parse([], "study").limit == query.DEFAULT_LIMIT
    assert query.parse([("limit", "3")], "study").limit == 3
    assert query.parse([("limit", str(query.MAX_LIMIT * 100))], "study").limit == query.MAX_LIMIT
    q = query.parse([("offset", "2")], "instance")
    items = list(range(query.MAX_LIMIT * 2))
    page, more = q.page(items)
    assert page == items[2 : 2 + query.DEFAULT_LIMIT] and more == len(items) - 2 - query.DEFAULT_LIMIT
    assert query.parse([("limit", "5"), ("offset", "8")], "study").page(list(range(10))) == ([8, 9], 0)


def test_unknown_parameters_are_ignored_and_named():
    q = query.parse([("_", "1712345678901"), ("PatientName", "DUP*"), ("Foo", "bar"), ("x\r\nSet-Cookie", "1")], "study")
    assert [f.keyword for f in q.filters] == ["PatientName"]
    assert q.ignored == ["_", "Foo", "x??Set-Cookie"]  # named safely (they go in a Warning header)


def test_known_attributes_that_cannot_be_matched_are_still_refused():
    with pytest.raises(query.QueryError, match="InstitutionName"):
        query.parse([("InstitutionName", "CHU")], "study")
