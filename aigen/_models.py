"""The request and response models users build and read (pydantic v2)."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import Self, TypedDict

from ._base64 import decode_strict, encode
from ._images import sniff_mime_type

__all__ = [
    "GenerationFields",
    "GenerationRequest",
    "GenerationResponse",
    "ProviderOptions",
    "RateLimitInfo",
    "Turn",
    "TurnPart",
    "Usage",
    "WholeNumber",
]

# Gemini's `generationConfig.seed` is an int32; a seed that fits it fits every provider.
MAX_SEED = 2**31 - 1
# Larger than any provider renders today; a bigger number is a typo, not a wish.
MAX_SIDE = 16_384


def _decode_base64_text(value: object) -> object:
    """Let bytes fields take base64 text too (standard or URL-safe, padding optional)."""
    if not isinstance(value, str):
        return value
    decoded = decode_strict(value)  # the fast path: one line, either alphabet
    if decoded is not None:
        return decoded
    text = "".join(value.split())  # base64 tools wrap lines; whitespace is never data
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "expected bytes or base64 text, got a string that is not valid base64"
        ) from None


def _whole_number(value: object, info: ValidationInfo) -> object:
    """Refuse a bool or a string where a number is wanted: `True` is 1 to Python and "512"
    is text, but neither is what a user meant by `width=`; coercing would hide the bug."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    name = info.field_name or "this field"
    raise ValueError(
        f"{name} takes a whole number (an int, e.g. {name}=512), not {value!r} "
        f"(a {type(value).__name__}): pass int(...) of it yourself, or leave it out"
    )


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
"""An `int` that is never a bool, a float or text (no silent coercion)."""


def _encode_base64(value: bytes) -> str:
    return encode(value)


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64_text),
    PlainSerializer(_encode_base64, return_type=str, when_used="json"),
]
"""Bytes in Python, standard base64 text in JSON, so models round-trip through JSON."""


def _require_image(data: bytes, field: str) -> str:
    mime_type = sniff_mime_type(data)
    if mime_type is None:
        start = data[:8].hex(" ") or "nothing"
        raise ValueError(
            f"{field} is not a PNG, JPEG or WebP image (its first bytes are {start}); "
            "pass the image file's bytes, e.g. Path('photo.png').read_bytes()"
        )
    return mime_type


# The models build their validators at import, not on first use: pydantic's `defer_build`
# would save some 15 ms of `from aigen import Client`, but a deferred build can race when
# the first calls come from several threads at once (pydantic#13419), and a `Client`
# shared by a threaded web server is what aigen is for (docs/performance.md).
class ProviderOptions(BaseModel):
    """Base class of the provider-specific options a request may carry.

    Each provider module defines its own subclass (for example `GeminiOptions`); a
    request carrying another provider's options is refused before it is sent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


class TurnPart(BaseModel):
    """One part of a model's answer, kept in the order the model sent it.

    Exactly one of: `text`; `main_image=True`, meaning the turn's own `image_data`;
    or `image_data` for any further image in the same answer. `thought_signature` is
    the token the model put on this very part. Providers that want their history back
    verbatim (Gemini) replay these parts as they came.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = None
    main_image: bool = False
    image_data: Base64Bytes | None = Field(default=None, repr=False)
    thought_signature: Base64Bytes | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = (self.text is not None) + self.main_image + (self.image_data is not None)
        if kinds != 1:
            raise ValueError("a turn part holds exactly one of text, main_image or image_data")
        if self.image_data is not None:
            _require_image(self.image_data, "image_data")
        return self


class Turn(BaseModel):
    """One turn of a conversation: what the user asked, or what the model answered.

    `image_data` takes bytes or base64 text; `mime_type` is read from the image bytes
    when omitted. `thought_signature` is the opaque token a model attaches to its image;
    aigen sends it back so the model can build on its own reasoning. `parts`, filled
    for answers aigen received, records every part of the answer in order with its own
    signature, so the turn is replayed exactly as it came; turns you write yourself
    leave it empty and are sent as text, then image.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user", "model"]
    text: str | None = None
    image_data: Base64Bytes | None = Field(default=None, repr=False)
    mime_type: str | None = None
    thought_signature: Base64Bytes | None = Field(default=None, repr=False)
    parts: tuple[TurnPart, ...] = ()

    @model_validator(mode="after")
    def _check_content(self) -> Self:
        if not self.text and self.image_data is None and not self.parts:
            raise ValueError(f"a {self.role} turn needs text, image_data or both")
        if self.image_data is not None:
            sniffed = _require_image(self.image_data, "image_data")
            if self.mime_type != sniffed:
                # The bytes are the truth; a wrong label would make the provider refuse them.
                object.__setattr__(self, "mime_type", sniffed)
        refers_to_image = any(part.main_image for part in self.parts)
        if refers_to_image and self.image_data is None:
            raise ValueError("a part refers to the turn's main image, but image_data is empty")
        if self.parts and self.image_data is not None and not refers_to_image:
            raise ValueError(
                "parts must place the turn's image: add TurnPart(main_image=True) where it goes"
            )
        return self


class GenerationRequest(BaseModel):
    """Everything one image generation needs; providers translate it to their wire format.

    `width` and `height` are a wish: the provider's nearest supported size or aspect
    ratio is sent, and the exact pixels are stated in the prompt. `seed` is sent to
    providers that take one (0 is a seed like any other); when it is `None`, aigen picks
    one and reports it on the response, so a result can be reproduced. `rules_preamble`
    prefixes the prompt with short rules (one image, the exact size, text spelled as
    quoted) that make image models follow instructions more closely; set it to `False`
    to send the prompt exactly as written.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    width: WholeNumber | None = Field(default=None, gt=0, le=MAX_SIDE)
    height: WholeNumber | None = Field(default=None, gt=0, le=MAX_SIDE)
    model: str | None = None
    seed: WholeNumber | None = Field(default=None, ge=0, le=MAX_SEED)
    input_image: Base64Bytes | None = Field(default=None, repr=False)
    conversation_history: list[Turn] = Field(default_factory=list)
    rules_preamble: bool = Field(default=True, strict=True)
    options: SerializeAsAny[ProviderOptions] | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("prompt is empty: describe the image you want")
        return prompt

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, model: str | None) -> str | None:
        if model is not None and not model.strip():
            raise ValueError("model is empty: pass a model name or leave it out")
        return model

    @field_validator("input_image")
    @classmethod
    def _input_is_image(cls, data: bytes | None) -> bytes | None:
        if data is not None:
            _require_image(data, "input_image")
        return data

    @model_validator(mode="after")
    def _width_with_height(self) -> Self:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        return self

    @property
    def input_mime_type(self) -> str | None:
        """The input image's real type, read from its bytes."""
        return None if self.input_image is None else sniff_mime_type(self.input_image)


class GenerationFields(TypedDict, total=False):
    """The `GenerationRequest` fields `generate(prompt, **fields)` takes as keywords."""

    width: int | None
    height: int | None
    model: str | None
    seed: int | None
    input_image: bytes | None
    conversation_history: list[Turn] | list[dict[str, object]]
    rules_preamble: bool
    options: ProviderOptions | None


class Usage(BaseModel):
    """Token counts the provider reported; a field is `None` where it reported none."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    thinking_tokens: int | None = None


class RateLimitInfo(BaseModel):
    """The provider's rate-limit headers, parsed (OpenAI's `x-ratelimit-*`).

    `reset_*` are seconds until the window resets. A field is `None` where the header
    was absent or unreadable.
    """

    model_config = ConfigDict(frozen=True)

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


class GenerationResponse(BaseModel):
    """A generated image and what is known about how it was made.

    `mime_type`, `width` and `height` are read from the image bytes, not from the
    provider's label. `inference_time_ms` is the successful attempt, from sending the
    request to the last byte of the answer; `total_time_ms` spans every attempt and
    every wait. `request_id` is the provider's id for the answer (OpenAI's
    `x-request-id`, Gemini's `responseId`): quote it to their support.
    """

    model_config = ConfigDict(frozen=True)

    image_data: Base64Bytes = Field(repr=False)
    mime_type: str
    width: int
    height: int
    generation_id: str
    seed: int | None
    inference_time_ms: float
    total_time_ms: float
    thought_signature: Base64Bytes | None = Field(default=None, repr=False)
    text: str | None = None
    parts: tuple[TurnPart, ...] = Field(default=(), repr=False)
    model: str
    provider: str
    request_id: str | None = None
    usage: Usage = Field(default_factory=Usage)
    rate_limit: RateLimitInfo | None = None
    finish_reason: str | None = None
    attempts: int

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the image bytes to `path` and return it as a `Path`.

        The bytes are written as received; name the file after `mime_type`
        (`.png`, `.jpg`, `.webp`) so viewers open it.
        """
        target = Path(path)
        target.write_bytes(self.image_data)
        return target

    def as_turn(self) -> Turn:
        """This answer as a model `Turn`, signatures included, for a conversation history."""
        return Turn(
            role="model",
            text=self.text,
            image_data=self.image_data,
            mime_type=self.mime_type,
            thought_signature=self.thought_signature,
            parts=self.parts,
        )
