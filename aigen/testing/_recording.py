"""What a fake saw: `RecordedRequest`, with JSON and `multipart/form-data` bodies parsed."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._outcomes import Outcome, Reply

__all__ = ["FilePart", "RecordedRequest", "parse_multipart", "read_request"]


@dataclass(frozen=True)
class FilePart:
    """One file part of a `multipart/form-data` body, as it arrived."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it.

    `headers` has lower-case names; `json` is the parsed body (`None` if it was not
    JSON); a `multipart/form-data` body is parsed into `form` (field name to text) and
    `files` (in order, with their field names and content types). `arrived_at` is
    `time.monotonic()` once the whole request was read, so arrivals can be compared with
    each other and with the test's own clock. `model` is the model the request named.
    `outcome` is what the script played (`None` when a built-in check answered instead,
    such as a missing key); `reply` is the answer sent (`None` for a `Drop`), and
    `request_id` the id it carried (OpenAI's `x-request-id`, Gemini's `responseId`).
    """

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    json: Any = field(repr=False)  # as httpx's Response.json(): JSON is whatever came
    arrived_at: float
    form: Mapping[str, str] = field(default_factory=dict)
    files: tuple[FilePart, ...] = ()
    model: str | None = None
    outcome: Outcome | None = None
    reply: Reply | None = field(default=None, repr=False)
    request_id: str | None = None

    @property
    def fields(self) -> Mapping[str, object]:
        """The request's named values: its JSON object, or its multipart form fields."""
        return self.json if isinstance(self.json, dict) else self.form


def read_request(
    method: str, target: str, headers: Mapping[str, str], body: bytes
) -> RecordedRequest:
    """A `RecordedRequest` for what arrived (`target` is the path with its query string)."""
    url = urlsplit(target)
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "")
    parsed: Any = None
    form: dict[str, str] = {}
    files: tuple[FilePart, ...] = ()
    if content_type.startswith("multipart/form-data"):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            form, files = parse_multipart(body, content_type)
    elif body:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
    return RecordedRequest(
        method=method,
        path=url.path,
        query=parse_qs(url.query),
        headers=lowered,
        body=body,
        json=parsed,
        arrived_at=time.monotonic(),
        form=form,
        files=files,
    )


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], tuple[FilePart, ...]]:
    """Split a `multipart/form-data` body into its text fields and its file parts.

    Raises `ValueError` when the body does not follow its boundary.
    """
    boundary = _header_param("content-type", content_type, "boundary")
    if not boundary:
        raise ValueError("multipart/form-data without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise ValueError("multipart body does not end with its closing boundary")
    form: dict[str, str] = {}
    files: list[FilePart] = []
    for section in sections[1:-1]:
        if not section.startswith(b"\r\n"):
            raise ValueError("multipart boundary not followed by a line break")
        head, separator, data = section[2:].partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("multipart part without a blank line after its headers")
        part_headers: dict[str, str] = {}
        for line in head.decode("utf-8").split("\r\n"):
            header, _, value = line.partition(":")
            part_headers[header.strip().lower()] = value.strip()
        disposition = part_headers.get("content-disposition", "")
        field_name = _header_param("content-disposition", disposition, "name")
        if field_name is None:
            raise ValueError("multipart part without a name")
        filename = _header_param("content-disposition", disposition, "filename")
        if filename is None and "content-type" not in part_headers:
            form[field_name] = data.decode("utf-8")
        else:
            files.append(FilePart(field_name, filename, part_headers.get("content-type"), data))
    return form, tuple(files)


def _header_param(header: str, value: str, param: str) -> str | None:
    message = Message()
    message[header] = value
    found = message.get_param(param, header=header)
    if found is None or isinstance(found, tuple):
        return None
    return str(found)
