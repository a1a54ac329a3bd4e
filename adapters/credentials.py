"""Local passwords (argon2), kept outside the event log so that they can be changed and erased;
sign-in attempts are throttled per (account, client address), per address and per account
(`adapters/login_throttle.py` says which numbers and why)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from adapters.database import DictPool
from adapters.login_throttle import LoginThrottle, ThrottlePolicy

MIN_LENGTH = 12

# failed_attempts and locked_until are no longer used (the lock moved to relais_login_pairs, per
# client address); they stay so that older databases and this one have the same table.
DDL = """
CREATE TABLE IF NOT EXISTS relais_credentials (
    practitioner_id uuid PRIMARY KEY,
    password_hash text NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


class WeakPasswordError(ValueError):
    """The password does not meet the minimum policy."""


@dataclass(frozen=True)
class LoginOutcome:
    ok: bool
    locked: bool = False
    locked_until: datetime | None = None
    scope: str = ""  # what is locked: "address" (this account from this address) or "account" (the ceiling)
    remaining: int | None = None  # failures left before the temporary lock, after a failure


def utcnow() -> datetime:
    return datetime.now(UTC)


class Credentials:
    """Password store; every check goes through the throttle."""

    def __init__(
        self, pool: DictPool, hasher: PasswordHasher | None = None, policy: ThrottlePolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.pool = pool
        self.hasher = hasher or PasswordHasher()
        self.throttle = LoginThrottle(pool, policy)
        self.clock = clock
        self._dummy = self.hasher.hash("timing-equaliser-not-a-password")

    @property
    def policy(self) -> ThrottlePolicy:
        return self.throttle.policy

    def create_table(self) -> None:
        """The credentials table and the throttle's tables (idempotent)."""
        with self.pool.connection() as conn:
            conn.execute(DDL)
        self.throttle.create_tables()

    def set_password(self, practitioner_id: str, password: str) -> None:
        if len(password) < MIN_LENGTH:
            raise WeakPasswordError(f"mot de passe trop court ({MIN_LENGTH} caractères minimum)")
        digest = self.hasher.hash(password)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO relais_credentials (practitioner_id, password_hash) VALUES (%s, %s) "
                "ON CONFLICT (practitioner_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
                "failed_attempts = 0, locked_until = NULL, updated_at = now()",
                (practitioner_id, digest),
            )
            # a new password ends the delays of the old one (known addresses stay known)
            conn.execute(
                "UPDATE relais_login_pairs SET failures = 0, locked_until = NULL WHERE account = %s", (practitioner_id,)
            )
            conn.execute("DELETE FROM relais_login_accounts WHERE account = %s", (practitioner_id,))

    def has_password(self, practitioner_id: str) -> bool:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT 1 FROM relais_credentials WHERE practitioner_id = %s", (practitioner_id,)
            ).fetchone() is not None

    def admit(self, client: str, now: datetime | None = None) -> int | None:
        """The per-address rate limit: None when this attempt may go on, else the seconds to wait."""
        return self.throttle.admit(client, now or self.clock())

    def verify(self, practitioner_id: str, password: str, client: str = "local", now: datetime | None = None) -> LoginOutcome:
        """Checks the password of a known practitioner (throttled like any sign-in from `client`)."""
        return self.attempt(practitioner_id, practitioner_id, password, client, now)

    def attempt(
        self, account: str, practitioner_id: str | None, password: str, client: str, now: datetime | None = None,
    ) -> LoginOutcome:
        """One sign-in attempt on `account` (the practitioner's id, or what was typed when no one has
        that login: throttled alike) from `client`. The password is checked against
        `practitioner_id`'s hash; with none, or when refused by the throttle, a dummy hash is checked
        instead so that every answer costs the same time."""
        now = now or self.clock()
        p = self.throttle.policy
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO relais_login_pairs (account, client) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (account, client),
            )
            pair = conn.execute(
                "SELECT failures, last_failure_at, locked_until, last_success_at FROM relais_login_pairs "
                "WHERE account = %s AND client = %s FOR UPDATE",
                (account, client),
            ).fetchone()
            assert pair is not None
            recent = pair["last_failure_at"] is not None and pair["last_failure_at"] > now - p.pair_memory
            failures = pair["failures"] if recent else 0
            if pair["locked_until"] is not None and pair["locked_until"] > now:
                self._burn(password)
                return LoginOutcome(ok=False, locked=True, locked_until=pair["locked_until"], scope="address")
            known = pair["last_success_at"] is not None and pair["last_success_at"] > now - p.known_for
            if not known:
                ceiling = conn.execute(
                    "SELECT window_start, failures FROM relais_login_accounts WHERE account = %s", (account,)
                ).fetchone()
                if ceiling and ceiling["window_start"] > now - p.account_window and ceiling["failures"] >= p.account_ceiling:
                    self._burn(password)
                    return LoginOutcome(
                        ok=False, locked=True, locked_until=ceiling["window_start"] + p.account_window, scope="account",
                    )
            row = None
            if practitioner_id is not None:
                row = conn.execute(
                    "SELECT password_hash FROM relais_credentials WHERE practitioner_id = %s", (practitioner_id,)
                ).fetchone()
            if row is None:
                self._burn(password)
                ok = False
            else:
                ok = self._check(row["password_hash"], password)
            if not ok:
                failures += 1
                delay = p.delay(failures)
                lock = now + delay if delay is not None else None
                conn.execute(
                    "UPDATE relais_login_pairs SET failures = %s, last_failure_at = %s, locked_until = %s "
                    "WHERE account = %s AND client = %s",
                    (failures, now, lock, account, client),
                )
                conn.execute(
                    "INSERT INTO relais_login_accounts AS a (account, window_start, failures) VALUES (%s, %s, 1) "
                    "ON CONFLICT (account) DO UPDATE SET "
                    "failures = CASE WHEN a.window_start <= %s THEN 1 ELSE a.failures + 1 END, "
                    "window_start = CASE WHEN a.window_start <= %s THEN EXCLUDED.window_start ELSE a.window_start END",
                    (account, now, now - p.account_window, now - p.account_window),
                )
                remaining = max(0, p.free_failures - failures)
                return LoginOutcome(
                    ok=False, locked=lock is not None, locked_until=lock, scope="address" if lock else "",
                    remaining=remaining,
                )
            conn.execute(
                "UPDATE relais_login_pairs SET failures = 0, last_failure_at = NULL, locked_until = NULL, "
                "last_success_at = %s WHERE account = %s AND client = %s",
                (now, account, client),
            )
            assert row is not None
            if self.hasher.check_needs_rehash(row["password_hash"]):
                conn.execute(
                    "UPDATE relais_credentials SET password_hash = %s WHERE practitioner_id = %s",
                    (self.hasher.hash(password), practitioner_id),
                )
            return LoginOutcome(ok=True)

    def _check(self, digest: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(digest, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _burn(self, password: str) -> None:
        """Spends the time of a real check so that unknown accounts and refusals do not answer faster."""
        try:
            self.hasher.verify(self._dummy, password)
        except VerificationError:
            pass
