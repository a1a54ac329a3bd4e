"""Read-only DICOMweb scoped to one dossier: QIDO-RS searches, WADO-RS retrieve, metadata, frames,
rendered images and thumbnails (routes in `routes.py`)."""
