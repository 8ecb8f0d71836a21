"""Keeping the key out of what aigen shows: error fields, request ids, echoed bodies."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["REDACTED", "redact_bytes", "redact_value"]

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
