"""multipart/related bodies (RFC 2387, PS3.18 8.6.1.2) written part by part, never held whole."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator


def multipart_related(parts: Iterable[tuple[str, bytes]], kind: str) -> tuple[str, Iterator[bytes]]:
    """(Content-Type, body) of a multipart/related of root type `kind` whose parts are
    (Content-Type, bytes); the body yields one part at a time."""
    boundary = "relais-" + uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for content_type, data in parts:
            yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return f'multipart/related; type="{kind}"; boundary={boundary}', body()
