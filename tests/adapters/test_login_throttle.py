"""Login throttling on a real database: locks per (account, address), progressive delays, the
per-address rate limit, the per-account ceiling that spares known addresses, equal work for unknown accounts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from adapters.credentials import Credentials
from adapters.settings import Settings
from entrypoints.bootstrap import build_pool

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ACCOUNT = "3f1c2a9e-0000-4000-8000-000000000001"
ATTACKER, USER = "203.0.113.66", "198.51.100.7"


class CountingHasher(PasswordHasher):
    """argon2 with a count of the checks made (what an answer costs)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8192, parallelism=1)
        self.checks = 0

    def verify(self, hash, password):  # type: ignore[no-untyped-def, override]
        self.checks += 1
        return super().verify(hash, password)


@pytest.fixture()
def credentials(settings: Settings) -> Iterator[Credentials]:
    pool = build_pool(settings, max_size=2)
    creds = Credentials(pool, hasher=CountingHasher())
    creds.set_password(ACCOUNT, PASSWORD)
    yield creds
    pool.close()


def fail(credentials: Credentials, client: str, now: datetime, account: str = ACCOUNT):
    return credentials.attempt(account, ACCOUNT if account == ACCOUNT else None, "wrong password!!", client, now)


def test_an_attacker_address_locks_only_itself(credentials: Credentials):
    outcomes = [fail(credentials, ATTACKER, T0 + timedelta(seconds=i)) for i in range(3)]
    assert [o.locked for o in outcomes] == [False, False, True]
    assert outcomes[2].scope == "address"
    # the right password from the attacker's address is refused while its pair waits
    assert not credentials.attempt(ACCOUNT, ACCOUNT, PASSWORD, ATTACKER, T0 + timedelta(seconds=5)).ok
    # the clinician, from their own workstation, signs in at once
    assert credentials.attempt(ACCOUNT, ACCOUNT, PASSWORD, USER, T0 + timedelta(seconds=6)).ok


def test_delays_grow_progressively_instead_of_a_fifteen_minute_lock(credentials: Credentials):
    now = T0
    delays = []
    for _ in range(9):
        outcome = fail(credentials, ATTACKER, now)
        if outcome.locked:
            assert outcome.locked_until is not None
            delays.append(outcome.locked_until - now)
            now = outcome.locked_until  # tries again as soon as allowed
        else:
            now += timedelta(seconds=1)
    minutes = [d.total_seconds() / 60 for d in delays]
    assert minutes == [0.5, 1, 2, 4, 8, 15, 15]


def test_a_warning_comes_before_the_last_attempt(credentials: Credentials):
    assert fail(credentials, ATTACKER, T0).remaining == 2
    assert fail(credentials, ATTACKER, T0).remaining == 1  # the page warns: one attempt left
    assert fail(credentials, ATTACKER, T0).locked


def test_a_success_resets_the_pair_and_old_failures_are_forgotten(credentials: Credentials):
    fail(credentials, USER, T0)
    fail(credentials, USER, T0)
    assert credentials.attempt(ACCOUNT, ACCOUNT, PASSWORD, USER, T0).ok
    assert fail(credentials, USER, T0).remaining == 2
    fail(credentials, USER, T0)
    assert fail(credentials, USER, T0 + timedelta(hours=25)).remaining == 2


def test_the_per_address_rate_limit_counts_all_accounts(credentials: Credentials):
    policy = credentials.policy
    burst = int(policy.address_burst)
    for i in range(burst):
        assert credentials.admit(ATTACKER, T0) is None, i
    wait = credentials.admit(ATTACKER, T0)
    assert wait is not None and wait == round(60 / policy.address_rate)
    assert credentials.admit(USER, T0) is None  # another address is not concerned
    assert credentials.admit(ATTACKER, T0 + timedelta(seconds=wait)) is None  # one more after the refill


def test_the_account_ceiling_stops_distributed_guessing_but_spares_known_addresses(credentials: Credentials):
    policy = credentials.policy
    assert credentials.attempt(ACCOUNT, ACCOUNT, PASSWORD, USER, T0).ok  # the clinician's usual workstation
    for i in range(policy.account_ceiling):  # many addresses, a few guesses each (under the pair limit)
        fail(credentials, f"10.0.{i // 2}.{i % 2 + 1}", T0 + timedelta(minutes=1))
    refused = credentials.attempt(ACCOUNT, ACCOUNT, PASSWORD, "192.0.2.200", T0 + timedelta(minutes=2))
    assert not refused.ok and refused.locked and refused.scope == "account"
    assert refused.locked_until == T0 + timedelta(minutes=1) + policy.account_window
    assert credentials.attempt(ACCOUNT, ACCOUNT, PASSWORD, USER, T0 + timedelta(minutes=2)).ok
    later = T0 + timedelta(minutes=2) + policy.account_window
    assert credentials.attempt(ACCOUNT, ACCOUNT, PASSWORD, "192.0.2.200", later).ok


def test_the_state_is_shared_and_survives_a_new_process(credentials: Credentials, settings: Settings):
    for _ in range(3):
        fail(credentials, ATTACKER, T0)
    pool = build_pool(settings, max_size=1)
    try:
        other = Credentials(pool)  # another web process, or this one restarted
        outcome = other.attempt(ACCOUNT, ACCOUNT, PASSWORD, ATTACKER, T0 + timedelta(seconds=1))
        assert outcome.locked and not outcome.ok
    finally:
        pool.close()


def test_unknown_accounts_cost_one_check_and_are_throttled_alike(credentials: Credentials):
    hasher = credentials.hasher
    assert isinstance(hasher, CountingHasher)
    answers = {}
    for account, pid in ((ACCOUNT, ACCOUNT), ("login:10000009999", None)):
        costs, kinds = [], []
        for i in range(4):
            before = hasher.checks
            outcome = credentials.attempt(account, pid, "wrong password!!", "192.0.2.9", T0 + timedelta(seconds=i))
            costs.append(hasher.checks - before)
            kinds.append((outcome.ok, outcome.locked, outcome.scope, outcome.remaining))
        assert costs == [1, 1, 1, 1]  # refused, locked or unknown: always one argon2 check
        answers[account] = kinds
    assert answers[ACCOUNT] == answers["login:10000009999"]


def test_trusted_proxies_setting_is_validated_and_normalised():
    from adapters.settings import SettingsError
    from entrypoints.settings import ENV_DOC, settings_from_environ

    assert settings_from_environ({}).trusted_proxies == ()
    parsed = settings_from_environ({"RELAIS_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.1/8,::1"}).trusted_proxies
    assert parsed == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")
    with pytest.raises(SettingsError, match="RELAIS_TRUSTED_PROXIES"):
        settings_from_environ({"RELAIS_TRUSTED_PROXIES": "proxy.example"})
    assert "RELAIS_TRUSTED_PROXIES" in ENV_DOC


def test_compose_believes_forwarded_for_only_from_its_proxy_network():
    """uvicorn was told FORWARDED_ALLOW_IPS=* there: any client could have picked the address it is
    throttled by. The web service names its proxies through the one setting instead."""
    from pathlib import Path

    import yaml

    from entrypoints.settings import settings_from_environ

    raw = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    env = yaml.safe_load(raw)["services"]["web"]["environment"]
    assert "FORWARDED_ALLOW_IPS" not in env
    default = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", env["RELAIS_TRUSTED_PROXIES"])
    proxies = settings_from_environ({"RELAIS_TRUSTED_PROXIES": default}).trusted_proxies
    assert proxies and "0.0.0.0/0" not in proxies and "::/0" not in proxies
