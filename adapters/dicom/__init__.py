"""DICOM network node and file handling."""
