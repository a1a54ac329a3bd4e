"""A controllable clock for the tests: `Relais(env, clock=Clock(...))`, the scheduler, the mail delivery."""

from __future__ import annotations

from datetime import datetime, timedelta


class Clock:
    """Now, as the test sets it and moves it."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
