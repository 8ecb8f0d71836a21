"""The `Provider` protocol, and small helpers every provider adapter uses.

A provider is a plain object that knows one service's wire format. It builds an
`HttpRequest` from a `GenerationRequest` and reads an `HttpResponse` back into a
`ProviderAnswer` or a typed error. It never sends, sleeps or reads a clock: the clients
do that, the same way for every provider. A service that needs several exchanges per
image (a queue to poll, a stream of events) also gives `exchange()`, a flow of the steps
in aigen/providers/_steps.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

import pydantic_core

from .._base64 import decode_strict
from .._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GenerationError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from .._http import HttpRequest, HttpResponse
from .._models import GenerationRequest, ProviderOptions, RateLimitInfo, TurnPart, Usage
from ._steps import ProviderFlow

__all__ = [
    "AnyProvider",
    "ErrorContext",
    "MultiStepProvider",
    "Provider",
    "ProviderAnswer",
    "RequestContext",
    "ServiceDescription",
    "api_error_class",
    "decode_base64_image",
    "json_body",
    "parse_error_body",
    "parse_json_body",
]


@dataclass(frozen=True)
class RequestContext:
    """What a provider needs beside the request to build the HTTP request.

    `model` and `seed` are already resolved (the client's default model, aigen's pick
    of a seed); `api_key` is never `None`, and never to be put in a message.
    """

    model: str
    seed: int | None
    base_url: str
    api_key: str = field(repr=False)


@dataclass(frozen=True)
class ErrorContext:
    """What the provider may use to describe an error: the model asked for."""

    model: str


@dataclass(frozen=True)
class ProviderAnswer:
    """What a provider read from a successful answer, before aigen checks the image."""

    image_data: bytes = field(repr=False)
    declared_mime_type: str | None = None
    text: str | None = None
    thought_signature: bytes | None = field(default=None, repr=False)
    parts: tuple[TurnPart, ...] = ()
    request_id: str | None = None
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    rate_limit: RateLimitInfo | None = None
    finish_reason: str | None = None


class ServiceDescription(Protocol):
    """What every provider has: the attributes, and how it reads an error answer.

    `name` (shown in errors and on responses), `default_model`, `default_base_url` (scheme
    and host, no trailing slash), `api_key_env_vars` (read in order when no `api_key` is
    given), `takes_seed` (whether `seed` reaches the model; when False, responses report
    `seed=None`).
    """

    name: str
    default_model: str
    default_base_url: str
    api_key_env_vars: tuple[str, ...]
    takes_seed: bool

    def parse_error(self, response: HttpResponse, context: ErrorContext) -> GenerationError:
        """Describe a non-2xx answer as the error to raise (usually an `APIError`
        subclass, with `retry_after` set from any hint in the body)."""
        ...


@runtime_checkable
class Provider(ServiceDescription, Protocol):
    """What aigen needs from a provider adapter; write one to reach another service.

    Beside `ServiceDescription`'s attributes and `parse_error`: `build_request` and
    `parse_response`, the one exchange each generation takes.
    """

    def build_request(self, request: GenerationRequest, context: RequestContext) -> HttpRequest:
        """Turn a request into the HTTP request to send. Raise `ConfigurationError`
        (before anything is sent) for a request this provider cannot serve."""
        ...

    def parse_response(self, response: HttpResponse) -> ProviderAnswer:
        """Read a 2xx answer. Raise `ContentPolicyError` for a safety block,
        `NoImageError` for an answer without an image, `GenerationError` for a malformed body."""
        ...


@runtime_checkable
class MultiStepProvider(ServiceDescription, Protocol):
    """A provider whose generation takes more than one exchange (a queue to poll, a
    stream of events): it gives `exchange()` instead of `build_request` and
    `parse_response`; the attributes and `parse_error` are as for `Provider`."""

    def exchange(self, request: GenerationRequest, context: RequestContext) -> ProviderFlow:
        """A generator of steps (aigen/providers/_steps.py) that returns the answer.
        Raise `ConfigurationError` before the first step for a request it cannot serve."""
        ...


# What a client accepts as its provider.
AnyProvider = Provider | MultiStepProvider

OptionsT = TypeVar("OptionsT", bound=ProviderOptions)


def options_for(given: ProviderOptions | None, default: OptionsT, provider: str) -> OptionsT:
    """The options a request uses: its own, else the provider's defaults.

    Another provider's options are refused with a `ConfigurationError`, before sending.
    """
    if given is None:
        return default
    expected = type(default)
    if not isinstance(given, expected):
        raise ConfigurationError(
            f"options={type(given).__name__}(...) is for another provider; this client "
            f"talks to {provider}: pass {expected.__name__}(...) or no options"
        )
    return given


def with_next_step(message: str, kind: type[GenerationError], model: str, key_vars: str) -> str:
    """The server's message, plus what the user can do about this kind of error."""
    if kind is AuthenticationError:
        return f"{message} Check the key in {key_vars} (or api_key=)."
    if kind is QuotaExceededError:
        return f"{message} Waiting will not help: check your plan and billing."
    if kind is NotFoundError:
        return f"{message} Check the model name ({model!r})."
    return message


def api_error_class(status_code: int) -> type[APIError]:
    """The `APIError` subclass for an HTTP status, before a provider reads the body."""
    if status_code in (400, 422):
        return BadRequestError
    if status_code in (401, 403):
        return AuthenticationError
    if status_code == 404:
        return NotFoundError
    if status_code == 429:
        return RateLimitError
    if 500 <= status_code <= 599:
        return ServerError
    return APIError  # anything else, 999 included, is a status nobody defined


def json_body(value: object) -> bytes:
    """`value` as compact UTF-8 JSON, for a request body (pydantic-core: a sixth of the
    time `json.dumps` takes, which counts on a call that takes a quarter millisecond)."""
    try:
        return pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError:
        # A lone surrogate (what Python makes of a command-line argument that is not
        # UTF-8) has no UTF-8 form; the stdlib escapes it as \udcff, as aigen always did.
        return json.dumps(value, separators=(",", ":")).encode()


def _loads(content: bytes) -> object:
    """JSON as `json.loads` reads it, parsed by pydantic-core when it can (in Rust, several
    times faster, on a multi-megabyte image answer and on a small one alike)."""
    try:
        return pydantic_core.from_json(content)
    except ValueError:
        # The stdlib's reading of what pydantic-core refuses (UTF-16, very deep nesting):
        # either the same answer, or the stdlib's own error.
        return json.loads(content)


def parse_json_body(response: HttpResponse, provider: str) -> object:
    """The body as JSON, or a `GenerationError` saying why it is not."""
    try:
        return _loads(response.content)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: [[[[...
        raise GenerationError(
            f"{provider} answered HTTP {response.status_code} with a body that is not JSON: "
            f"{preview(response.content)}",
            details={"status_code": response.status_code},
        ) from None


def parse_error_body(response: HttpResponse) -> object:
    """An error body as JSON when it is JSON, else as text (a proxy's HTML page, say)."""
    try:
        return _loads(response.content)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: [[[[...
        return response.content.decode("utf-8", "replace")


def decode_base64_image(data: object, provider: str, where: str) -> bytes:
    """Decode the base64 image text found at `where`, or raise a `GenerationError`."""
    if not isinstance(data, str) or not data:
        raise GenerationError(f"{provider} answered with no image data at {where}")
    decoded = decode_strict(data)  # URL-safe and unpadded base64 are legal in proto3 JSON
    if decoded is not None:
        return decoded
    try:  # the standard library's more forgiving reading (it skips stray characters)
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise GenerationError(
            f"{provider} answered with image data at {where} that is not valid base64"
        ) from None


def preview(content: bytes | str, limit: int = 200) -> str:
    """A short, printable excerpt of a body for an error message."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")


def as_mapping(value: object) -> Mapping[str, object]:
    """`value` if it is a JSON object, else an empty one: bodies are untrusted."""
    if isinstance(value, dict):  # what JSON parses to; the ABC check costs more
        return value
    return value if isinstance(value, Mapping) else {}


def finite_seconds(seconds: float | None) -> float | None:
    """A wait read from a body, or `None` when it is absent, negative or not finite."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def str_or_none(value: object) -> str | None:
    """`value` if it is a non-empty string, else `None`."""
    return value if isinstance(value, str) and value else None


def int_or_none(value: object) -> int | None:
    """`value` if it is an integer (not a bool), else `None`."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_list(value: object) -> Sequence[object]:
    """`value` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []
