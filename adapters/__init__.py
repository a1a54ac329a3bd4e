"""Relais adapters layer."""

from adapters.pgpipeline import install as _install_flushing_pipeline

_install_flushing_pipeline()
