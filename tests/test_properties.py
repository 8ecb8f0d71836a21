"""Property tests of every response parser: any bytes in, a response or a `GenerationError` out.

Each provider's `parse_response` and `parse_error`, and the whole sans-IO path (the
call's flow, `generation_flow`, driven by tests/flows.py with the drawn answer to every
attempt: status check, body reader, parse, check the image, read header hints, retries,
redact the key), are fed bodies drawn from

- arbitrary bytes,
- arbitrary JSON (hypothesis `recursive`), sometimes mangled on the wire,
- near-miss JSON shaped like the real answers (WIRE.md), every field sometimes of the
  wrong type: candidates, parts, inlineData with bad base64 or base64 of non-images,
  unknown finish and block reasons, OpenAI `data` / `b64_json` / `url` / `usage` and
  error envelopes with odd codes, Gemini error details with odd `@type`, `retryDelay`
  and `quotaId` values,

with arbitrary headers (`retry-after`, `retry-after-ms`, `x-ratelimit-*`, `x-request-id`,
`x-should-retry`, with odd and non-ASCII values). The property: the answer is a
`ProviderAnswer` / `GenerationResponse`, or the error is a `GenerationError`
(`parse_error` *returns* one); never a `KeyError`, `TypeError`, `ValueError`, ...; and
on the whole path every wait is finite and every attempt counted.
Beside them: `parse_retry_after_headers` returns `None` or a finite number of seconds
>= 0, and `sniff_mime_type` / `image_size` never raise on any bytes.

Bugs these properties found in aigen are kept as `xfail(strict=True)` tests in the
sections "Known bugs" and "Key echoes", each keeping the property over the family of
inputs that shows the bug, with its minimal failing input as an explicit `@example`. When
a bug is fixed its test passes, strict xfail turns that into a failure, and the mark goes
with the fix (and the bug's entry in `KNOWN_BUGS`). Meanwhile the broad tests set aside
(`hypothesis.reject()`) an input that trips a known bug, recognised by the exception's
type and the aigen function it came from, and go on looking for new ones.

The whole path also runs with `rate_limit=` set, as every answer then adjusts the limiter.

Runs in about 10 s with the default profile (100 examples a test);
`AIGEN_HYPOTHESIS_PROFILE=thorough` draws 1200 a test.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import struct
import traceback
from collections.abc import Callable, Mapping
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

import aigen
from aigen import (
    APIError,
    ContentPolicyError,
    GenerationError,
    GenerationRequest,
    GenerationResponse,
    NoImageError,
    RateLimit,
)
from aigen._actions import Action, Send, Sleep
from aigen._config import resolve_settings
from aigen._core import Engine
from aigen._flow import generation_flow
from aigen._http import HttpResponse
from aigen._images import image_size, sniff_mime_type
from aigen._retry import is_retryable, parse_retry_after_headers
from aigen.providers import ErrorContext, Provider, ProviderAnswer
from aigen.providers.gemini import GeminiProvider
from aigen.providers.openai import OpenAIProvider

from . import gemini_bodies as gb
from .conftest import FakeTime
from .flows import drive
from .images import jpeg, png, webp_extended, webp_lossless, webp_lossy

settings.register_profile(
    "aigen-properties",
    max_examples=100,
    # The same examples on every run, so CI never fails on a search that merely got lucky;
    # the thorough profile below searches afresh each time.
    derandomize=True,
    deadline=None,  # the first example of a test pays for imports and pydantic warm-up
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large),
)
settings.register_profile(
    "aigen-properties-thorough",
    settings.get_profile("aigen-properties"),
    max_examples=1200,
    derandomize=False,
)
PROFILE = settings.get_profile(
    "aigen-properties-thorough"
    if os.environ.get("AIGEN_HYPOTHESIS_PROFILE") == "thorough"
    else "aigen-properties"
)

# A distinctive key: some drawn bodies echo it (as a gateway echoing the request would);
# it must never reach an error message or an error body.
KEY = "aigen-property-key-5f0c8e2a7b1d4c6e"
PROVIDERS: dict[str, Provider] = {"gemini": GeminiProvider(), "openai": OpenAIProvider()}
MODELS = {"gemini": "gemini-2.5-flash-image", "openai": "gpt-image-2"}
REQUEST = GenerationRequest(prompt="a fox in the snow")

# -- scalar strategies -------------------------------------------------------------------

IMAGES = (
    png(8, 8),
    png(1, 3),
    jpeg(8, 8),
    jpeg(5, 7, app_segments=2),
    webp_lossy(8, 8),
    webp_lossless(8, 8),
    webp_extended(8, 8),
)
FINISH_REASONS = (
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "OTHER",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "MALFORMED_FUNCTION_CALL",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "IMAGE_OTHER",
    "NO_IMAGE",
    "MISSING_THOUGHT_SIGNATURE",
    "FINISH_REASON_UNSPECIFIED",
    "image_safety",
    "Safety",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
    "A_REASON_FROM_2030",
)
BLOCK_REASONS = (
    "SAFETY",
    "OTHER",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "IMAGE_SAFETY",
    "BLOCKED_REASON_UNSPECIFIED",
    "JAILBREAK",
    "",
)
ODD_STRINGS = (
    "",
    " ",
    "\x00",
    "\ud800",
    "\udfff\ud800",
    "🍌",
    "é" * 3,
    "\u202e",
    "null",
    "{}",
    "NaN",
    "-1",
    "1e309",
    KEY,
    f"echo: {KEY}",
    "image/png",
    "image/gif",
    "models/gemini-2.5-flash-image",
)

odd_text = st.one_of(st.text(max_size=24), st.sampled_from(ODD_STRINGS))
huge_ints = st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**100, -(10**300), 10**4000])
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(),  # NaN and +-Infinity too: Python's json reads and writes them
    odd_text,
)
# Depth stays small here (max_leaves); far deeper nesting is the "deep JSON" bug below.
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(odd_text, children, max_size=3),
    ),
    max_leaves=10,
)


def wrong(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the right shape, sometimes any JSON value at all."""
    return st.one_of(right, right, json_values)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64_urlsafe_unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


base64_text = st.one_of(
    st.sampled_from(IMAGES).map(b64),  # a real image
    st.sampled_from(IMAGES).map(b64_urlsafe_unpadded),  # legal in proto3 JSON
    st.binary(max_size=48).map(b64),  # valid base64 of bytes that are no image
    st.binary(max_size=24).map(lambda tail: b64(b"\x89PNG\r\n\x1a\n" + tail)),  # PNG magic, junk
    st.binary(max_size=24).map(lambda tail: b64(b"\xff\xd8\xff" + tail)),
    st.binary(max_size=24).map(lambda tail: b64(b"RIFF\x00\x00\x00\x00WEBP" + tail)),
    st.sampled_from(["", "=", "====", "*** not base64 ***", "iVBORw0KGgo", "AAAA", "A"]),
    st.text(max_size=16),
)
image_data_values = st.one_of(base64_text, base64_text, json_values)
mime_types = st.sampled_from(["image/png", "image/jpeg", "image/webp", "image/gif", "", "png"])

durations = st.one_of(
    st.sampled_from(
        [
            "0s",
            "1s",
            "17s",
            "17.4s",
            "480ms",
            "6m0s",
            "1h2m3.5s",
            "51.84 seconds",
            "1 second",
            "-1s",
            "1e3s",
            "infs",
            "nans",
            " 3s ",
            "3 s",
            "\u0661\u0667s",
            "\uff11\uff12s",
            "9" * 400 + "s",
            "0.s",
        ]
    ),
    st.text(alphabet="0123456789.hms -", max_size=12),
)

# -- header strategies --------------------------------------------------------------------

HEADER_NAMES = (
    "retry-after",
    "retry-after-ms",
    "x-request-id",
    "x-should-retry",
    "content-type",
    "content-length",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-",
)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Xyz")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Foo")
ZONES = ("GMT", "UTC", "UT", "+0000", "-0000", "-0800", "+2359", "-2359", "+9999", "EST", "Z", "")

# Four-digit years and four-digit zone offsets, as RFC 9110 and RFC 5322 write them;
# longer numbers are the "far-out dates" bug below.
http_dates = st.one_of(
    st.integers(0, 253402300799).map(lambda t: formatdate(t, usegmt=True)),
    st.builds(
        "{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} {}".format,
        st.sampled_from(DAYS),
        st.integers(0, 99),
        st.sampled_from(MONTHS),
        st.integers(0, 9999),
        st.integers(0, 99),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from(ZONES),
    ),
    st.sampled_from(["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "0", "-0"]),
)
# Values stay short (40 characters): a 4301-digit number is the "huge numbers" bug below.
header_values = st.one_of(
    st.text(max_size=40),  # non-ASCII included
    st.integers().map(str),
    st.floats().map(str),  # "nan", "inf", "-0.0", "1e+300"
    durations,
    http_dates,
    st.sampled_from(
        [
            "true",
            "false",
            " FALSE ",
            "False\t",
            "",
            "-1",
            "1e309",
            "0x10",
            "1_000",
            "\u0663",
            "\uff11\uff12",
            "12, 13",
            KEY,
            "req_" + "0" * 32,
        ]
    ),
)
header_names = st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=12).map(str.lower))
headers_strategy = st.dictionaries(header_names, header_values, max_size=6)

# -- body strategies ----------------------------------------------------------------------


@st.composite
def encoded(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> bytes:
    """A JSON value as bytes on the wire, sometimes mangled the way broken proxies do."""
    value = draw(values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")  # lone surrogates: not valid UTF-8
    how = draw(st.sampled_from(["as is"] * 6 + ["cut", "bom", "utf-16", "junk", "html"]))
    if how == "cut":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    if how == "junk":
        return data + draw(st.binary(min_size=1, max_size=8))
    if how == "html":
        return b"<html><body>" + data + b"</body></html>"
    return data


arbitrary_json = encoded(json_values)

# Gemini 200 answers (WIRE.md A.3, A.4).
gemini_rating = st.fixed_dictionaries(
    {},
    optional={
        "category": wrong(st.sampled_from(["HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_X"])),
        "probability": wrong(st.sampled_from(["NEGLIGIBLE", "LOW", "MEDIUM", "HIGH"])),
        "blocked": wrong(st.booleans()),
    },
)
signature_fields = {
    "thought": wrong(st.booleans()),
    "thoughtSignature": wrong(base64_text),
    "thought_signature": wrong(base64_text),
}
gemini_text_part = st.fixed_dictionaries({}, optional={"text": wrong(odd_text), **signature_fields})
gemini_inline = st.fixed_dictionaries(
    {},
    optional={
        "mimeType": wrong(mime_types),
        "mime_type": wrong(mime_types),
        "data": image_data_values,
    },
)
gemini_image_part = st.one_of(
    st.fixed_dictionaries({"inlineData": wrong(gemini_inline)}, optional=signature_fields),
    st.fixed_dictionaries({"inline_data": wrong(gemini_inline)}, optional=signature_fields),
)


@st.composite
def gemini_parts(draw: st.DrawFn, max_images: int) -> list[Any]:
    """Text parts and other JSON, with up to `max_images` image parts among them."""
    parts: list[Any] = draw(st.lists(st.one_of(gemini_text_part, json_values), max_size=3))
    for _ in range(draw(st.integers(0, max_images))):
        parts.insert(draw(st.integers(0, len(parts))), draw(gemini_image_part))
    return parts


def gemini_answer(max_images: int) -> st.SearchStrategy[dict[str, Any]]:
    content = st.fixed_dictionaries(
        {"parts": wrong(gemini_parts(max_images))},
        optional={"role": wrong(st.just("model"))},
    )
    candidate = st.fixed_dictionaries(
        {"content": wrong(content)},
        optional={
            "finishReason": wrong(st.sampled_from(FINISH_REASONS)),
            "finishMessage": wrong(odd_text),
            "safetyRatings": wrong(st.lists(gemini_rating, max_size=2)),
            "index": wrong(st.integers()),
        },
    )
    feedback = st.fixed_dictionaries(
        {},
        optional={
            "blockReason": wrong(st.sampled_from(BLOCK_REASONS)),
            "safetyRatings": wrong(st.lists(gemini_rating, max_size=2)),
        },
    )
    usage = st.fixed_dictionaries(
        {},
        optional={
            name: wrong(st.one_of(st.integers(), huge_ints))
            for name in (
                "promptTokenCount",
                "candidatesTokenCount",
                "totalTokenCount",
                "thoughtsTokenCount",
            )
        },
    )
    return st.fixed_dictionaries(
        {"candidates": wrong(st.lists(candidate, min_size=1, max_size=2))},
        optional={
            "promptFeedback": wrong(feedback),
            "usageMetadata": wrong(usage),
            "modelVersion": wrong(st.sampled_from(["gemini-2.5-flash-image", "models/x"])),
            "responseId": wrong(odd_text),
        },
    )


# Gemini errors (WIRE.md B.2): google.rpc.Status with details.
RPC_TYPES = (
    *(
        f"{prefix}google.rpc.{name}"
        for prefix in ("type.googleapis.com/", "")
        for name in ("RetryInfo", "QuotaFailure", "ErrorInfo", "BadRequest", "Help", "Unknown")
    ),
    "RetryInfo",
    "",
    "type.googleapis.com/google.rpc.RetryInfoX",
)
gemini_violation = st.fixed_dictionaries(
    {},
    optional={
        "quotaId": wrong(
            st.sampled_from(
                [
                    "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                    "GenerateRequestsPerMinutePerProjectPerModel",
                    "PerDay",
                    "perday",
                    "",
                ]
            )
        ),
        "quotaValue": wrong(st.sampled_from(["0", "10", "", "0.0", "-1"])),
        "quotaMetric": wrong(odd_text),
    },
)
gemini_detail = st.fixed_dictionaries(
    {"@type": wrong(st.sampled_from(RPC_TYPES))},
    optional={
        "retryDelay": wrong(durations),
        "violations": wrong(st.lists(gemini_violation, max_size=2)),
        "reason": wrong(st.sampled_from(["API_KEY_INVALID", "RATE_LIMIT_EXCEEDED", ""])),
        "domain": wrong(odd_text),
        "metadata": json_values,
    },
)
gemini_messages = st.one_of(
    odd_text,
    durations.map(lambda d: f"Resource exhausted. Please retry in {d}."),
    st.sampled_from(
        [
            "The request was blocked on safety grounds.",
            "Prohibited use of the model",
            "API key not valid. Please pass a valid API key.",
            f"bad key {KEY}",
        ]
    ),
)
gemini_error_object = st.fixed_dictionaries(
    {},
    optional={
        "code": wrong(st.integers(0, 600)),
        "message": wrong(gemini_messages),
        "status": wrong(st.sampled_from(["RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "X"])),
        "details": wrong(st.lists(gemini_detail, max_size=3)),
    },
)
gemini_error_body = st.one_of(
    st.fixed_dictionaries({"error": wrong(gemini_error_object)}),
    st.fixed_dictionaries({"error": wrong(gemini_error_object)}).map(lambda body: [body]),
    json_values,
)

# OpenAI 200 answers and errors (WIRE.md D).
openai_usage = st.fixed_dictionaries(
    {},
    optional={
        name: wrong(st.one_of(st.integers(), huge_ints))
        for name in ("input_tokens", "output_tokens", "total_tokens")
    },
)
openai_item = st.fixed_dictionaries(
    {},
    optional={
        "b64_json": image_data_values,
        "url": wrong(st.just("https://example.com/img.png")),
        "revised_prompt": wrong(odd_text),
    },
)
openai_answer = st.fixed_dictionaries(
    {"data": wrong(st.lists(openai_item, max_size=2))},
    optional={
        "created": wrong(st.integers()),
        "output_format": wrong(st.sampled_from(["png", "jpeg", "webp", "gif"])),
        "usage": wrong(openai_usage),
        "background": wrong(odd_text),
        "quality": wrong(odd_text),
        "size": wrong(st.sampled_from(["1024x1024", "0x0", "x", ""])),
    },
)
OPENAI_CODES = (
    "moderation_blocked",
    "content_policy_violation",
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "rate_limit_exceeded",
    "invalid_api_key",
    "model_not_found",
    "invalid_value",
    "server_error",
    "",
)
openai_messages = st.one_of(
    odd_text,
    durations.map(lambda d: f"Rate limit reached. Please try again in {d}."),
    durations.map(lambda d: f"Please try again after {d}"),
    st.sampled_from(
        [
            "Your request was rejected by the safety system. safety_violations=[violence, sexual].",
            "Your request was rejected by the safety system. safety_violations=[]",
            "rejected by the safety system",
            f"Incorrect API key provided: {KEY}",
        ]
    ),
)
openai_error_object = st.fixed_dictionaries(
    {},
    optional={
        "message": wrong(openai_messages),
        "type": wrong(st.sampled_from(["insufficient_quota", "requests", "server_error", ""])),
        "code": wrong(st.sampled_from(OPENAI_CODES)),
        "param": wrong(odd_text),
        "moderation_details": wrong(
            st.fixed_dictionaries(
                {},
                optional={
                    "moderation_stage": wrong(st.sampled_from(["input", "output", "other"])),
                    "categories": wrong(st.lists(odd_text, max_size=2)),
                },
            )
        ),
    },
)
openai_error_body = st.one_of(
    st.fixed_dictionaries({"error": wrong(openai_error_object)}),
    json_values,
)

# Real answers (WIRE.md), to be mutated in a few places each.
GEMINI_ANSWERS: tuple[Any, ...] = (
    gb.image_answer(),
    gb.image_answer(jpeg(16, 9), image_first=True, text=None, mime_type="image/jpeg"),
    gb.image_answer(webp_lossless(4, 4), image_signature=None, text_signature=None),
    gb.prompt_blocked(),
    gb.output_blocked(),
    gb.text_only(),
)
# The real error bodies, and the status each comes with (ERROR_STATUSES, in order).
GEMINI_ERRORS: tuple[Any, ...] = (
    gb.rate_limited(),
    gb.rate_limited("30s", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    gb.overloaded(),
    gb.key_invalid(),
    gb.error(400, "INVALID_ARGUMENT", "The request was blocked on safety grounds."),
    [gb.rate_limited("2.5s")],  # the stream endpoint wraps errors in a list
)
OPENAI_ANSWERS: tuple[Any, ...] = (
    {
        "created": 1767225600,
        "data": [{"b64_json": b64(png(16, 16)), "revised_prompt": "a fox"}],
        "output_format": "png",
        "usage": {"input_tokens": 12, "output_tokens": 1290, "total_tokens": 1302},
    },
    {"created": 1, "data": [{"url": "https://example.com/a.png"}]},
    {"created": 1, "data": []},
)
OPENAI_ERRORS: tuple[Any, ...] = (
    {
        "error": {
            "message": "Rate limit reached. Please try again in 1.5s.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    },
    {
        "error": {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    },
    {
        "error": {
            "message": "Your request was rejected by the safety system. "
            "safety_violations=[violence].",
            "type": "image_generation_user_error",
            "param": None,
            "code": "moderation_blocked",
            "moderation_details": {"moderation_stage": "output", "categories": ["violence"]},
        }
    },
    {
        "error": {
            "message": "Incorrect API key provided: sk-abc***wxyz.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    },
)


def _places(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON document."""
    found: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in list(items):
        found.append((node, key))
        if isinstance(child, (dict, list)):
            found.extend(_places(child))
    return found


@st.composite
def mutated(draw: st.DrawFn, bases: tuple[Any, ...]) -> Any:
    """A real answer with up to three of its values replaced by any JSON, or removed."""
    body = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 3))):
        places = _places(body)
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        if draw(st.booleans()):
            container[key] = draw(st.one_of(json_values, odd_text, base64_text))
        else:
            del container[key]
    return body


NEAR_MISS_ANSWERS: dict[str, st.SearchStrategy[bytes]] = {
    "gemini": st.one_of(encoded(gemini_answer(max_images=3)), encoded(mutated(GEMINI_ANSWERS))),
    "openai": st.one_of(encoded(openai_answer), encoded(mutated(OPENAI_ANSWERS))),
}
# The statuses the real APIs use, 429 and 503 most (their bodies carry the most), then any.
STATUSES = st.one_of(
    st.sampled_from([429, 429, 429, 503, 503, 400, 400, 401, 402, 403, 404, 500, 502, 504]),
    st.sampled_from([408, 409, 413, 422, 451, 499, 501, 529]),
    st.integers(300, 599),
)
ERROR_STATUSES = {"gemini": (429, 429, 503, 400, 400, 429), "openai": (429, 429, 400, 401)}
ERROR_BASES = {"gemini": GEMINI_ERRORS, "openai": OPENAI_ERRORS}
GENERIC_ERRORS = {"gemini": gemini_error_body, "openai": openai_error_body}


@st.composite
def error_cases(draw: st.DrawFn, provider: str) -> tuple[int, bytes]:
    """A status and an error body: a real one mutated (mostly with its own status), or one
    built from the error shape."""
    if draw(st.booleans()):
        index = draw(st.integers(0, len(ERROR_BASES[provider]) - 1))
        body = draw(mutated(ERROR_BASES[provider][index : index + 1]))
        status = ERROR_STATUSES[provider][index] if draw(st.integers(0, 3)) else draw(STATUSES)
        return status, draw(encoded(st.just(body)))
    return draw(STATUSES), draw(encoded(GENERIC_ERRORS[provider]))


NEAR_MISS_ERROR_CASES = {provider: error_cases(provider) for provider in ERROR_BASES}
NEAR_MISS_ERRORS: dict[str, st.SearchStrategy[bytes]] = {
    provider: cases.map(lambda case: case[1]) for provider, cases in NEAR_MISS_ERROR_CASES.items()
}


def any_body(provider: str, near_miss: Mapping[str, st.SearchStrategy[bytes]]) -> Any:
    return st.one_of(st.binary(max_size=200), arbitrary_json, near_miss[provider])


# -- what every property checks ------------------------------------------------------------


AIGEN_DIR = Path(aigen.__file__).parent
# Bugs found by these properties: exception type, and the aigen functions it escapes from.
# Each has its xfail test below; delete its entry with the fix.
KNOWN_BUGS: dict[str, tuple[type[BaseException], frozenset[str]]] = {}


def known_bug(error: BaseException) -> str | None:
    """The name of the known bug `error` shows, judged by where in aigen it was raised."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if Path(frame.filename).is_relative_to(AIGEN_DIR)
    ]
    if not frames:
        return None
    for name, (kind, functions) in KNOWN_BUGS.items():
        if isinstance(error, kind) and frames[-1].name in functions:
            return name
    return None


def outcome(action: Callable[[], object], *, tolerate: bool = True) -> object:
    """What `action` returned, or the `GenerationError` it raised; anything else propagates,
    but for an input that trips a known bug, which the broad tests set aside."""
    try:
        return action()
    except GenerationError as error:
        return error
    except Exception as error:
        if tolerate and known_bug(error) is not None:
            reject()
        raise


def check_error(error: GenerationError) -> None:
    """What every error promises, whatever the body was."""
    assert isinstance(error.message, str)
    assert str(error)  # __str__ never fails
    repr(error)
    if isinstance(error, APIError):
        assert error.retry_after is None or error.retry_after >= 0
    if isinstance(error, ContentPolicyError):
        assert error.stage in ("prompt", "output")
        assert all(isinstance(category, str) for category in error.categories)
    if isinstance(error, NoImageError):
        assert error.text is None or isinstance(error.text, str)


def parse_response(
    provider: str, headers: Mapping[str, str], body: bytes, *, tolerate: bool = True
) -> object:
    result = outcome(
        lambda: PROVIDERS[provider].parse_response(HttpResponse(200, headers, body)),
        tolerate=tolerate,
    )
    if isinstance(result, GenerationError):
        check_error(result)
    else:
        assert isinstance(result, ProviderAnswer)
        assert isinstance(result.image_data, bytes)
    return result


def parse_error(
    provider: str, status: int, headers: Mapping[str, str], body: bytes, *, tolerate: bool = True
) -> object:
    context = ErrorContext(model=MODELS[provider])
    result = outcome(
        lambda: PROVIDERS[provider].parse_error(HttpResponse(status, headers, body), context),
        tolerate=tolerate,
    )
    assert isinstance(result, GenerationError), f"parse_error returned {result!r}"
    check_error(result)
    if isinstance(result, APIError):
        assert result.status_code == status
    return result


def make_engine(provider: str, **protections: Any) -> Engine:
    """An engine as a client builds one, on a clock that stands still."""
    settings = resolve_settings(
        provider=provider,
        api_key=KEY,
        base_url=None,
        model=None,
        max_retries=None,
        retry=None,
        allow_insecure_http=False,
        **protections,
    )
    # Nothing sleeps on the clock (the driver only records waits), so it never moves.
    return Engine(settings, clock=FakeTime(), jitter=lambda: 0.5, pick_seed=lambda: 7)


ENGINES = {name: make_engine(name) for name in PROVIDERS}
RATE_LIMIT = RateLimit(requests_per_minute=6000, burst=5)


def check_waits(actions: list[Action]) -> None:
    """Every wait a flow asked for is a finite number of seconds >= 0."""
    for action in actions:
        if type(action) is Sleep:
            assert math.isfinite(action.seconds), action
            assert action.seconds >= 0, action


def whole_path(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerate: bool = True,
    engine: Engine | None = None,
) -> object:
    """The whole sans-IO path, as both clients run it: the call's flow driven with this
    answer to every attempt (status check, body reader, parse, image check, hints,
    retries, and the limiter when the engine has one)."""
    engine = engine or ENGINES[provider]
    call = engine.start(REQUEST, {})
    actions: list[Action] = []
    answer = HttpResponse(status, headers, body)
    result = outcome(
        lambda: drive(generation_flow(call), lambda _: answer, actions=actions),
        tolerate=tolerate,
    )
    check_waits(actions)
    sends = sum(type(action) is Send for action in actions)
    assert 1 <= sends <= engine.settings.retry.max_retries + 1
    if isinstance(result, GenerationError):
        check_error(result)
        assert result.generation_id == call.generation_id
        assert result.attempts == sends
        # The same answer every time: only an error worth retrying is sent again.
        assert sends == 1 or is_retryable(result)
        # Echoed keys are redacted from the message whatever the body's encoding; where
        # else an echo may land is the business of the "key echo" tests below.
        assert KEY not in result.message
    else:
        assert 200 <= status < 300
        assert isinstance(result, GenerationResponse)
        assert result.mime_type in ("image/png", "image/jpeg", "image/webp")
        assert result.generation_id == call.generation_id
        assert result.attempts == sends == 1
    return result


SUCCESS_BODIES = {
    "gemini": json.dumps(gb.image_answer()).encode(),
    "openai": json.dumps({"data": [{"b64_json": b64(png(8, 8))}]}).encode(),
}


def next_call_admission(provider: str, engine: Engine) -> float:
    """Start the engine's next call and answer it at once: it must succeed, and the wait
    the rate limiter gave it before its first `Send` (0 for none) is returned."""
    actions: list[Action] = []
    answer = HttpResponse(200, {}, SUCCESS_BODIES[provider])
    result = drive(generation_flow(engine.start(REQUEST, {})), lambda _: answer, actions=actions)
    assert isinstance(result, GenerationResponse)
    check_waits(actions)
    first_send = next(i for i, action in enumerate(actions) if type(action) is Send)
    return sum(action.seconds for action in actions[:first_send] if type(action) is Sleep)


providers = pytest.mark.parametrize("provider", sorted(PROVIDERS))

# -- parse_response ------------------------------------------------------------------------


@providers
@PROFILE
@given(body=st.binary(), headers=headers_strategy)
def test_parse_response_on_any_bytes(provider: str, body: bytes, headers: dict[str, str]) -> None:
    parse_response(provider, headers, body)


@providers
@PROFILE
@given(body=arbitrary_json, headers=headers_strategy)
def test_parse_response_on_any_json(provider: str, body: bytes, headers: dict[str, str]) -> None:
    parse_response(provider, headers, body)


@providers
@PROFILE
@given(data=st.data(), headers=headers_strategy)
def test_parse_response_on_near_misses(
    provider: str, data: st.DataObject, headers: dict[str, str]
) -> None:
    parse_response(provider, headers, data.draw(NEAR_MISS_ANSWERS[provider], label="body"))


def test_near_miss_answers_reach_every_outcome() -> None:
    """The near-miss strategies are close enough to real answers to reach each ending."""
    seen: dict[str, set[str]] = {name: set() for name in PROVIDERS}

    @settings(PROFILE, max_examples=300, database=None)
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        for name in PROVIDERS:
            result = parse_response(name, {}, data.draw(NEAR_MISS_ANSWERS[name]))
            seen[name].add(type(result).__name__)

    collect()
    assert {"ProviderAnswer", "GenerationError", "ContentPolicyError", "NoImageError"} <= seen[
        "gemini"
    ]
    assert {"ProviderAnswer", "GenerationError"} <= seen["openai"]


# -- parse_error ---------------------------------------------------------------------------


@providers
@PROFILE
@given(status=STATUSES, body=st.binary(max_size=300), headers=headers_strategy)
def test_parse_error_on_any_bytes(
    provider: str, status: int, body: bytes, headers: dict[str, str]
) -> None:
    parse_error(provider, status, headers, body)


@providers
@PROFILE
@given(status=STATUSES, body=arbitrary_json, headers=headers_strategy)
def test_parse_error_on_any_json(
    provider: str, status: int, body: bytes, headers: dict[str, str]
) -> None:
    parse_error(provider, status, headers, body)


@providers
@PROFILE
@given(data=st.data(), headers=headers_strategy)
def test_parse_error_on_near_misses(
    provider: str, data: st.DataObject, headers: dict[str, str]
) -> None:
    status, body = data.draw(NEAR_MISS_ERROR_CASES[provider], label="status and body")
    parse_error(provider, status, headers, body)


# -- the whole path: the call's flow, driven -------------------------------------------


@providers
@PROFILE
@given(
    status=st.one_of(st.integers(100, 599), st.sampled_from([200, 201, 204, 429, 503])),
    data=st.data(),
    headers=headers_strategy,
)
def test_the_whole_path_on_anything(
    provider: str, status: int, data: st.DataObject, headers: dict[str, str]
) -> None:
    near_miss = NEAR_MISS_ANSWERS if 200 <= status < 300 else NEAR_MISS_ERRORS
    whole_path(provider, status, headers, data.draw(any_body(provider, near_miss), "body"))


@providers
@PROFILE
@given(data=st.data(), headers=headers_strategy)
def test_the_whole_path_on_near_miss_answers(
    provider: str, data: st.DataObject, headers: dict[str, str]
) -> None:
    whole_path(provider, 200, headers, data.draw(NEAR_MISS_ANSWERS[provider], "body"))


@providers
@PROFILE
@given(data=st.data(), headers=headers_strategy)
def test_the_whole_path_on_near_miss_errors(
    provider: str, data: st.DataObject, headers: dict[str, str]
) -> None:
    status, body = data.draw(NEAR_MISS_ERROR_CASES[provider], label="status and body")
    whole_path(provider, status, headers, body)


@providers
@PROFILE
@given(
    status=st.one_of(st.just(200), STATUSES),
    data=st.data(),
    headers=headers_strategy,
)
def test_the_whole_path_under_a_rate_limit(
    provider: str, status: int, data: st.DataObject, headers: dict[str, str]
) -> None:
    """With `rate_limit=`, every answer also adjusts the limiter; the next call still
    goes through."""
    engine = make_engine(provider, rate_limit=RATE_LIMIT)
    near_miss = NEAR_MISS_ANSWERS if status == 200 else NEAR_MISS_ERRORS
    body = data.draw(any_body(provider, near_miss), "body")
    whole_path(provider, status, headers, body, engine=engine)
    assert next_call_admission(provider, engine) >= 0


# -- hints and images ----------------------------------------------------------------------


hint_headers = st.one_of(
    headers_strategy,
    st.fixed_dictionaries(
        {},
        optional={
            "retry-after": st.one_of(http_dates, header_values),
            "retry-after-ms": header_values,
        },
    ),
)


@PROFILE
@given(headers=hint_headers, now=st.floats(0, 1e10))
@example(headers={"retry-after": "1e309"}, now=0.0)
@example(headers={"retry-after-ms": "nan"}, now=0.0)
@example(headers={"retry-after": "Sun, 06 Nov 1994 08:49:37 GMT"}, now=1.7e9)
def test_retry_after_headers_give_none_or_finite_seconds(
    headers: dict[str, str], now: float
) -> None:
    hint = parse_retry_after_headers(headers, now)
    assert hint is None or (isinstance(hint, float) and math.isfinite(hint) and hint >= 0)


MAGIC_PREFIXES = (
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe0\x00\x10",
    b"\xff\xd8\xff\xc0\x00\x11\x08",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"RIFF",
    b"",
)
sides = st.integers(0, 2**14 + 2)
# A JPEG is walked segment by segment: fill bytes, markers without a length, segments of
# any declared length (too short, too long), frame headers, start of scan.
jpeg_segments = st.one_of(
    st.just(b"\xff"),
    st.sampled_from([0x01, *range(0xD0, 0xD8)]).map(lambda marker: bytes([0xFF, marker])),
    st.builds(
        lambda marker, length, payload: bytes([0xFF, marker]) + struct.pack(">H", length) + payload,
        st.integers(0xC0, 0xFE),
        st.one_of(st.integers(0, 20), st.integers(0, 0xFFFF)),
        st.binary(max_size=12),
    ),
    st.binary(max_size=4),
)
image_like_bytes = st.one_of(
    st.binary(),
    st.builds(bytes.__add__, st.sampled_from(MAGIC_PREFIXES), st.binary(max_size=64)),
    st.sampled_from(IMAGES).flatmap(
        lambda image: st.integers(0, len(image)).map(lambda cut: image[:cut])
    ),
    st.lists(jpeg_segments, max_size=6).map(lambda segments: b"\xff\xd8" + b"".join(segments)),
    st.builds(
        lambda width, height: (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + struct.pack(">II", width, height)
        ),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(webp_lossy, sides, sides),
    st.builds(webp_lossless, st.integers(1, 2**14), st.integers(1, 2**14)),
    st.builds(webp_extended, st.integers(1, 2**24), st.integers(1, 2**24)),
    st.builds(
        lambda image, at, junk: image[:at] + junk + image[at + len(junk) :],
        st.sampled_from(IMAGES),
        st.integers(0, 40),
        st.binary(min_size=1, max_size=4),
    ),
)


@PROFILE
@given(data=image_like_bytes)
def test_image_sniffing_never_raises(data: bytes) -> None:
    mime_type = sniff_mime_type(data)
    assert mime_type in (None, "image/png", "image/jpeg", "image/webp")
    size = image_size(data)
    assert size is None or (mime_type is not None and len(size) == 2)


# -- known bugs ----------------------------------------------------------------------------
# Each test keeps the property over a family of inputs the broad tests above stay clear
# of, with its minimal failing input first. Remove the xfail mark with the fix.

DEEP = 100_000  # far past any recursion limit, yet a 100 kB body (max_response_bytes: 64 MiB)


@providers
@pytest.mark.parametrize("status", [200, 503])
@PROFILE
@given(depth=st.integers(DEEP, 4 * DEEP), opener=st.sampled_from([b"[", b'{"a":']))
@example(depth=DEEP, opener=b"[")
def test_deeply_nested_json_is_a_generation_error(
    provider: str, status: int, depth: int, opener: bytes
) -> None:
    whole_path(provider, status, {}, opener * depth, tolerate=False)


@pytest.mark.parametrize("status", [200, 429])
@PROFILE
@given(
    digits=st.integers(4301, 20_000),
    name=st.sampled_from(
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
        ]
    ),
)
@example(digits=4301, name="x-ratelimit-limit-requests")
def test_huge_rate_limit_numbers_are_ignored(status: int, digits: int, name: str) -> None:
    body = json.dumps({"data": [{"b64_json": b64(png(8, 8))}]}).encode()
    whole_path("openai", status, {name: "9" * digits}, body, tolerate=False)


@PROFILE
@given(
    date=st.one_of(
        st.integers(2**31, 10**15).map(lambda year: f"Mon, 01 Jan {year} 00:00:00 GMT"),
        st.integers(2**63, 10**30).map(lambda zone: f"Mon, 01 Jan 2020 00:00:00 +{zone}"),
    ),
    now=st.floats(0, 1e10),
)
@example(date="Mon, 01 Jan 2147483648 00:00:00 GMT", now=0.0)
def test_far_out_retry_after_dates_are_ignored(date: str, now: float) -> None:
    hint = parse_retry_after_headers({"retry-after": date}, now)
    assert hint is None or (math.isfinite(hint) and hint >= 0)


@providers
@PROFILE
@given(status=STATUSES, year=st.integers(2**31, 10**15))
@example(status=503, year=2**31)
def test_far_out_retry_after_dates_on_the_whole_path(provider: str, status: int, year: int) -> None:
    headers = {"retry-after": f"Mon, 01 Jan {year} 00:00:00 GMT"}
    whole_path(provider, status, headers, b"{}", tolerate=False)


SEVERAL_IMAGES_EXAMPLE = json.dumps(
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"inlineData": {"data": b64(b"hi")}},
                        {"inlineData": {"data": b64(png(8, 8))}},
                    ]
                }
            }
        ]
    }
).encode()


@pytest.mark.parametrize("path", ["parse_response", "whole_path"])
@PROFILE
@given(body=encoded(gemini_answer(max_images=3)), headers=headers_strategy)
@example(body=SEVERAL_IMAGES_EXAMPLE, headers={})
def test_gemini_answers_with_several_images(
    path: str, body: bytes, headers: dict[str, str]
) -> None:
    if path == "parse_response":
        parse_response("gemini", headers, body, tolerate=False)
    else:
        whole_path("gemini", 200, headers, body, tolerate=False)


@pytest.mark.parametrize("path", ["parse_response", "whole_path"])
@PROFILE
@given(
    signature=st.tuples(
        st.text(max_size=8), st.characters(categories=["Cs"]), st.text(max_size=8)
    ).map("".join),
    field=st.sampled_from(["thoughtSignature", "thought_signature"]),
    on_image=st.booleans(),
)
@example(signature="\ud800", field="thoughtSignature", on_image=False)
def test_gemini_signatures_with_lone_surrogates(
    path: str, signature: str, field: str, on_image: bool
) -> None:
    part = {"inlineData": {"data": b64(png(8, 8))}} if on_image else {"text": "hi"}
    parts = [{**part, field: signature}, {"inlineData": {"data": b64(png(8, 8))}}]
    body = json.dumps({"candidates": [{"content": {"parts": parts}}]}).encode()
    if path == "parse_response":
        parse_response("gemini", {}, body, tolerate=False)
    else:
        whole_path("gemini", 200, {}, body, tolerate=False)


@PROFILE
@given(declared=st.one_of(header_values, st.integers(4301, 10_000).map(lambda n: "1" * n)))
@example(declared="1" * 4301)
def test_body_reader_takes_any_content_length(declared: str) -> None:
    call = ENGINES["gemini"].start(REQUEST, {})
    call.next_attempt()
    outcome(lambda: call.body_reader({"content-length": declared}), tolerate=False)


@PROFILE
@given(data=image_like_bytes)
@example(data=webp_lossy(0, 0))
def test_image_sizes_are_positive(data: bytes) -> None:
    size = image_size(data)
    assert size is None or (size[0] > 0 and size[1] > 0)


@providers
@PROFILE
@given(digits=st.integers(309, 2000))
@example(digits=309)
def test_body_hints_are_finite(provider: str, digits: int) -> None:
    seconds = "9" * digits
    body = (
        {"error": {"code": 429, "message": f"Please retry in {seconds}s."}}
        if provider == "gemini"
        else {"error": {"message": f"Please try again in {seconds}s.", "code": "x"}}
    )
    error = parse_error(provider, 429, {}, json.dumps(body).encode())
    assert isinstance(error, APIError)
    assert error.retry_after is None or math.isfinite(error.retry_after)


# -- key echoes ----------------------------------------------------------------------------
# A gateway may echo the request, key included, in its error answer. aigen redacts the key
# from such bodies before parsing them.


@st.composite
def echoing(draw: st.DrawFn, bases: tuple[Any, ...]) -> Any:
    """A real error body with the key written into one of its strings (or as a new field)."""
    body = copy.deepcopy(draw(mutated(bases)))
    places = [(c, k) for c, k in _places(body) if isinstance(c[k], str)]
    if places:
        container, key = draw(st.sampled_from(places))
        container[key] = draw(st.sampled_from(["{}", "Bearer {}", "key={}&x", "{}{}"])).format(
            KEY, KEY
        )
    elif isinstance(body, dict):
        body["echo"] = KEY
    else:
        body = {"echo": KEY, "body": body}
    return body


ECHOING_ERRORS = {"gemini": echoing(GEMINI_ERRORS), "openai": echoing(OPENAI_ERRORS)}


def assert_no_key(error: GenerationError) -> None:
    for where in (str(error), repr(error), repr(vars(error))):
        assert KEY not in where


@providers
@PROFILE
@given(status=STATUSES, data=st.data())
def test_a_key_echoed_in_an_error_body_is_redacted(
    provider: str, status: int, data: st.DataObject
) -> None:
    body = data.draw(
        st.one_of(
            ECHOING_ERRORS[provider].map(lambda value: json.dumps(value).encode()),
            st.binary(max_size=40).map(lambda junk: junk + KEY.encode() + b"</html>"),
        ),
        label="body",
    )
    error = whole_path(provider, status, {}, body)
    assert isinstance(error, GenerationError)
    assert_no_key(error)


@providers
@PROFILE
@given(
    status=STATUSES,
    data=st.data(),
    encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-32", "escaped"]),
)
@example(status=503, data=None, encoding="utf-16")
def test_a_key_echoed_in_any_json_encoding_is_redacted(
    provider: str, status: int, data: st.DataObject | None, encoding: str
) -> None:
    value = {"error": {"message": KEY}} if data is None else data.draw(ECHOING_ERRORS[provider])
    text = json.dumps(value)
    if encoding == "escaped":  # as JSON may write any character
        body = text.replace(KEY, "".join(f"\\u{ord(c):04x}" for c in KEY)).encode()
    else:
        body = text.encode(encoding)
    error = whole_path(provider, status, {}, body)
    assert isinstance(error, GenerationError)
    assert_no_key(error)


@providers
@PROFILE
@given(
    status=STATUSES,
    body=st.sampled_from([b"{}", b"", b"<html>502</html>"]),
    request_id=st.sampled_from(["{}", "req_{}", "{} {}"]).map(lambda t: t.format(KEY, KEY)),
)
@example(status=503, body=b"{}", request_id=KEY)
def test_a_key_echoed_in_a_header_is_redacted(
    provider: str, status: int, body: bytes, request_id: str
) -> None:
    error = whole_path(provider, status, {"x-request-id": request_id}, body)
    assert isinstance(error, GenerationError)
    assert_no_key(error)


# Found by these properties and fixed in e1c066e ("over-long hints don't hold later
# calls"): an infinite hint made the limiter hold every later call forever (sync
# generate() raised OverflowError from time.sleep, async slept forever).
@pytest.mark.parametrize(
    ("provider", "where"), [("gemini", "body"), ("openai", "body"), ("openai", "headers")]
)
@PROFILE
@given(
    seconds=st.one_of(
        st.integers(0, 10**6).map(str),
        st.integers(309, 1000).map(lambda digits: "9" * digits),  # float() makes it inf
    ),
    status=st.sampled_from([200, 429]),
)
@example(seconds="9" * 309, status=429)
def test_no_hint_holds_a_rate_limited_client_past_max_retry_after(
    provider: str, where: str, seconds: str, status: int
) -> None:
    engine = make_engine(provider, rate_limit=RATE_LIMIT)
    if where == "headers":
        headers = {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{seconds}s",
        }
        body = json.dumps({"data": [{"b64_json": b64(png(8, 8))}]}).encode()
        whole_path(provider, status, headers, body, engine=engine, tolerate=False)
    else:
        message = (
            f"Please retry in {seconds}s."
            if provider == "gemini"
            else f"Please try again in {seconds}s."
        )
        body = json.dumps({"error": {"code": 429, "message": message}}).encode()
        whole_path(provider, 429, {}, body, engine=engine, tolerate=False)
    delay = next_call_admission(provider, engine)
    assert math.isfinite(delay)
    assert 0 <= delay <= engine.settings.retry.max_retry_after
