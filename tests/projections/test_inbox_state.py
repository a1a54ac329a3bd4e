"""The inbox's SQL form of a dossier's state agrees with the domain's rule on every combination."""

from __future__ import annotations

from itertools import chain, combinations, product

import psycopg

from domain.dossier import summary_state
from domain.values import DossierState, SendState
from projections.inbox_batch import SEND_FLAGS_SQL, SUMMARY_SQL

SEND_STATES = [s.value for s in SendState]
# every set of send states a dossier can have (none, each one alone, any mix): 2^8
SEND_SETS = list(chain.from_iterable(combinations(SEND_STATES, n) for n in range(len(SEND_STATES) + 1)))

# What the UPDATE of a dossier of an earlier batch sees: the row's stored state `d.state` (any),
# whether the row or the batch's patch `u` has a first sending, whether the batch closes or
# cancels it (`u.over_state`), and the states of its sends `x` once the batch's are written.
CASES = list(product([s.value for s in DossierState], [False, True], [None, "closed", "cancelled"], [False, True], SEND_SETS))

QUERY = f"""
SELECT c.n, {SUMMARY_SQL} AS state
FROM unnest(%s::int[], %s::text[], %s::bool[], %s::text[], %s::bool[], %s::text[])
     AS c(n, stored_state, stored_sent, over_state, patch_sent, send_states)
CROSS JOIN LATERAL (SELECT c.stored_state AS state,
                           CASE WHEN c.stored_sent THEN now() END AS first_sent_on) d
CROSS JOIN LATERAL (SELECT c.over_state, CASE WHEN c.patch_sent THEN now() END AS first_sent_on) u
LEFT JOIN LATERAL (SELECT {SEND_FLAGS_SQL}
                   FROM unnest(string_to_array(c.send_states, ',')) AS x(state)) s ON true
ORDER BY c.n
"""


def expected(stored_state: str, stored_sent: bool, over_state: str | None, patch_sent: bool, sends: tuple) -> str:
    over = over_state or (stored_state if stored_state in ("closed", "cancelled") else None)
    return summary_state(
        sent=stored_sent or patch_sent, closed=over == "closed", cancelled=over == "cancelled", send_states=sends,
    ).value


def test_the_sql_state_is_the_domain_rule_on_every_combination(database_url: str):
    assert len(CASES) == 7 * 2 * 3 * 2 * 256
    columns = list(zip(*CASES, strict=True))
    params = [list(range(len(CASES))), list(columns[0]), list(columns[1]), list(columns[2]), list(columns[3]),
              [",".join(sends) for sends in columns[4]]]
    with psycopg.connect(database_url) as conn:
        got = [state for _, state in conn.execute(QUERY, params).fetchall()]
    wrong = [(case, state, expected(*case)) for case, state in zip(CASES, got, strict=True) if state != expected(*case)]
    assert wrong == []
    assert {expected(*case) for case in CASES} == {s.value for s in DossierState}  # every state reached


def test_a_few_telling_cases_of_the_rule():
    """(Dossier.state is this rule: the lifecycle tests walk it through the aggregate.)"""
    assert summary_state(sent=False, closed=False, cancelled=False, send_states=["pending"]) == DossierState.DRAFT
    assert summary_state(sent=True, closed=False, cancelled=False, send_states=["requested", "answered"]) == "in_progress"
    assert summary_state(sent=True, closed=False, cancelled=False, send_states=["declined", "answered"]) == "answered"
    assert summary_state(sent=True, closed=False, cancelled=False, send_states=["pending"]) == "declined"
    assert summary_state(sent=True, closed=True, cancelled=False, send_states=["requested"]) == "closed"
