"""Relais read models, each following the event log (exactly once, rebuildable)."""
