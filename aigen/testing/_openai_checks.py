"""What OpenAI's Images API checks before any model runs, and its error envelope (WIRE.md D)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._outcomes import Reply, error
from ._recording import RecordedRequest

__all__ = [
    "PATH",
    "SIZE",
    "check_request",
    "incorrect_key",
    "openai_error",
    "openai_error_body",
]

PATH = re.compile(r"^/v1/images/(?P<operation>generations|edits)$")
SIZE = re.compile(r"^(\d+)x(\d+)$")
_COMMON = frozenset(
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
_PARAMS = {
    "generations": _COMMON | {"style"},
    "edits": _COMMON | {"image", "image[]", "mask", "input_fidelity"},
}
_FIXED_SIZES = {
    "gpt-image-1": {"1024x1024", "1536x1024", "1024x1536"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}


def openai_error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    **extra: object,
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
    **extra: object,
) -> Reply:
    """An error in OpenAI's envelope; `extra` joins the inner object (`moderation_details=`)."""
    body = openai_error_body(message, type=type, code=code, param=param, **extra)
    return error(status, body, headers=headers, delay=delay)


def check_request(request: RecordedRequest, api_key: str | None) -> Reply | None:
    """The answer OpenAI gives before any model runs (path, key, body, parameters), if any."""
    match = PATH.match(request.path)
    if match is None or request.method != "POST":
        return openai_error(404, f"Invalid URL ({request.method} {request.path})")
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if api_key is not None and key.strip() != api_key:
        return openai_error(401, incorrect_key(key.strip()), code="invalid_api_key")
    operation = match.group("operation")
    names = set(request.fields) | {part.name for part in request.files}
    if operation == "generations" and not isinstance(request.json, dict):
        return openai_error(
            400,
            "We could not parse the JSON body of your request. The OpenAI API "
            "expects a JSON payload.",
        )
    if operation == "edits":
        content_type = request.headers.get("content-type", "none")
        if not content_type.startswith("multipart/form-data"):
            return openai_error(
                400,
                f"Invalid Content-Type header ({content_type}), expected multipart/form-data.",
            )
        if not any(part.name in ("image", "image[]") for part in request.files):
            return _missing("image")
    return _check_fields(operation, request.fields, names)


def _check_fields(operation: str, fields: Mapping[str, object], names: set[str]) -> Reply | None:
    if not isinstance(fields.get("prompt"), str) or not fields.get("prompt"):
        return _missing("prompt")
    model = str(fields.get("model") or "dall-e-2")
    unknown = sorted(names - _PARAMS[operation])
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


def incorrect_key(key: str) -> str:
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


def _size_is_valid(model: str, size: str) -> bool:
    for prefix, sizes in _FIXED_SIZES.items():
        if model.startswith(prefix):
            return size in sizes
    match = SIZE.match(size)  # gpt-image-2 and later: free sizes within bounds
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
