"""Read-only DICOMweb scoped to one dossier (QIDO-RS, WADO-RS), for OHIF or any standard client."""
