"""multipart/form-data uploads streamed part by part to where each file goes, never held whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import multipart
from litestar import Request

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
FIELD_LIMIT = 2000  # a plain field is kept up to about this many bytes (checked before each chunk is added)


class Sink(Protocol[T_co]):
    """Where one uploaded file goes, chunk by chunk."""

    def write(self, data: bytes) -> None: ...

    def finish(self) -> T_co: ...  # the file is complete: what it became

    def abort(self) -> None: ...  # the upload failed: drop what was written


class BrokenUpload(Exception):
    """The body is cut short or is not valid multipart/form-data."""


@dataclass
class Upload(Generic[T]):
    files: list[tuple[str, T]] = field(default_factory=list)  # (file name as sent, what its sink finished as)
    fields: dict[str, bytes] = field(default_factory=dict)  # the other parts, by name (their first bytes)


def form_boundary(request: Request[Any, Any, Any]) -> str | None:
    """The boundary of a multipart/form-data body; None if the body is not one."""
    content_type = request.headers.get("content-type", "")
    boundary = multipart.parse_options_header(content_type)[1].get("boundary")
    return boundary if content_type.startswith("multipart/form-data") and boundary else None


async def receive(
    request: Request[Any, Any, Any], boundary: str, file_field: str, open_sink: Callable[[str], Sink[T]], *, max_segments: int,
    field_limit: int = FIELD_LIMIT,
) -> Upload[T]:
    """The body parsed as it arrives: each file of the form field `file_field` written to the sink
    `open_sink(file name)` gives, every other part kept in `fields` (up to about `field_limit` bytes each:
    a longer one is cut there, so its reader rejects it as too long). A broken body raises
    BrokenUpload; on any error the file being written is aborted (files finished before are kept)."""
    parser = multipart.PushMultipartParser(boundary, max_segment_count=max_segments)
    upload: Upload[T] = Upload()
    sink: Sink[T] | None = None
    filename, current = "", None
    try:
        async for chunk in request.stream():
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    current = event
                    if event.filename is not None and event.name == file_field:
                        filename = event.filename
                        sink = open_sink(filename)
                    else:
                        upload.fields[event.name] = b""
                elif event is None:
                    if sink is not None:
                        upload.files.append((filename, sink.finish()))
                        sink = None
                    current = None
                elif current is not None:
                    if sink is not None:
                        sink.write(event)
                    elif len(upload.fields.get(current.name, b"")) < field_limit:
                        upload.fields[current.name] = upload.fields.get(current.name, b"") + event
        parser.close()
    except multipart.MultipartError:
        if sink is not None:
            sink.abort()
        raise BrokenUpload() from None
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    return upload
