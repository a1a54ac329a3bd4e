"""Throttling of sign-in attempts, shared by every web process through PostgreSQL (survives restarts).

Three limits, each against a different attacker (the numbers are `ThrottlePolicy`'s defaults):

- **per (account, client address)**: the first 3 failures are free; after that the pair waits
  30 s, then 1, 2, 4, 8 and at most 15 minutes after each new failure. The delay applies to that
  pair only: RPPS numbers are public, so a lock on the account itself would let anyone keep a
  clinician out; here whoever types wrong passwords only delays themselves, and the clinician still
  signs in from their own workstation. One address gets about ten guesses an hour on one account.
  A pair's count is forgotten 24 hours after its last failure, and reset by a successful sign-in.
- **per client address, all accounts together**: 30 attempts a minute (token bucket, bursts of 30),
  then 429 with Retry-After. Generous because a whole hospital can sit behind one NAT address at
  shift change, low enough to stop spraying one password over many accounts fast.
- **per account, all addresses together**: more than 50 failures within an hour (five or more
  addresses guessing steadily at the pair limit: a distributed attack, no clinician mistypes that
  much) refuses, until the hour is over, the addresses this account has not signed in from in the
  last 90 days. Known addresses are exempt, so the ceiling cannot be used to keep the clinician out
  of their usual workstation.

Unknown logins are throttled exactly like real accounts (keyed by what was typed), so the answers
tell nothing about which accounts exist. IPv6 clients are keyed by their /64 (one host controls a
whole /64).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.database import DictPool

DDL = (
    """
    CREATE TABLE IF NOT EXISTS relais_login_pairs (
        account text NOT NULL,
        client text NOT NULL,
        failures integer NOT NULL DEFAULT 0,
        last_failure_at timestamptz,
        locked_until timestamptz,
        last_success_at timestamptz,
        PRIMARY KEY (account, client)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS relais_login_addresses (
        client text PRIMARY KEY,
        tokens double precision NOT NULL,
        updated_at timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS relais_login_accounts (
        account text PRIMARY KEY,
        window_start timestamptz NOT NULL,
        failures integer NOT NULL
    )
    """,
)


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 3  # failures of one (account, address) pair before any delay
    first_delay: timedelta = timedelta(seconds=30)  # after the first failure past the free ones, doubling
    max_delay: timedelta = timedelta(minutes=15)
    pair_memory: timedelta = timedelta(hours=24)  # a pair's failures are forgotten this long after the last
    address_rate: float = 30.0  # attempts a minute per client address, all accounts
    address_burst: float = 30.0
    account_ceiling: int = 50  # failures per account per window, all addresses
    account_window: timedelta = timedelta(hours=1)
    known_for: timedelta = timedelta(days=90)  # an address that signed in this recently is exempt from the ceiling
    cleanup_every: float = 600.0  # seconds between purges of forgotten rows (per process)

    def delay(self, failures: int) -> timedelta | None:
        """The wait imposed on a pair after its `failures`-th failure in a row, None while free."""
        if failures < self.free_failures:
            return None
        step = min(failures - self.free_failures, 20)
        return min(self.first_delay * (1 << step), self.max_delay)


@dataclass(frozen=True)
class PairState:
    """What the throttle says before a password is checked."""

    locked_until: datetime | None  # the pair or the account ceiling refuses until then
    scope: str = ""  # "address" (this pair) or "account" (the ceiling)


class LoginThrottle:
    """The three limits; every method is one short transaction (the pair's row lock is held by the
    caller's transaction around the password check, so parallel guesses of one pair queue up)."""

    def __init__(self, pool: DictPool, policy: ThrottlePolicy | None = None):
        self.pool = pool
        self.policy = policy or ThrottlePolicy()
        self._last_cleanup = 0.0

    def create_tables(self) -> None:
        with self.pool.connection() as conn:
            for statement in DDL:
                conn.execute(statement)

    def admit(self, client: str, now: datetime) -> int | None:
        """Takes one attempt from the address's bucket: None when admitted, else the seconds to wait."""
        p = self.policy
        per_second = p.address_rate / 60.0
        self._maybe_clean(now)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO relais_login_addresses (client, tokens, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (client) DO NOTHING",
                (client, p.address_burst, now),
            )
            row = conn.execute(
                "SELECT tokens, updated_at FROM relais_login_addresses WHERE client = %s FOR UPDATE", (client,)
            ).fetchone()
            assert row is not None
            elapsed = max(0.0, (now - row["updated_at"]).total_seconds())
            tokens = min(p.address_burst, float(row["tokens"]) + elapsed * per_second)
            if tokens < 1.0:
                conn.execute(
                    "UPDATE relais_login_addresses SET tokens = %s, updated_at = %s WHERE client = %s",
                    (tokens, now, client),
                )
                return max(1, int(math.ceil((1.0 - tokens) / per_second)))
            conn.execute(
                "UPDATE relais_login_addresses SET tokens = %s, updated_at = %s WHERE client = %s",
                (tokens - 1.0, now, client),
            )
            return None

    def _maybe_clean(self, now: datetime) -> None:
        """Forgets rows that no longer limit anything (at most once per `cleanup_every` per process)."""
        tick = time.monotonic()
        if self._last_cleanup and tick - self._last_cleanup < self.policy.cleanup_every:
            return
        self._last_cleanup = tick
        p = self.policy
        with self.pool.connection() as conn:
            conn.execute(
                "DELETE FROM relais_login_pairs WHERE (locked_until IS NULL OR locked_until < %s) "
                "AND (last_failure_at IS NULL OR last_failure_at < %s) "
                "AND (last_success_at IS NULL OR last_success_at < %s)",
                (now, now - p.pair_memory, now - p.known_for),
            )
            conn.execute("DELETE FROM relais_login_addresses WHERE updated_at < %s", (now - timedelta(hours=1),))
            conn.execute("DELETE FROM relais_login_accounts WHERE window_start < %s", (now - p.account_window,))
