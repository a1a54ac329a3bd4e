"""HTML to PDF with WeasyPrint (Pango and fonts from scripts/system-packages.sh): A4, no network fetch."""

from __future__ import annotations

from typing import Any


def refuse_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The report never loads anything: hospital networks are closed and its content is all inline."""
    raise ValueError(f"ressource externe refusée dans le compte rendu : {url[:80]}")


def html_to_pdf(html: str) -> bytes:
    """The PDF of a complete HTML document (styles inline). The same HTML gives the same bytes when it
    carries its own dates (`<meta name="dcterms.created">`): WeasyPrint would otherwise stamp the time."""
    from weasyprint import HTML  # imported on use: loading Pango costs ~0.3 s, not every process needs it

    pdf: bytes = HTML(string=html, url_fetcher=refuse_fetch).write_pdf()
    return pdf
