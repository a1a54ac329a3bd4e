"""Local passwords (argon2), kept outside the event log so that they can be changed and erased."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from adapters.database import DictPool

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MIN_LENGTH = 12

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


class Credentials:
    """Password store with lockout after repeated failures."""

    def __init__(self, pool: DictPool, hasher: PasswordHasher | None = None):
        self.pool = pool
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash("timing-equaliser-not-a-password")

    def create_table(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(DDL)

    def set_password(self, practitioner_id: str, password: str) -> None:
        if len(password) < MIN_LENGTH:
            raise WeakPasswordError(f"mot de passe trop court ({MIN_LENGTH} caractères minimum)")
        digest = self.hasher.hash(password)
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO relais_credentials (practitioner_id, password_hash) VALUES (%s, %s) "
                "ON CONFLICT (practitioner_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
                "failed_attempts = 0, locked_until = NULL, updated_at = now()",
                (practitioner_id, digest),
            )

    def has_password(self, practitioner_id: str) -> bool:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT 1 FROM relais_credentials WHERE practitioner_id = %s", (practitioner_id,)
            ).fetchone() is not None

    def verify(self, practitioner_id: str, password: str, now: datetime | None = None) -> LoginOutcome:
        """Checks a password; the account locks for 15 minutes after 5 failures in a row."""
        now = now or datetime.now(UTC)
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT password_hash, failed_attempts, locked_until FROM relais_credentials "
                "WHERE practitioner_id = %s FOR UPDATE",
                (practitioner_id,),
            ).fetchone()
            if row is None:
                self._burn(password)
                return LoginOutcome(ok=False)
            digest, failures, locked_until = row["password_hash"], row["failed_attempts"], row["locked_until"]
            if locked_until and locked_until > now:
                self._burn(password)
                return LoginOutcome(ok=False, locked=True, locked_until=locked_until)
            try:
                self.hasher.verify(digest, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                failures = 0 if (locked_until and locked_until <= now) else failures
                failures += 1
                lock = now + LOCKOUT if failures >= MAX_FAILURES else None
                conn.execute(
                    "UPDATE relais_credentials SET failed_attempts = %s, locked_until = %s WHERE practitioner_id = %s",
                    (0 if lock else failures, lock, practitioner_id),
                )
                return LoginOutcome(ok=False, locked=lock is not None, locked_until=lock)
            conn.execute(
                "UPDATE relais_credentials SET failed_attempts = 0, locked_until = NULL WHERE practitioner_id = %s",
                (practitioner_id,),
            )
            if self.hasher.check_needs_rehash(digest):
                conn.execute(
                    "UPDATE relais_credentials SET password_hash = %s WHERE practitioner_id = %s",
                    (self.hasher.hash(password), practitioner_id),
                )
            return LoginOutcome(ok=True)

    def _burn(self, password: str) -> None:
        """Spends the time of a real check so that unknown accounts do not answer faster."""
        try:
            self.hasher.verify(self._dummy, password)
        except VerificationError:
            pass
