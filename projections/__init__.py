"""Relais projections layer."""
