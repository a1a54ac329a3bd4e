"""Relais adapters: everything that talks to the outside but HTTP (DICOM, files, jobs, database, mail)."""
