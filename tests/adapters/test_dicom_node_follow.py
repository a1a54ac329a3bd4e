"""What follows a recorded batch survives a PostgreSQL restart: every pooled connection the server cut fails
once, and the app's and the imaging view's pools may each hold ten of them (the fault suite saw « rattachement
automatique en échec » after a restart under load, when three tries were the limit)."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import InterfaceError, OperationalError

from entrypoints import dicom_node


def test_what_follows_a_batch_outlasts_every_cut_connection(monkeypatch):
    failures = iter(range(20))  # two pools of ten connections cut by the restart
    calls: list[int] = []

    def attach(app, view, updates):
        calls.append(1)
        n = next(failures, None)
        if n is not None:  # psycopg says it either way: the server cut it, or the connection is closed
            raise OperationalError("server closed the connection") if n % 2 else InterfaceError("the connection is closed")
        return ["attached"]

    monkeypatch.setattr(dicom_node, "attach_awaiting", attach)
    monkeypatch.setattr(dicom_node.time, "sleep", lambda s: None)
    assert dicom_node.after_record(None, None)([]) == ["attached"]  # type: ignore[arg-type]
    assert len(calls) == 21


def test_a_database_that_stays_down_is_given_up_after_a_while(monkeypatch):
    clock = iter(float(t) for t in range(0, 1000, 4))
    monkeypatch.setattr(dicom_node.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(dicom_node.time, "sleep", lambda s: None)

    def attach(app, view, updates):
        raise OperationalError("connection refused")

    monkeypatch.setattr(dicom_node, "attach_awaiting", attach)
    with pytest.raises(OperationalError):  # a database down for good is reported (logged), not retried for ever
        dicom_node.after_record(None, None)([])  # type: ignore[arg-type]
