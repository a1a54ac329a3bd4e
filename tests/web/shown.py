"""What a page shows that its forms send back, read from the HTML as a browser holds it: the version of the
dossier each control that changes it sends."""

from __future__ import annotations

import re


def _found(html: str, pattern: str, what: str) -> str:
    match = re.search(pattern, html, re.S)
    assert match, f"the page shows no {what}"
    return match.group(1)


def documents_version(html: str) -> str:
    """The version the documents' upload form sends (the #documents fragment, rendered again after each change)."""
    return _found(html, r'action="/dossiers/[^"]+/documents".*?name="expected_version" value="(\d+)"', "upload version")


def step_version(html: str) -> str:
    """The draft imaging step's version (#expected-version): what the imaging picker's controls include."""
    return _found(html, r'<input[^>]*id="expected-version"[^>]*value="(\d+)"', "step version")


def recipients_version(html: str) -> str:
    """The version of the recipients' list (#recipients-version): what the directory's « Ajouter » forms include."""
    return _found(html, r'id="recipients-version" name="expected_version" value="(\d+)"', "recipients version")


def removal_version(html: str, path: str) -> str:
    """The version a « Retirer » button posting to `path` sends (its hx-vals)."""
    return _found(html, rf'hx-post="{re.escape(path)}"[^>]*hx-vals=\'[^\']*"expected_version": "(\d+)"', "removal version")
