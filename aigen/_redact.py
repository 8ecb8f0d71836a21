"""Keeping the key out of what aigen shows: error fields, request ids, echoed bodies."""

from __future__ import annotations

from collections.abc import MutableMapping
from contextlib import suppress
from typing import TypeVar

from ._errors import AigenError

__all__ = ["REDACTED", "redact_bytes", "redact_value", "scrub_chain"]

T = TypeVar("T")

REDACTED = "[redacted]"
# A "key" shorter than this is a placeholder (tests, local fakes), not a secret; replacing
# every "k" in a message would garble it without protecting anything.
MIN_SECRET_LENGTH = 8


def redact_value(value: T, secret: str) -> T:
    """`value` with `secret` replaced in every string it holds, however deeply."""
    if len(secret) < MIN_SECRET_LENGTH:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED) if secret in value else value  # type: ignore[return-value]
    if isinstance(value, dict):
        return {  # type: ignore[return-value]
            redact_value(k, secret): redact_value(v, secret) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(item, secret) for item in value]  # type: ignore[return-value]
    return value


def redact_bytes(content: bytes, secret: str) -> bytes:
    """`content` with `secret` (as UTF-8) replaced, for a body a gateway may have echoed."""
    key = secret.encode()
    if len(key) < MIN_SECRET_LENGTH or key not in content:
        return content
    return content.replace(key, REDACTED.encode())


def scrub_chain(error: BaseException, secret: str, *, include_self: bool = False) -> None:
    """Make `error`'s chain (`__cause__`, `__context__`, and theirs) safe to show.

    The context of an aigen error raised `from None` is cut: it is never displayed, yet it stays
    reachable, and a `JSONDecodeError` there keeps the whole body (a key a gateway echoed
    in it, megabytes of image) in its `doc`. Every exception left in the chain has the
    secret replaced in its args and attributes, and in the headers and URL of a request
    it carries (httpx's errors hold the request sent, its key header included). `error`
    itself is scrubbed only with `include_self` (`GenerationCall.stamp` does its own).
    """
    seen: set[int] = set()
    pending = [error]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if exc.__suppress_context__ and exc.__cause__ is None and isinstance(exc, AigenError):
            exc.__context__ = None  # only aigen's own: another library's is its business
        if include_self or exc is not error:
            _scrub_exception(exc, secret)
        pending += [link for link in (exc.__cause__, exc.__context__) if link is not None]


def _scrub_exception(exc: BaseException, secret: str) -> None:
    if len(secret) < MIN_SECRET_LENGTH:
        return
    with suppress(TypeError, AttributeError):  # an exception with fixed args
        exc.args = tuple(_redacted(arg, secret) for arg in exc.args)
    for name, value in list(vars(exc).items()):
        scrubbed = _redacted(value, secret)
        if scrubbed is not value:
            with suppress(TypeError, AttributeError):  # a read-only attribute
                setattr(exc, name, scrubbed)
        else:
            _scrub_carried_request(value, secret)


def _redacted(value: object, secret: str) -> object:
    if isinstance(value, bytes):
        return redact_bytes(value, secret)
    return redact_value(value, secret)


def _scrub_carried_request(value: object, secret: str) -> None:
    """The secret out of a request (or response) an exception holds: its headers and URL."""
    headers = getattr(value, "headers", None)
    if isinstance(headers, MutableMapping):
        for name, text in list(headers.items()):
            if isinstance(text, str) and secret in text:
                headers[name] = text.replace(secret, REDACTED)
    url = getattr(value, "url", None)
    if url is not None and secret in str(url):
        with suppress(TypeError, ValueError, AttributeError):
            value.url = type(url)(str(url).replace(secret, REDACTED))  # type: ignore[attr-defined]
