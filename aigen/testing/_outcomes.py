"""What a fake plays for a request: `Situation`, `Reply` or `Drop`, and the functions making them.

A `Situation` is provider-neutral ("success", "rate limited, wait 2 s", "malformed body")
and each dialect says it its own way; a `Reply` is a raw HTTP answer; a `Drop` closes (or
resets) the connection without a byte. Any of them can be late (`delay`), slow
(`body_duration` spread over `chunks`), cut (`cut_after` bytes of the body, then the
connection closes) or reset (`reset_after` bytes, then a TCP RST). Transport faults built
on these (`reset()`, `endless_body()`, `gzip_bomb()`, `oversized()`) are in `_faults`.
"""

from __future__ import annotations

import gzip as gzip_format
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "Drop",
    "MalformedKind",
    "Outcome",
    "Reply",
    "RetryHintStyle",
    "Situation",
    "SituationKind",
    "bad_key",
    "bad_request",
    "content_blocked",
    "drop",
    "error",
    "malformed",
    "not_found",
    "overloaded",
    "quota_exhausted",
    "rate_limited",
    "server_error",
    "stall",
    "success",
    "text_only",
]

SituationKind = Literal[
    "success",
    "overloaded",
    "server_error",
    "rate_limited",
    "quota_exhausted",
    "content_blocked",
    "bad_request",
    "not_found",
    "bad_key",
    "text_only",
    "malformed",
]
MalformedKind = Literal[
    "not_json",
    "truncated_json",
    "html_200",
    "bad_base64",
    "not_an_image",
    "no_candidates",
    "empty_data",
]
RetryHintStyle = Literal[
    "native", "retry_info", "retry_after", "http_date", "retry_after_ms", "message"
]
Stage = Literal["prompt", "output"]


@dataclass(frozen=True)
class Reply:
    """A raw HTTP answer to play.

    `body` is sent as JSON unless it is `bytes`, which are sent as they are (an HTML page
    from a proxy, say). `headers` are added to `content-type` and `content-length` (and
    to what the dialect puts on every answer, such as OpenAI's `x-request-id`);
    `content_type`, when given, replaces the `content-type` header whatever set it.
    `delay` is waited before the status line; `head_duration` spreads the status line
    and headers over that many seconds, a byte at a time; `body_duration` is spread over `chunks`
    pauses between the headers and the last byte of the body. `cut_after` sends only that
    many bytes of the body (the full length is still announced) and then closes the
    connection: an answer lost halfway. `reset_after` does the same but resets the
    connection (a TCP RST, as a crashed proxy or a firewall sends) instead of closing it.

    `chunked=True` announces no `content-length` and sends the body with chunked transfer
    coding, so its size is only known once it has all arrived. `endless_limit` makes the
    body endless: after `body`, filler (`A`s, which read as base64) keeps coming in
    chunks until the client hangs up or the fake stops; `endless_limit` is a safety cap
    on the body bytes sent, past which the fake closes the connection without ending the
    body. An endless body is always chunked. `gzip=True` sends the body gzipped, with
    `content-encoding: gzip` (as Google's and OpenAI's front ends do for clients that
    accept it); `content-length`, `cut_after` and `reset_after` then count gzipped bytes.
    """

    status: int = 200
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    head_duration: float = 0.0
    body_duration: float = 0.0
    chunks: int = 4
    cut_after: int | None = None
    reset_after: int | None = None
    content_type: str | None = None
    chunked: bool = False
    endless_limit: int | None = None
    gzip: bool = False

    def __post_init__(self) -> None:
        if self.gzip and self.endless_limit is not None:
            raise ValueError("an endless body cannot be gzipped: its end never comes")

    def encoded_body(self) -> bytes:
        """The body as sent: `bytes` as they are, anything else as JSON."""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()

    def wire_body(self) -> bytes:
        """The body's bytes on the wire: `encoded_body()`, gzipped when `gzip` is set."""
        body = self.encoded_body()
        return gzip_format.compress(body, mtime=0) if self.gzip else body


@dataclass(frozen=True)
class Drop:
    """Read the request, wait `delay`, then close the connection without answering.

    With `reset=True` the connection is reset (a TCP RST) rather than closed (a FIN):
    the client reads "connection reset by peer" instead of an end of stream.
    """

    delay: float = 0.0
    reset: bool = False


@dataclass(frozen=True)
class Situation:
    """A provider-neutral outcome; the fake's dialect turns it into its own `Reply`.

    Made by the functions of this module (`success()`, `rate_limited()`, ...), which say
    what each field means for them. `details` are extras only one dialect understands
    (Gemini's `text=`, OpenAI's `revised_prompt=`); scripting them on another fake raises
    `ValueError`. `headers`, `content_type`, `chunked`, `gzip` and the timing fields
    (`delay`, `head_duration`, `body_duration`, `chunks`, `cut_after`, `reset_after`) are
    applied as `Reply`'s are.
    """

    kind: SituationKind
    status: int | None = None
    hint: float | None = None
    hint_style: RetryHintStyle = "native"
    stage: Stage = "prompt"
    image: bytes | None = field(default=None, repr=False)
    mime_type: str | None = None
    text: str | None = None
    flaw: MalformedKind | None = None
    request_id: str | None = None
    message: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    head_duration: float = 0.0
    body_duration: float = 0.0
    chunks: int = 4
    cut_after: int | None = None
    reset_after: int | None = None
    content_type: str | None = None
    chunked: bool = False
    gzip: bool = False


Outcome = Reply | Drop | Situation


def _one_of(value: str, allowed: object, what: str) -> None:
    """Refuse a misspelt choice at once: a typo must not script a different outcome."""
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, choices))}, not {value!r}")


def success(
    image: bytes | None = None,
    *,
    mime_type: str | None = None,
    request_id: str | None = None,
    delay: float = 0.0,
    head_duration: float = 0.0,
    body_duration: float = 0.0,
    chunks: int = 4,
    cut_after: int | None = None,
    reset_after: int | None = None,
    content_type: str | None = None,
    chunked: bool = False,
    gzip: bool = False,
    headers: Mapping[str, str] | None = None,
    **details: object,
) -> Situation:
    """A 200 carrying `image`, or a real image showing the prompt when `image` is `None`.

    The drawn image has the size the request asked for: Gemini's for the requested
    `aspectRatio` (1024x1024 without one), OpenAI's requested `size` (1024x1024 for
    `auto`). `mime_type` is `"image/png"` or `"image/jpeg"` for a drawn image (default:
    the fake's `mime_type`, or on OpenAI the request's `output_format`); with your own
    `image` it is the label sent, sniffed from the bytes when not given. `request_id` is
    Gemini's `responseId` or OpenAI's `x-request-id`. `details` go to the dialect: Gemini
    takes `text=` (`None` for no text part), `image_signature=`, `text_signature=` (bytes
    or `None`) and `image_first=`; OpenAI takes `revised_prompt=` and the top-level
    fields `created`, `background`, `output_format`, `quality`, `size` and `usage`.

    The transport keywords are `Reply`'s: `content_type` replaces the `content-type`
    header (the body stays the provider's JSON: `"text/plain"` for a proxy that labels
    everything as text), `chunked=True` sends the body without `content-length`,
    `gzip=True` sends it gzipped, `head_duration` trickles the status line and headers a
    byte at a time over that many seconds, and `cut_after` / `reset_after` lose the answer
    after that many bytes of the body.
    """
    return Situation(
        "success",
        image=image,
        mime_type=mime_type,
        request_id=request_id,
        details=dict(details),
        headers=dict(headers or {}),
        delay=delay,
        head_duration=head_duration,
        body_duration=body_duration,
        chunks=chunks,
        cut_after=cut_after,
        reset_after=reset_after,
        content_type=content_type,
        chunked=chunked,
        gzip=gzip,
    )


def stall(seconds: float) -> Situation:
    """A success that waits `seconds` before sending its headers (to make clients time out)."""
    return success(delay=seconds)


def _failure(
    kind: SituationKind,
    headers: Mapping[str, str] | None,
    delay: float,
    *,
    status: int | None = None,
    hint: float | None = None,
    hint_style: RetryHintStyle = "native",
    stage: Stage = "prompt",
    text: str | None = None,
    flaw: MalformedKind | None = None,
    message: str | None = None,
) -> Situation:
    return Situation(
        kind,
        status=status,
        hint=hint,
        hint_style=hint_style,
        stage=stage,
        text=text,
        flaw=flaw,
        message=message,
        headers=dict(headers or {}),
        delay=delay,
    )


def overloaded(*, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> Situation:
    """503: the model is overloaded; try again later."""
    return _failure("overloaded", headers, delay, status=503)


def server_error(
    status: int = 500, *, headers: Mapping[str, str] | None = None, delay: float = 0.0
) -> Situation:
    """A 5xx in the provider's words (500 internal, 502, 504 deadline exceeded, ...)."""
    return _failure("server_error", headers, delay, status=status)


def rate_limited(
    hint: float | None = None,
    *,
    style: RetryHintStyle = "native",
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Situation:
    """429, too many requests: wait `hint` seconds (no hint at all when `None`).

    `style` says how the wait is told:

    - `"native"`: the provider's own way: Gemini's `google.rpc.RetryInfo` in the body
      (and no header, as Gemini sends none); OpenAI's `retry-after-ms` header.
    - `"retry_info"`: the Gemini `RetryInfo` body (Gemini only).
    - `"retry_after"`: a `Retry-After: <seconds>` header (a proxy in front of any provider).
    - `"http_date"`: a `Retry-After` HTTP date, `hint` seconds after the fake's
      `wall_clock()`, rounded up to the next whole second (HTTP dates have no fractions).
    - `"retry_after_ms"`: a `retry-after-ms: <milliseconds>` header.
    - `"message"`: only in the error message ("Please retry in 2s." on Gemini,
      "Please try again in 2s." on OpenAI).

    With a header style, the body is the provider's 429 without any hint of its own.
    """
    _one_of(style, RetryHintStyle, "style")
    return _failure(
        "rate_limited", headers, delay, status=429, hint=hint, hint_style=style, message=message
    )


def quota_exhausted(*, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> Situation:
    """429 that waiting will not fix: a Gemini per-day quota, OpenAI `insufficient_quota`."""
    return _failure("quota_exhausted", headers, delay, status=429)


def content_blocked(
    stage: Stage = "prompt",
    *,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Situation:
    """A safety refusal of the prompt (`"prompt"`) or of the generated image (`"output"`).

    Gemini: a 200 with `promptFeedback.blockReason`, or a candidate ending `IMAGE_SAFETY`
    with no parts. OpenAI: a 400 `moderation_blocked` naming the moderation stage.
    """
    _one_of(stage, Stage, "stage")
    return _failure("content_blocked", headers, delay, stage=stage)


def text_only(
    text: str = "I can't draw that, but here is a poem about it.",
    *,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Situation:
    """A 200 where the model answered with `text` and no image (finish reason `STOP`).

    Gemini only: OpenAI's Images API never answers with text instead of an image, so
    scripting this on an OpenAI fake raises `ValueError` (script `malformed("empty_data")`
    for a 200 without an image there).
    """
    return _failure("text_only", headers, delay, status=200, text=text)


def malformed(
    kind: MalformedKind = "not_json",
    *,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Situation:
    """A 200 whose body a client cannot use.

    - `"not_json"`: a body that is not JSON, labelled `application/json`.
    - `"truncated_json"`: the success body cut in the middle (the connection stays sound:
      `content-length` matches what is sent).
    - `"html_200"`: an HTML page with status 200 (a captive portal or a proxy's login page).
    - `"bad_base64"`: the success body with image data that is not base64.
    - `"not_an_image"`: valid base64 of bytes that are no PNG, JPEG or WebP.
    - `"no_candidates"` (Gemini only): no `candidates` and no `promptFeedback`.
    - `"empty_data"` (OpenAI only): `"data": []`.
    """
    _one_of(kind, MalformedKind, "kind")
    return _failure("malformed", headers, delay, status=200, flaw=kind)


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
    """An answer with any status and body (JSON-able, or raw `bytes`) and extra headers."""
    return Reply(status, body, dict(headers or {}), delay=delay)
