"""The opinion report as a PDF: HTML to PDF (WeasyPrint), stored by SHA-256, recorded by the platform."""
