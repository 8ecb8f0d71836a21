"""What a request and a response look like to the sans-IO core: plain data, no sockets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["FormFile", "HttpRequest", "HttpResponse"]


@dataclass(frozen=True)
class FormFile:
    """One file part of a multipart form: form field name, file name, bytes, content type."""

    name: str
    filename: str
    data: bytes = field(repr=False)
    content_type: str


@dataclass(frozen=True)
class HttpRequest:
    """A request for a client to send: method, absolute URL, headers, and a body.

    The body is either `content` (bytes, e.g. JSON) or a multipart form of `form`
    fields and `files`, which the client's HTTP library encodes. The headers hold the
    API key, so they are left out of the repr.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(default=b"", repr=False)
    form: Mapping[str, str] = field(default_factory=dict)
    files: tuple[FormFile, ...] = ()


@dataclass(frozen=True)
class HttpResponse:
    """A response a client received, body read to the end; header names are lower case."""

    status_code: int
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)
