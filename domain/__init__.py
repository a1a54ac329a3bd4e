"""Relais domain layer."""
