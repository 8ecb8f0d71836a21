"""OpenAI's Images API: `/v1/images/generations` (JSON) and `/v1/images/edits` (multipart).

Everything aigen knows about OpenAI's wire format lives here: sizes per model family,
the typed image options, which call edits instead of generating, the error envelope
with its moderation codes, and the `x-ratelimit-*` headers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator
from typing_extensions import Self

from .._errors import (
    ConfigurationError,
    ContentPolicyError,
    GenerationError,
    QuotaExceededError,
)
from .._http import FormFile, HttpRequest, HttpResponse
from .._images import sniff_mime_type
from .._models import Base64Bytes, GenerationRequest, ProviderOptions, RateLimitInfo, Usage
from .._prompt import compose_prompt
from ._base import (
    ErrorContext,
    ProviderAnswer,
    RequestContext,
    api_error_class,
    as_list,
    as_mapping,
    decode_base64_image,
    finite_seconds,
    int_or_none,
    json_body,
    options_for,
    parse_error_body,
    parse_json_body,
    preview,
    str_or_none,
    with_next_step,
)

__all__ = ["OpenAIOptions", "OpenAIProvider", "openai_size"]

NAME = "openai"
DEFAULT_MODEL = "gpt-image-2"
DEFAULT_BASE_URL = "https://api.openai.com"

# gpt-image-2 takes any size within these bounds (WIRE.md, "current image models").
SIZE_STEP = 16
MAX_LONG_SIDE = 3840
MAX_SHORT_SIDE = 2160
MAX_RATIO = 3.0
# Older models take a few fixed sizes only.
FIXED_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "gpt-image-1": ((1024, 1024), (1536, 1024), (1024, 1536)),
    "dall-e-3": ((1024, 1024), (1792, 1024), (1024, 1792)),
    "dall-e-2": ((256, 256), (512, 512), (1024, 1024)),
}
SAFETY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
_TRY_AGAIN = re.compile(
    r"try again (?:in|after) ((?:\d+(?:\.\d+)?(?:h|ms|m|s))+|\d+(?:\.\d+)?\s*seconds?)\b", re.I
)
_SAFETY_VIOLATIONS = re.compile(r"safety_violations=\[([^\]]*)\]")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


class OpenAIOptions(ProviderOptions):
    """OpenAI-only settings for one request (pass as `options=`); `None` leaves the API default.

    - `quality`: `"low"`, `"medium"`, `"high"` or `"auto"`.
    - `background`: `"transparent"` (needs PNG or WebP output), `"opaque"` or `"auto"`.
    - `output_format`: `"png"`, `"jpeg"` or `"webp"`; `output_compression` 0-100 for
      JPEG and WebP.
    - `moderation`: `"low"` for less restrictive filtering, or `"auto"`.
    - `input_fidelity`: `"high"` keeps more of the input image's detail in edits (it is
      left out of plain generations).
    - `mask`: a PNG whose fully transparent pixels mark where an edit may paint; it
      applies to the first image and needs its size. Refused on a request with no image
      to edit.
    - `user`: your end user's id, for OpenAI's abuse monitoring.
    """

    quality: Literal["low", "medium", "high", "auto"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    moderation: Literal["low", "auto"] | None = None
    input_fidelity: Literal["high", "low"] | None = None
    mask: Base64Bytes | None = Field(default=None, repr=False)
    user: str | None = None

    @field_validator("mask")
    @classmethod
    def _mask_is_png(cls, mask: bytes | None) -> bytes | None:
        if mask is not None and sniff_mime_type(mask) != "image/png":
            raise ValueError("mask must be a PNG with an alpha channel (transparent = edit here)")
        return mask

    @model_validator(mode="after")
    def _compatible(self) -> Self:
        if self.output_compression is not None and self.output_format not in ("jpeg", "webp"):
            raise ValueError('output_compression needs output_format="jpeg" or "webp"')
        if self.background == "transparent" and self.output_format == "jpeg":
            raise ValueError('background="transparent" needs output_format="png" or "webp"')
        return self


def openai_size(model: str, width: int, height: int) -> str:
    """The `size` to send for `width` x `height` on `model`.

    The gpt-image-2 family takes any size: the ratio is clamped to 1:3..3:1, the image
    scaled down to fit 3840x2160 (either way round), and both sides rounded to
    multiples of 16. Older models get their nearest fixed size by aspect ratio (and,
    for equal ratios, by area).
    """
    fixed = _fixed_sizes(model)
    if fixed is None:
        return _free_size(width, height)

    def distance(size: tuple[int, int]) -> tuple[float, float]:
        ratio = abs(math.log(size[0] / size[1]) - math.log(width / height))
        area = abs(math.log(size[0] * size[1]) - math.log(width * height))
        return (round(ratio, 6), area)

    best = min(fixed, key=distance)
    return f"{best[0]}x{best[1]}"


def _fixed_sizes(model: str) -> tuple[tuple[int, int], ...] | None:
    """The fixed sizes of `model` (gpt-image-1, -1.5 and -1-mini share theirs), or `None`."""
    for prefix, sizes in FIXED_SIZES.items():
        if model.startswith(prefix):
            return sizes
    return None  # gpt-image-2 and newer models take free sizes


def _free_size(width: int, height: int) -> str:
    w, h = float(width), float(height)
    if w / h > MAX_RATIO:
        w = h * MAX_RATIO
    elif h / w > MAX_RATIO:
        h = w * MAX_RATIO
    long_cap, short_cap = MAX_LONG_SIDE, MAX_SHORT_SIDE
    scale = min(1.0, long_cap / max(w, h), short_cap / min(w, h))
    w, h = w * scale, h * scale

    def snap(side: float, cap: int) -> int:
        return max(SIZE_STEP, min(cap, round(side / SIZE_STEP) * SIZE_STEP))

    landscape = w >= h
    long_side = snap(max(w, h), long_cap)
    short_side = snap(min(w, h), short_cap)
    while long_side > short_side * MAX_RATIO:  # rounding may have pushed it past 3:1
        long_side -= SIZE_STEP
    return f"{long_side}x{short_side}" if landscape else f"{short_side}x{long_side}"


class OpenAIProvider:
    """The OpenAI Images API adapter. `Client(provider="openai")` makes one with defaults.

    Pass an instance to set defaults for every request of a client:
    `Client(provider=OpenAIProvider(options=OpenAIOptions(quality="high")))`.
    """

    name: str = NAME
    default_model: str = DEFAULT_MODEL
    default_base_url: str = DEFAULT_BASE_URL
    api_key_env_vars: tuple[str, ...] = ("OPENAI_API_KEY",)
    takes_seed: bool = False

    def __init__(self, *, options: OpenAIOptions | None = None) -> None:
        self.options = options_for(options, OpenAIOptions(), NAME)

    def __repr__(self) -> str:
        return f"OpenAIProvider(options={self.options!r})"

    # -- request -------------------------------------------------------------------

    def build_request(self, request: GenerationRequest, context: RequestContext) -> HttpRequest:
        """A JSON generation, or a multipart edit when there are images to work from."""
        options = options_for(request.options, self.options, NAME)
        first_turn = not any(turn.role == "user" for turn in request.conversation_history)
        fields: dict[str, str | int] = {
            "model": context.model,
            "prompt": compose_prompt(
                request.prompt,
                width=request.width,
                height=request.height,
                rules=request.rules_preamble and first_turn,
            ),
        }
        if request.width is not None and request.height is not None:
            fields["size"] = openai_size(context.model, request.width, request.height)
        if context.model.startswith("dall-e"):
            fields["response_format"] = "b64_json"  # DALL-E answers with URLs otherwise
        for name in (
            "quality",
            "background",
            "output_format",
            "output_compression",
            "moderation",
            "user",
        ):
            value = getattr(options, name)
            if value is not None:
                fields[name] = value
        headers = {"authorization": f"Bearer {context.api_key}"}
        images = _images_to_edit(request)
        if not images:
            if request.options is not None and options.mask is not None:
                raise ConfigurationError(
                    "a mask marks where to edit an image, and there is none: pass "
                    "input_image=, or send the mask in a conversation after the first image"
                )
            return HttpRequest(
                method="POST",
                url=f"{context.base_url}/v1/images/generations",
                headers={**headers, "content-type": "application/json"},
                content=json_body(fields),
            )
        if context.model.startswith("dall-e-3"):
            raise ConfigurationError(
                "dall-e-3 cannot edit images: use a gpt-image model for input images "
                "and conversations"
            )
        if options.input_fidelity is not None:
            fields["input_fidelity"] = options.input_fidelity
        field_name = "image" if len(images) == 1 else "image[]"
        files = [
            FormFile(field_name, f"image-{n}.{_extension(mime)}", data, mime)
            for n, (data, mime) in enumerate(images, start=1)
        ]
        if options.mask is not None:
            files.append(FormFile("mask", "mask.png", options.mask, "image/png"))
        return HttpRequest(
            method="POST",
            url=f"{context.base_url}/v1/images/edits",
            headers=headers,
            form={key: str(value) for key, value in fields.items()},
            files=tuple(files),
        )

    # -- response ------------------------------------------------------------------

    def parse_response(self, response: HttpResponse) -> ProviderAnswer:
        """Read `data[0].b64_json`, the usage and the rate-limit headers."""
        body = parse_json_body(response, NAME)
        if not isinstance(body, Mapping):
            raise GenerationError(
                f"openai answered with JSON that is not an object: {preview(response.content)}"
            )
        request_id = response.headers.get("x-request-id")
        items = as_list(body.get("data"))
        if not items:
            raise GenerationError("openai answered without any image in data[]", details=dict(body))
        item = as_mapping(items[0])
        if "b64_json" not in item and isinstance(item.get("url"), str):
            raise GenerationError(
                "openai answered with an image URL instead of image data; this model needs "
                "response_format=b64_json, which aigen sends only to dall-e models",
                details=dict(body),
            )
        output_format = body.get("output_format")
        return ProviderAnswer(
            image_data=decode_base64_image(item.get("b64_json"), NAME, "data[0].b64_json"),
            declared_mime_type=f"image/{output_format}" if isinstance(output_format, str) else None,
            text=str_or_none(item.get("revised_prompt")),
            request_id=request_id,
            usage=_usage(body.get("usage")),
            rate_limit=parse_rate_limit_headers(response.headers),
        )

    def parse_error(self, response: HttpResponse, context: ErrorContext) -> GenerationError:
        """Read OpenAI's `{"error": {...}}` envelope into the matching error class."""
        status = response.status_code
        body = parse_error_body(response)
        error = as_mapping(as_mapping(body).get("error"))
        code = str_or_none(error.get("code")) or str_or_none(error.get("type"))
        server_message = str_or_none(error.get("message"))
        request_id = response.headers.get("x-request-id")
        if code in SAFETY_CODES or (
            status == 400 and server_message and "safety system" in server_message
        ):
            return _content_policy_error(
                error, _safety_reason(code, server_message), request_id, body
            )
        message = server_message or (
            f"HTTP {status} with a body that is not an OpenAI error: {preview(str(body))}"
        )
        kind = api_error_class(status)
        if code in QUOTA_CODES or (status == 429 and error.get("type") == "insufficient_quota"):
            kind = QuotaExceededError
        return kind(
            with_next_step(message, kind, context.model, "OPENAI_API_KEY"),
            status_code=status,
            provider=NAME,
            request_id=request_id,
            body=body,
            retry_after=_hint_in_message(server_message),
            rate_limit=parse_rate_limit_headers(response.headers),
        )


def _images_to_edit(request: GenerationRequest) -> list[tuple[bytes, str]]:
    """The last model image of the conversation, then the input image, with their types."""
    images: list[tuple[bytes, str]] = []
    for turn in reversed(request.conversation_history):
        if turn.role == "model" and turn.image_data is not None:
            images.append((turn.image_data, turn.mime_type or "image/png"))
            break
    if request.input_image is not None:
        images.append((request.input_image, request.input_mime_type or "image/png"))
    return images


def _extension(mime_type: str) -> str:
    return {"image/jpeg": "jpg", "image/webp": "webp"}.get(mime_type, "png")


def _safety_reason(code: str | None, message: str | None) -> str:
    """The refusal's own code; without one (`code: null`), what its message says it is.

    The error's `type` (`invalid_request_error`) names no reason: gpt-image's message
    ("rejected by the safety system ... safety_violations=[...]") is `moderation_blocked`,
    any other safety refusal is `content_policy_violation`.
    """
    if code in SAFETY_CODES:
        assert code is not None
        return code
    if message and _SAFETY_VIOLATIONS.search(message):
        return "moderation_blocked"
    return "content_policy_violation"


def _content_policy_error(
    error: Mapping[str, object], code: str, request_id: str | None, body: object
) -> ContentPolicyError:
    moderation = as_mapping(error.get("moderation_details"))
    stage: Literal["prompt", "output"] = (
        "output" if moderation.get("moderation_stage") == "output" else "prompt"
    )
    categories = [str(c) for c in as_list(moderation.get("categories"))]
    message = str_or_none(error.get("message")) or "rejected by the safety system"
    if not categories:
        found = _SAFETY_VIOLATIONS.search(message)
        if found:
            categories = [c.strip() for c in found.group(1).split(",") if c.strip()]
    what = "the prompt" if stage == "prompt" else "the generated image"
    return ContentPolicyError(
        f"openai refused {what} ({code}): {message}",
        reason=code,
        stage=stage,
        categories=categories,
        provider=NAME,
        request_id=request_id,
        details=body,
    )


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """`x-ratelimit-*` headers as a `RateLimitInfo`, or `None` when none were sent."""
    if not any(name.startswith("x-ratelimit-") for name in headers):
        return None

    def integer(name: str) -> int | None:
        value = headers.get(f"x-ratelimit-{name}", "").strip()
        return int(value) if is_small_count(value) else None

    def duration(name: str) -> float | None:
        return parse_go_duration(headers.get(f"x-ratelimit-{name}", ""))

    return RateLimitInfo(
        limit_requests=integer("limit-requests"),
        remaining_requests=integer("remaining-requests"),
        reset_requests=duration("reset-requests"),
        limit_tokens=integer("limit-tokens"),
        remaining_tokens=integer("remaining-tokens"),
        reset_tokens=duration("reset-tokens"),
    )


def is_small_count(value: str) -> bool:
    """ASCII digits, few enough to be a real count (int() refuses 4,300 digits and more)."""
    return value.isascii() and value.isdigit() and len(value) <= 18


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (`12ms`, `1s`, `6m0s`, `1h2m3.5s`), or `None`."""
    text = text.strip()
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    pieces = _GO_DURATION.findall(text)
    if not text or "".join(n + u for n, u in pieces) != text:
        return None
    return sum(float(number) * units[unit] for number, unit in pieces)


def _hint_in_message(message: str | None) -> float | None:
    """ "try again in 12s", "in 480ms", "in 6m0s", "after 51.84 seconds", as seconds."""
    if not message:
        return None
    found = _TRY_AGAIN.search(message)
    if not found:
        return None
    text = found.group(1).lower()
    if "second" in text:
        return finite_seconds(float(text.split()[0]))
    return finite_seconds(parse_go_duration(text))


def _usage(raw: object) -> Usage:
    usage = as_mapping(raw)
    return Usage(
        input_tokens=int_or_none(usage.get("input_tokens")),
        output_tokens=int_or_none(usage.get("output_tokens")),
        total_tokens=int_or_none(usage.get("total_tokens")),
    )
