"""Scripted fake image APIs on a real socket, for end-to-end tests: Gemini and OpenAI.

A fake is an `http.server.ThreadingHTTPServer` bound to `127.0.0.1` on a free port,
serving from daemon threads. It records every request it receives and plays a queue of
scripted outcomes, one per valid request, falling back to `default` (a 200 with a real
PNG) when the queue is empty::

    with FakeOpenAI() as server:  # or FakeGemini(); both take the same outcomes
        server.script(overloaded(), success())
        client = Client(provider="openai", api_key="k", base_url=server.base_url)
        client.generate("a fox")
        assert len(server.requests) == 2

The module has two layers.

**The scripted core** (`FakeServer`) knows nothing about any provider: the socket, one
thread per connection, reading requests (JSON and `multipart/form-data` bodies are parsed
for the record), the queue of outcomes, delays, slow and cut bodies, dropped connections,
in-flight counting and a clean shutdown. Leaving the `with` block stops the accept loop,
wakes every pause, shuts down every connection still open (keep-alive ones included),
joins every thread and closes the listening socket. A thread that will not stop, or an
exception in the server's own code (a `Reply` body that is not JSON-able, say), is raised
by `stop()` rather than passing unseen as a dropped connection.

**A dialect** (`GeminiDialect`, `OpenAIDialect`) knows one provider's wire (WIRE.md A, B
and D): its paths, how it authenticates, the checks it makes before any model runs (they
answer without consuming the script), how it says each provider-neutral `Situation`, and
the headers every answer carries. `FakeGemini` and `FakeOpenAI` are the core with one.

Outcomes are plain values:

- `Situation`: a provider-neutral outcome ("success", "overloaded", "rate limited, wait
  N seconds", ...) that each dialect renders its own way. Made by `success()`,
  `overloaded()`, `server_error()`, `rate_limited()`, `quota_exhausted()`,
  `content_blocked()`, `bad_request()`, `not_found()`, `bad_key()` and `stall()`. For
  example `rate_limited(2.0)` is, on Gemini, a 429 whose body carries a
  `google.rpc.RetryInfo` of `2s` and no header; on OpenAI, a 429 `rate_limit_exceeded`
  with a `retry-after-ms: 2000` header.
- `Reply`: a raw HTTP answer (status, JSON or raw body, headers), for anything
  provider-specific (`error()`, `gemini_error()`, `openai_error()` make common ones).
- `Drop`: read the request, then close the connection without a byte of answer (`drop()`).

Any outcome can be late (`delay` seconds before the status line: a stalled server, for
timeouts), slow (`body_duration` seconds to trickle the body out in `chunks` pieces after
the headers) or cut (`cut_after` bytes of the body, then the connection closes).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

from typing_extensions import Self

from . import gemini_bodies as gb
from .images import png

__all__ = [
    "FAKES",
    "OPENAI_RATE_LIMIT_HEADERS",
    "Dialect",
    "Drop",
    "FakeGemini",
    "FakeOpenAI",
    "FakeServer",
    "FilePart",
    "GeminiDialect",
    "OpenAIDialect",
    "Outcome",
    "RecordedRequest",
    "Reply",
    "Situation",
    "bad_key",
    "bad_request",
    "content_blocked",
    "drop",
    "error",
    "fake_server",
    "gemini_error",
    "not_found",
    "openai_error",
    "openai_error_body",
    "overloaded",
    "parse_multipart",
    "quota_exhausted",
    "rate_limited",
    "server_error",
    "stall",
    "success",
]


# -- outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A raw HTTP answer to play.

    `body` is sent as JSON unless it is `bytes`, which are sent as they are (an HTML page
    from a proxy, say). `headers` are added to `content-type` and `content-length` (and
    to what the dialect puts on every answer, such as OpenAI's `x-request-id`). `delay`
    is waited before the status line; `body_duration` is spread over `chunks` pauses
    between the headers and the last byte of the body. `cut_after` sends only that many
    bytes of the body (the full length is still announced) and then closes the
    connection: an answer lost halfway.
    """

    status: int = 200
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body_duration: float = 0.0
    chunks: int = 4
    cut_after: int | None = None

    def encoded_body(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Drop:
    """Read the request, wait `delay`, then close the connection without answering."""

    delay: float = 0.0


SituationKind = Literal[
    "success",
    "overloaded",
    "parse_multipart",
    "server_error",
    "rate_limited",
    "quota_exhausted",
    "content_blocked",
    "bad_request",
    "not_found",
    "bad_key",
]


@dataclass(frozen=True)
class Situation:
    """A provider-neutral outcome; the server's dialect turns it into its own `Reply`.

    `kind` says what happens; `status` (for `server_error`), `hint` (seconds, for
    `rate_limited`), `stage` (`"prompt"` or `"output"`, for `content_blocked`), `image`
    and `request_id` (for `success`) and `message` refine it. `details` are extras only
    one dialect understands (Gemini's `text=`, OpenAI's `revised_prompt=`); another
    dialect refuses them. `headers` and the timing fields are applied as `Reply`'s are.
    """

    kind: SituationKind
    status: int | None = None
    hint: float | None = None
    stage: Literal["prompt", "output"] = "prompt"
    image: bytes | None = field(default=None, repr=False)
    request_id: str | None = None
    message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body_duration: float = 0.0
    chunks: int = 4
    cut_after: int | None = None


Outcome = Reply | Drop | Situation


def success(
    image: bytes | None = None,
    *,
    request_id: str | None = None,
    delay: float = 0.0,
    body_duration: float = 0.0,
    chunks: int = 4,
    cut_after: int | None = None,
    headers: Mapping[str, str] | None = None,
    **details: Any,
) -> Situation:
    """A 200 carrying `image`, or the dialect's own real PNG when `image` is `None`.

    Gemini's default image is 64x32; OpenAI's has the requested `size` (1024x1024 for
    `auto`). `request_id` is Gemini's `responseId` or OpenAI's `x-request-id`. `details`
    go to the dialect: Gemini passes them to `gemini_bodies.image_answer` (`text=`,
    `image_signature=`, ...); OpenAI takes `revised_prompt=` and the top-level fields
    `created`, `background`, `output_format`, `quality`, `size` and `usage`. A detail the
    dialect does not know fails the answer, and `stop()` raises it.
    """
    return Situation(
        "success",
        image=image,
        request_id=request_id,
        details=details,
        headers=dict(headers or {}),
        delay=delay,
        body_duration=body_duration,
        chunks=chunks,
        cut_after=cut_after,
    )


def stall(seconds: float) -> Situation:
    """A success that waits `seconds` before sending its headers (to make clients time out)."""
    return success(delay=seconds)


def _failure(
    kind: SituationKind,
    headers: Mapping[str, str] | None,
    delay: float,
    **fields: Any,
) -> Situation:
    return Situation(kind, headers=dict(headers or {}), delay=delay, **fields)


def overloaded(*, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> Situation:
    """503: the model is overloaded; try again later."""
    return _failure("overloaded", headers, delay, status=503)


def server_error(
    status: int = 500, *, headers: Mapping[str, str] | None = None, delay: float = 0.0
) -> Situation:
    """A 5xx in the provider's words (500 internal, 502, 504 deadline exceeded, ...)."""
    return _failure("server_error", headers, delay, status=status)


def rate_limited(
    hint: float | None = None, *, headers: Mapping[str, str] | None = None, delay: float = 0.0
) -> Situation:
    """429, too many requests: wait `hint` seconds, said the provider's way (if given).

    Gemini puts it in the body as a `google.rpc.RetryInfo` (and sends no header); OpenAI
    sends `retry-after-ms`. Extra `headers` (a proxy's `Retry-After`, say) are added.
    """
    return _failure("rate_limited", headers, delay, status=429, hint=hint)


def quota_exhausted(*, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> Situation:
    """429 that waiting will not fix: a Gemini per-day quota, OpenAI `insufficient_quota`."""
    return _failure("quota_exhausted", headers, delay, status=429)


def content_blocked(
    stage: Literal["prompt", "output"] = "prompt",
    *,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Situation:
    """A safety refusal of the prompt or of the generated image.

    Gemini: a 200 with `promptFeedback.blockReason`, or a candidate ending `IMAGE_SAFETY`.
    OpenAI: a 400 `moderation_blocked` naming the moderation stage.
    """
    return _failure("content_blocked", headers, delay, stage=stage)


def bad_request(
    message: str | None = None, *, headers: Mapping[str, str] | None = None, delay: float = 0.0
) -> Situation:
    """400: the request is invalid (not a safety refusal, not a key problem)."""
    return _failure("bad_request", headers, delay, status=400, message=message)


def not_found(*, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> Situation:
    """404: no such model."""
    return _failure("not_found", headers, delay, status=404)


def bad_key(*, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> Situation:
    """The key is refused (a key revoked mid-run): Gemini's 400 API_KEY_INVALID, OpenAI's 401."""
    return _failure("bad_key", headers, delay)


def drop(delay: float = 0.0) -> Drop:
    """Close the connection without answering, after `delay` seconds."""
    return Drop(delay)


def error(
    status: int,
    body: object,
    *,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """An error answer with any body (JSON-able, or raw `bytes`) and extra headers."""
    return Reply(status, body, dict(headers or {}), delay=delay)


def gemini_error(
    status: int,
    grpc_status: str,
    message: str,
    *details: dict[str, Any],
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """An error with Gemini's `google.rpc.Status` body (WIRE.md B.1), e.g. a `RetryInfo`."""
    return error(
        status, gb.error(status, grpc_status, message, *details), headers=headers, delay=delay
    )


def openai_error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """OpenAI's envelope (WIRE.md D.6): `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type, "param": param, "code": code, **extra}}


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
    **extra: Any,
) -> Reply:
    """An error in OpenAI's envelope; `extra` joins the inner object (`moderation_details=`)."""
    body = openai_error_body(message, type=type, code=code, param=param, **extra)
    return error(status, body, headers=headers, delay=delay)


# -- what the server saw -----------------------------------------------------------------


@dataclass(frozen=True)
class FilePart:
    """One file part of a `multipart/form-data` body, as it arrived."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    `headers` has lower-case names; `json` is the parsed body (`None` if it was not
    JSON); a `multipart/form-data` body is parsed into `form` (field name to text) and
    `files` (in order, with their field names and content types). `arrived_at` is
    `time.monotonic()` once the whole request was read, so arrivals can be compared with
    each other and with the test's own clock. `model` is the model the request named.
    `outcome` is what the script played (`None` when a built-in check answered instead);
    `reply` is the answer sent (`None` for a `Drop`).
    """

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    json: Any = field(repr=False)
    arrived_at: float
    form: Mapping[str, str] = field(default_factory=dict)
    files: tuple[FilePart, ...] = ()
    model: str | None = None
    outcome: Outcome | None = None
    reply: Reply | None = field(default=None, repr=False)
    request_id: str | None = None


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


# -- dialects ----------------------------------------------------------------------------


class Dialect(Protocol):
    """What a fake needs to know about one provider's wire; the rest is the core's."""

    name: str

    def model_of(self, request: RecordedRequest) -> str | None:
        """The model the request names, if any."""
        ...

    def check(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        """The answer the real API gives before any model runs, or `None` to play the script.

        `api_key`, when set, is the only key accepted.
        """
        ...

    def render(self, situation: Situation, request: RecordedRequest) -> Reply:
        """`situation` in this provider's words (status, body and headers; no timing)."""
        ...

    def finish(self, reply: Reply, request: RecordedRequest) -> Reply:
        """`reply` with the headers every answer of this provider carries."""
        ...

    def request_id(self, reply: Reply) -> str | None:
        """The id this provider gave the answer (a header or a body field), if any."""
        ...


def _seconds_text(seconds: float) -> str:
    """0.3 -> "0.3", 17.0 -> "17": for durations in bodies and messages."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") or "0"


def _mime_type(image: bytes) -> str:
    if image.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


@functools.lru_cache(maxsize=32)
def _png_of_size(width: int, height: int) -> bytes:
    """A real one-colour PNG of that size, made once (a 4K one takes tens of milliseconds)."""
    return png(width, height)


class GeminiDialect:
    """Gemini's `generateContent` (WIRE.md A and B).

    Checks: an unknown path is a 404 and a method other than POST a 405; a missing key
    (neither `x-goog-api-key` nor `?key=`) is a 401; a key other than the fake's
    `api_key` (when one is set) is Gemini's 400 `API_KEY_INVALID`; a body that is not a
    JSON object is a 400. Errors are `google.rpc.Status` bodies; no answer carries a
    `Retry-After` header unless the script adds one.
    """

    name = "gemini"
    PATH = re.compile(r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):generateContent$")

    def model_of(self, request: RecordedRequest) -> str | None:
        match = self.PATH.match(request.path)
        return match.group("model") if match else None

    def check(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        if self.PATH.match(request.path) is None:
            return gemini_error(404, "NOT_FOUND", "Not found: no such method or path.")
        if request.method != "POST":
            return gemini_error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here.")
        key = request.headers.get("x-goog-api-key") or next(
            iter(request.query.get("key", [])), None
        )
        if not key:
            return gemini_error(401, "UNAUTHENTICATED", "Request is missing an API key.")
        if api_key is not None and key != api_key:
            return error(400, gb.key_invalid())
        if not isinstance(request.json, dict):
            return gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        return None

    def render(self, situation: Situation, request: RecordedRequest) -> Reply:
        kind = situation.kind
        if kind == "success":
            image = situation.image if situation.image is not None else _png_of_size(64, 32)
            answer: dict[str, Any] = {"mime_type": _mime_type(image), **situation.details}
            if situation.request_id is not None:
                answer["response_id"] = situation.request_id
            return Reply(200, gb.image_answer(image, **answer))
        if situation.details:
            raise TypeError(f"gemini takes no details for {kind}: {sorted(situation.details)}")
        if kind == "content_blocked":
            if situation.stage == "output":
                return Reply(200, gb.output_blocked())
            return Reply(200, gb.prompt_blocked())
        if kind == "bad_key":
            return Reply(400, gb.key_invalid())
        if kind == "rate_limited":
            body = gb.rate_limited(
                None if situation.hint is None else f"{_seconds_text(situation.hint)}s"
            )
            if situation.message is not None:
                body["error"]["message"] = situation.message
            return Reply(429, body)
        if kind == "quota_exhausted":
            body = gb.rate_limited(
                "30s", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier", value="0"
            )
            return Reply(429, body)
        status = situation.status or 500
        grpc_status, message = {
            "overloaded": ("UNAVAILABLE", "The model is overloaded. Please try again later."),
            "bad_request": ("INVALID_ARGUMENT", "Request contains an invalid argument."),
            "not_found": (
                "NOT_FOUND",
                f"models/{self.model_of(request)} is not found for API version v1beta, "
                "or is not supported for generateContent.",
            ),
        }.get(kind, _GEMINI_SERVER_ERRORS.get(status, ("INTERNAL", "An internal error.")))
        return gemini_error(status, grpc_status, situation.message or message)

    def finish(self, reply: Reply, request: RecordedRequest) -> Reply:
        return reply

    def request_id(self, reply: Reply) -> str | None:
        body = reply.body
        found = body.get("responseId") if isinstance(body, dict) else None
        return found if isinstance(found, str) else None


_GEMINI_SERVER_ERRORS = {
    500: ("INTERNAL", "An internal error has occurred. Please retry or report it."),
    502: ("UNAVAILABLE", "Bad gateway."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}

# The sample values of OpenAI's rate-limit guide (WIRE.md D.7).
OPENAI_RATE_LIMIT_HEADERS: Mapping[str, str] = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}

_OPENAI_COMMON = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "response_format",
        "stream",
        "partial_images",
        "user",
        "moderation",
    }
)
_OPENAI_PARAMS = {
    "generations": _OPENAI_COMMON | {"style"},
    "edits": _OPENAI_COMMON | {"image", "image[]", "mask", "input_fidelity"},
}
_OPENAI_FIXED_SIZES = {
    "gpt-image-1": {"1024x1024", "1536x1024", "1024x1536"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}
# What `success(**details)` may set: the image item's revised prompt and top-level fields.
_OPENAI_SUCCESS_DETAILS = frozenset(
    {"revised_prompt", "created", "background", "output_format", "quality", "size", "usage"}
)
_SIZE = re.compile(r"^(\d+)x(\d+)$")


class OpenAIDialect:
    """OpenAI's Images API (WIRE.md D): JSON generations and multipart edits.

    Checks: a path other than `/v1/images/generations` or `/v1/images/edits`, or a
    method other than POST, is the 404 `Invalid URL`; a missing `Authorization: Bearer`
    is a 401, and a key other than the fake's `api_key` (when one is set) the 401
    `invalid_api_key` (the key masked, as OpenAI does). Generations need a JSON object,
    edits a `multipart/form-data` body with an `image` (or `image[]`) file; both need a
    `prompt`, take only the parameters OpenAI knows (gpt-image models refuse `seed` and
    `response_format`), and a `size` the model supports. Every answer carries an
    `x-request-id` (`req_` + 32 hex digits unless the script sets one), and the
    `rate_limit_headers` when set (on a 429, with the requests left at 0).
    """

    name = "openai"
    PATH = re.compile(r"^/v1/images/(?P<operation>generations|edits)$")

    def __init__(self, *, rate_limit_headers: Mapping[str, str] | None = None) -> None:
        self.rate_limit_headers = dict(rate_limit_headers or {})

    def model_of(self, request: RecordedRequest) -> str | None:
        fields = request.json if isinstance(request.json, dict) else request.form
        model = fields.get("model")
        return model if isinstance(model, str) else None

    def check(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        match = self.PATH.match(request.path)
        if match is None or request.method != "POST":
            return openai_error(404, f"Invalid URL ({request.method} {request.path})")
        authorization = request.headers.get("authorization", "")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return openai_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if api_key is not None and key.strip() != api_key:
            return openai_error(401, _incorrect_key(key.strip()), code="invalid_api_key")
        operation = match.group("operation")
        if operation == "generations":
            if not isinstance(request.json, dict):
                return openai_error(
                    400,
                    "We could not parse the JSON body of your request. The OpenAI API "
                    "expects a JSON payload.",
                )
            fields: Mapping[str, object] = request.json
            names = set(fields)
        else:
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                content_type = request.headers.get("content-type", "none")
                return openai_error(
                    400,
                    f"Invalid Content-Type header ({content_type}), expected multipart/form-data.",
                )
            fields = request.form
            names = set(fields) | {part.name for part in request.files}
            if not any(part.name in ("image", "image[]") for part in request.files):
                return _missing("image")
        return self._check_fields(operation, fields, names)

    def _check_fields(
        self, operation: str, fields: Mapping[str, object], names: set[str]
    ) -> Reply | None:
        if not isinstance(fields.get("prompt"), str) or not fields.get("prompt"):
            return _missing("prompt")
        model = str(fields.get("model") or "dall-e-2")
        unknown = sorted(names - _OPENAI_PARAMS[operation])
        if not model.startswith("dall-e") and "response_format" in names:
            unknown.insert(0, "response_format")
        if unknown:
            return openai_error(
                400,
                f"Unknown parameter: '{unknown[0]}'.",
                code="unknown_parameter",
                param=unknown[0],
            )
        size = fields.get("size")
        if size is not None and size != "auto" and not _size_is_valid(model, str(size)):
            return openai_error(
                400,
                f"Invalid value: '{size}'. This size is not supported by {model}.",
                code="invalid_value",
                param="size",
            )
        return None

    def render(self, situation: Situation, request: RecordedRequest) -> Reply:
        kind = situation.kind
        if kind == "success":
            return self._success(situation, request)
        if situation.details:
            raise TypeError(f"openai takes no details for {kind}: {sorted(situation.details)}")
        model = self.model_of(request) or "gpt-image-1"
        message = situation.message
        if kind == "rate_limited":
            headers = dict(self.rate_limit_headers)
            if headers:
                headers["x-ratelimit-remaining-requests"] = "0"
            if situation.hint is not None:
                headers["retry-after-ms"] = str(round(situation.hint * 1000))
            return openai_error(
                429,
                message
                or f"Rate limit reached for {model} in organization org-fake on images per "
                "min (IPM): Limit 5, Used 5, Requested 1.",
                type="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if kind == "quota_exhausted":
            return openai_error(
                429,
                message
                or "You exceeded your current quota, please check your plan and billing details.",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        if kind == "content_blocked":
            category = "violence" if situation.stage == "prompt" else "sexual"
            return openai_error(
                400,
                message
                or "Your request was rejected by the safety system. If you believe this is an "
                "error, contact us at help.openai.com and include the request ID "
                f"{uuid.uuid4()}. safety_violations=[{category}].",
                type="image_generation_user_error",
                code="moderation_blocked",
                moderation_details={
                    "moderation_stage": "input" if situation.stage == "prompt" else "output",
                    "categories": [category],
                },
            )
        if kind == "bad_key":
            key = request.headers.get("authorization", "").partition(" ")[2].strip()
            return openai_error(401, message or _incorrect_key(key), code="invalid_api_key")
        if kind == "bad_request":
            return openai_error(
                400,
                message
                or "Invalid value: 'ultra'. Supported values are: 'low', 'medium', "
                "'high', and 'auto'.",
                code="invalid_value",
                param="quality",
            )
        if kind == "not_found":
            return openai_error(
                404,
                message or f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        status = situation.status or 500
        default = (
            "The engine is currently overloaded, please try again later."
            if status == 503
            else "The server had an error while processing your request. Sorry about that!"
        )
        return openai_error(status, message or default, type="server_error")

    def _success(self, situation: Situation, request: RecordedRequest) -> Reply:
        fields = request.json if isinstance(request.json, dict) else request.form
        requested = _SIZE.match(str(fields.get("size", "")))
        width, height = (int(requested[1]), int(requested[2])) if requested else (1024, 1024)
        image = situation.image if situation.image is not None else _png_of_size(width, height)
        actual = _png_size(image)
        if actual is not None:
            width, height = actual
        details = dict(situation.details)
        unknown = sorted(set(details) - _OPENAI_SUCCESS_DETAILS)
        if unknown:
            raise TypeError(f"openai's success takes no details {unknown}")
        item: dict[str, Any] = {"b64_json": base64.b64encode(image).decode()}
        if "revised_prompt" in details:
            item["revised_prompt"] = details.pop("revised_prompt")
        edit = request.path.endswith("/edits")
        image_tokens = 323 * len(request.files) if edit else 0
        body: dict[str, Any] = {
            "created": int(time.time()),
            "data": [item],
            "background": _resolved(fields.get("background"), "opaque"),
            "output_format": _mime_type(image).removeprefix("image/"),
            "quality": _resolved(fields.get("quality"), "medium"),
            "size": f"{width}x{height}",
            "usage": {
                "input_tokens": 12 + image_tokens,
                "input_tokens_details": {"text_tokens": 12, "image_tokens": image_tokens},
                "output_tokens": 1290,
                "total_tokens": 1302 + image_tokens,
            },
            **details,
        }
        headers = {"x-request-id": situation.request_id} if situation.request_id else {}
        return Reply(200, body, headers)

    def finish(self, reply: Reply, request: RecordedRequest) -> Reply:
        headers = {
            **self.rate_limit_headers,
            "x-request-id": f"req_{uuid.uuid4().hex}",
            "openai-version": "2020-10-01",
            "openai-processing-ms": str(round(reply.delay * 1000)),
        }
        headers.update({name.lower(): value for name, value in reply.headers.items()})
        return replace(reply, headers=headers)

    def request_id(self, reply: Reply) -> str | None:
        return reply.headers.get("x-request-id")


def _incorrect_key(key: str) -> str:
    masked = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
    return (
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )


def _missing(param: str) -> Reply:
    return openai_error(
        400,
        f"Missing required parameter: '{param}'.",
        code="missing_required_parameter",
        param=param,
    )


def _resolved(value: object, default: str) -> str:
    return value if isinstance(value, str) and value != "auto" else default


def _size_is_valid(model: str, size: str) -> bool:
    for prefix, sizes in _OPENAI_FIXED_SIZES.items():
        if model.startswith(prefix):
            return size in sizes
    match = _SIZE.match(size)  # gpt-image-2 and later: free sizes within bounds
    if match is None:
        return False
    width, height = int(match[1]), int(match[2])
    long_side, short_side = max(width, height), min(width, height)
    return (
        width % 16 == 0
        and height % 16 == 0
        and 0 < short_side <= 2160
        and long_side <= 3840
        and long_side <= 3 * short_side
    )


def _png_size(image: bytes) -> tuple[int, int] | None:
    if not image.startswith(b"\x89PNG\r\n\x1a\n") or image[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", image[16:24])
    return int(width), int(height)


# -- the scripted core -------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """The socket server: one thread per connection, each tracked so it can be stopped.

    `process_request` does what ThreadingMixIn's does, and also remembers each
    connection's socket (to shut it down on stop) and names its thread; `FakeServer.stop()`
    joins the threads with a timeout, so ThreadingMixIn's own unbounded join list is unused.
    """

    daemon_threads = True
    request_queue_size = 512  # the default of 5 would drop connects from a burst of calls
    fake: FakeServer

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._workers: list[threading.Thread] = []
        self._numbers = itertools.count(1)
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.fake.thread_prefix}-conn-{next(self._numbers)}",
            daemon=True,
        )
        with self._lock:
            self._open.add(request)
            self._workers = [t for t in self._workers if t.is_alive()]
            self._workers.append(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is expected; any other failure is kept for `stop()`."""
        failure = sys.exc_info()[1]
        if failure is not None and not isinstance(failure, OSError):
            self.fake._failures.append(failure)

    def open_connection_count(self) -> int:
        with self._lock:
            return len(self._open)

    def disconnect_all(self) -> None:
        """Wake every handler blocked on a socket: each then finishes and closes it."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the peer or its handler
                sock.shutdown(socket.SHUT_RDWR)

    def connection_threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._workers)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time (HTTP/1.1 keep-alive) and answers it for `FakeServer`."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr: the server's `requests` list is the record."""

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        seen = self._receive()
        refusal = fake.dialect.check(seen, fake.api_key)
        outcome: Outcome = refusal if refusal is not None else fake._next_outcome()
        scripted = outcome if refusal is None else None
        try:
            reply = fake._render(outcome, seen)
        except Exception:
            fake._record(replace(seen, outcome=scripted))  # recorded, then kept for stop()
            raise
        request_id = fake.dialect.request_id(reply) if reply is not None else None
        fake._record(replace(seen, outcome=scripted, reply=reply, request_id=request_id))
        try:
            with fake._answering():
                self._play(outcome, reply)
        except OSError:
            self.close_connection = True  # the client hung up (a timeout, say)

    def _receive(self) -> RecordedRequest:
        body = self._read_body()
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        content_type = headers.get("content-type", "")
        parsed: Any = None
        form: dict[str, str] = {}
        files: tuple[FilePart, ...] = ()
        if content_type.startswith("multipart/form-data"):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                form, files = parse_multipart(body, content_type)
        elif body:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        seen = RecordedRequest(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers=headers,
            body=body,
            json=parsed,
            arrived_at=time.monotonic(),
            form=form,
            files=files,
        )
        return replace(seen, model=self.server.fake.dialect.model_of(seen))

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _play(self, outcome: Outcome, reply: Reply | None) -> None:
        fake = self.server.fake
        if not fake._pause(outcome.delay) or reply is None:
            self.close_connection = True  # nothing is written: the client sees EOF
            return
        payload = reply.encoded_body()
        headers = {
            "content-type": "application/json; charset=UTF-8",
            "content-length": str(len(payload)),
        }
        headers.update({name.lower(): value for name, value in reply.headers.items()})
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.cut_after is not None:
            payload = payload[: reply.cut_after]
            self.close_connection = True
        pieces = max(1, min(reply.chunks, len(payload))) if reply.body_duration > 0 else 1
        step = max(1, -(-len(payload) // pieces))  # ceiling division
        for start in range(0, max(1, len(payload)), step):
            if reply.body_duration > 0 and not fake._pause(reply.body_duration / pieces):
                self.close_connection = True
                return
            self.wfile.write(payload[start : start + step])


class FakeServer:
    """A scripted fake API on `127.0.0.1` speaking `dialect`; use it as a context manager.

    - `base_url`: `http://127.0.0.1:PORT`, to pass as `base_url=`.
    - `script(*outcomes)`: queue outcomes, played in order, one per valid request.
    - `default`: what is played once the queue is empty (a `success()` unless changed).
    - `requests`: every request received so far, in order of arrival.
    - `api_key`: when set, the only key accepted; the dialect refuses any other its way.
    - `open_connections` / `wait_until(...)`: how many client connections are open now.
    - `peak_in_flight`: the most requests it was answering at once (for concurrency).
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        api_key: str | None = None,
        default: Outcome | None = None,
    ) -> None:
        self.dialect = dialect
        self.api_key = api_key
        self.default: Outcome = default if default is not None else success()
        self._queue: deque[Outcome] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = 0
        self._failures: list[BaseException] = []  # handler bugs, raised by stop()
        self._peak_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def provider(self) -> str:
        """The provider this fake speaks for (`"gemini"`, `"openai"`)."""
        return self.dialect.name

    @property
    def thread_prefix(self) -> str:
        """The name every thread of this fake starts with."""
        return f"aigen-fake-{self.dialect.name}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port and start serving in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        self._failures.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # how soon stop() is noticed
            name=f"{self.thread_prefix}-accept",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, drop open connections, join every thread, close the socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes every scripted pause
        server.shutdown()  # returns once the accept loop has exited
        thread.join(timeout)
        server.disconnect_all()
        deadline = time.monotonic() + timeout
        for worker in server.connection_threads():
            worker.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        self._server = self._thread = None
        name = type(self).__name__
        stuck = [t.name for t in [thread, *server.connection_threads()] if t.is_alive()]
        if stuck:
            raise RuntimeError(f"{name} threads did not stop: {stuck}")
        if self._failures:
            failure = self._failures[0]
            raise RuntimeError(f"{name} failed while answering: {failure!r}") from failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._failures.clear()  # the test's own failure is the one worth seeing
        self.stop()

    # -- what tests use ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *outcomes: Outcome) -> None:
        """Queue outcomes for the next valid requests, in order."""
        with self._lock:
            self._queue.extend(outcomes)

    @property
    def pending(self) -> int:
        """Scripted outcomes not played yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def arrivals(self) -> list[float]:
        """`arrived_at` of every request so far."""
        return [r.arrived_at for r in self.requests]

    @property
    def peak_in_flight(self) -> int:
        """The most requests this server was answering at one time."""
        with self._lock:
            return self._peak_in_flight

    @property
    def open_connections(self) -> int:
        """Client connections accepted and not yet closed."""
        return self._server.open_connection_count() if self._server is not None else 0

    def wait_until(self, condition: Callable[[Self], bool], timeout: float = 2.0) -> bool:
        """Poll `condition(self)` until it holds or `timeout` passes; return whether it held."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- used by the handler -----------------------------------------------------------

    def _next_outcome(self) -> Outcome:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _render(self, outcome: Outcome, request: RecordedRequest) -> Reply | None:
        """The reply `outcome` sends to `request` (`None` for a `Drop`)."""
        if isinstance(outcome, Drop):
            return None
        if isinstance(outcome, Situation):
            said = self.dialect.render(outcome, request)
            outcome = replace(
                said,
                headers={**said.headers, **outcome.headers},
                delay=outcome.delay,
                body_duration=outcome.body_duration,
                chunks=outcome.chunks,
                cut_after=outcome.cut_after,
            )
        return self.dialect.finish(outcome, request)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def _pause(self, seconds: float) -> bool:
        """Wait at least `seconds`; `False` if the server is stopping (stop at once)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stopping.wait(left):
                return False
        return not self._stopping.is_set()


class FakeGemini(FakeServer):
    """A fake Gemini API: `POST /{v1,v1beta,v1alpha}/models/{model}:generateContent`."""

    def __init__(self, *, api_key: str | None = None, default: Outcome | None = None) -> None:
        super().__init__(GeminiDialect(), api_key=api_key, default=default)


class FakeOpenAI(FakeServer):
    """A fake OpenAI Images API: `POST /v1/images/generations` and `/v1/images/edits`.

    `rate_limit_headers` (such as `OPENAI_RATE_LIMIT_HEADERS`) go on every answer.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Outcome | None = None,
        rate_limit_headers: Mapping[str, str] | None = None,
    ) -> None:
        dialect = OpenAIDialect(rate_limit_headers=rate_limit_headers)
        super().__init__(dialect, api_key=api_key, default=default)


FAKES: Mapping[str, Callable[..., FakeServer]] = {"gemini": FakeGemini, "openai": FakeOpenAI}


def fake_server(provider: str, **options: Any) -> FakeServer:
    """A (not yet started) fake for `provider`, `"gemini"` or `"openai"`."""
    try:
        make = FAKES[provider]
    except KeyError:
        raise ValueError(f"no fake for provider {provider!r}; known: {sorted(FAKES)}") from None
    return make(**options)
