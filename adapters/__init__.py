"""Relais adapters layer."""
