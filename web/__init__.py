"""Relais web layer."""
