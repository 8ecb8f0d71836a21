"""Google's Gemini API (`generateContent`) for the Gemini image models.

Everything aigen knows about Gemini's wire format lives here: the request body, the
aspect ratios, thought signatures in multi-turn, safety blocks inside 200 answers,
and the `google.rpc` error body with its `RetryInfo` and `QuotaFailure` details.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from .._base64 import encode as b64encode
from .._errors import (
    AuthenticationError,
    ContentPolicyError,
    GenerationError,
    NoImageError,
    QuotaExceededError,
)
from .._http import HttpRequest, HttpResponse
from .._images import sniff_mime_type
from .._models import GenerationRequest, ProviderOptions, Turn, TurnPart, Usage
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

__all__ = ["GeminiOptions", "GeminiProvider", "SafetySetting", "nearest_aspect_ratio"]

NAME = "gemini"
DEFAULT_MODEL = "gemini-2.5-flash-image"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

# Finish reasons that mean the output was withheld on safety or policy grounds.
SAFETY_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
# Gemini 3 models may refuse history whose model parts lack thought signatures. For turns
# the model did not make (imported history) a dummy value skips the check: Google's
# Gemini 3 guide names this one and "context_engineering_is_the_way_to_go"; this one is
# also the value Vertex AI documents, so it serves both back ends.
STAND_IN_SIGNATURE = "skip_thought_signature_validator"
_RETRY_IN_MESSAGE = re.compile(r"retry in (\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")

HarmCategory = Literal[
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
]
BlockThreshold = Literal[
    "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF"
]


class SafetySetting(BaseModel):
    """One Gemini safety threshold: how readily `category` blocks an answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: HarmCategory
    threshold: BlockThreshold


class GeminiOptions(ProviderOptions):
    """Gemini-only settings for one request (pass as `options=`).

    - `safety_settings`: thresholds per harm category. Relaxing them does not stop
      Gemini's image filter (`IMAGE_SAFETY`), which cannot be configured.
    - `image_size`: `"1K"`, `"2K"` or `"4K"`; only the Gemini 3 Pro image models take it.
    - `aspect_ratio`: send this ratio instead of the one nearest to width/height.
    - `response_modalities`: `("TEXT", "IMAGE")` lets the model talk beside the image;
      `("IMAGE",)` asks for the image alone.
    """

    safety_settings: tuple[SafetySetting, ...] = ()
    image_size: Literal["1K", "2K", "4K"] | None = None
    aspect_ratio: (
        Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"] | None
    ) = None
    response_modalities: tuple[Literal["TEXT", "IMAGE"], ...] = ("TEXT", "IMAGE")


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The supported aspect ratio closest to `width:height` (compared on a log scale)."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(side) for side in ratio.split(":"))
        return abs(math.log(w / h) - target)

    return min(ASPECT_RATIOS, key=distance)


class GeminiProvider:
    """The Gemini API adapter. `Client(provider="gemini")` makes one with defaults.

    Pass an instance to set defaults for every request of a client:
    `Client(provider=GeminiProvider(options=GeminiOptions(image_size="2K")))`.
    """

    name: str = NAME
    default_model: str = DEFAULT_MODEL
    default_base_url: str = DEFAULT_BASE_URL
    api_key_env_vars: tuple[str, ...] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    takes_seed: bool = True

    def __init__(self, *, options: GeminiOptions | None = None) -> None:
        self.options = options_for(options, GeminiOptions(), NAME)

    def __repr__(self) -> str:
        return f"GeminiProvider(options={self.options!r})"

    # -- request -------------------------------------------------------------------

    def build_request(self, request: GenerationRequest, context: RequestContext) -> HttpRequest:
        """The `generateContent` call for `request`."""
        options = options_for(request.options, self.options, NAME)
        body: dict[str, object] = {
            "contents": _contents(request, context.model),
            "generationConfig": _generation_config(request, options, context.seed),
        }
        if options.safety_settings:
            body["safetySettings"] = [
                {"category": s.category, "threshold": s.threshold} for s in options.safety_settings
            ]
        return HttpRequest(
            method="POST",
            url=f"{context.base_url}/{API_VERSION}/models/{_segment(context.model)}:generateContent",
            headers={"x-goog-api-key": context.api_key, "content-type": "application/json"},
            content=json_body(body),
        )

    # -- response ------------------------------------------------------------------

    def parse_response(self, response: HttpResponse) -> ProviderAnswer:
        """Read a 200 answer: the image, or the safety block or text that came instead."""
        body = parse_json_body(response, NAME)
        if not isinstance(body, Mapping):
            raise GenerationError(
                f"gemini answered with JSON that is not an object: {preview(response.content)}"
            )
        request_id = str_or_none(body.get("responseId"))
        feedback = as_mapping(body.get("promptFeedback"))
        block_reason = str_or_none(feedback.get("blockReason"))
        if block_reason:
            raise ContentPolicyError(
                f"gemini refused the prompt ({block_reason})",
                reason=block_reason,
                stage="prompt",
                categories=_flagged_categories(feedback.get("safetyRatings")),
                provider=NAME,
                request_id=request_id,
                details=dict(body),
            )
        candidates = as_list(body.get("candidates"))
        if not candidates:
            output_tokens = _usage(body.get("usageMetadata")).output_tokens
            raise GenerationError(
                "gemini answered without candidates and without a block reason: the model "
                "returned no candidates"
                + (" and no output tokens" if not output_tokens else "")
                + ", often a silent refusal of the prompt; rephrase it, or check it against "
                "the provider's usage policy",
                details=dict(body),
            )
        candidate = as_mapping(candidates[0])
        finish_reason = str_or_none(candidate.get("finishReason"))
        reason = (finish_reason or "").upper()
        if reason in SAFETY_FINISH_REASONS:
            message = str_or_none(candidate.get("finishMessage"))
            raise ContentPolicyError(
                f"gemini withheld the image ({reason})" + (f": {message}" if message else ""),
                reason=reason,
                stage="output",
                categories=_flagged_categories(candidate.get("safetyRatings")),
                provider=NAME,
                request_id=request_id,
                details=dict(body),
            )
        if reason == "MISSING_THOUGHT_SIGNATURE":
            raise GenerationError(
                "gemini refused the conversation history: a model turn lacks its thought "
                "signature; resend the turns exactly as aigen returned them",
                details=dict(body),
            )
        answer = _read_parts(as_mapping(candidate.get("content")).get("parts"))
        if answer.image is None:
            finish_message = str_or_none(candidate.get("finishMessage"))
            said = [preview(t) for t in (finish_message, answer.text) if t]
            raise NoImageError(
                f"gemini answered without an image (finish reason {finish_reason})"
                + (f": {'; '.join(said)}" if said else ""),
                text=answer.text,
                finish_reason=finish_reason,
                request_id=request_id,
                details=dict(body),
            )
        image_part = answer.image
        inline = as_mapping(image_part.get("inlineData") or image_part.get("inline_data"))
        return ProviderAnswer(
            image_data=_inline_bytes(image_part),
            declared_mime_type=str_or_none(inline.get("mimeType") or inline.get("mime_type")),
            text=answer.text,
            thought_signature=answer.image_signature,
            parts=tuple(answer.parts),
            request_id=request_id,
            model=_model_name(body.get("modelVersion")),
            usage=_usage(body.get("usageMetadata")),
            finish_reason=finish_reason,
        )

    def parse_error(self, response: HttpResponse, context: ErrorContext) -> GenerationError:
        """Read a `google.rpc.Status` error body into the matching error class."""
        status = response.status_code
        body = parse_error_body(response)
        if isinstance(body, list) and len(body) == 1:  # the stream endpoint wraps errors
            body = body[0]
        error = as_mapping(as_mapping(body).get("error"))
        server_message = str_or_none(error.get("message"))
        details = [as_mapping(d) for d in as_list(error.get("details"))]
        message = server_message or (
            f"HTTP {status} with a body that is not a Gemini error: {preview(str(body))}"
        )
        kind = api_error_class(status)
        reasons = {str_or_none(d.get("reason")) for d in details if _is_type(d, "ErrorInfo")}
        if "API_KEY_INVALID" in reasons:
            kind = AuthenticationError
        elif status == 400 and server_message and _mentions_safety(server_message):
            return ContentPolicyError(
                f"gemini refused the request on safety grounds: {server_message}",
                reason="SAFETY",
                stage="prompt",
                provider=NAME,
                details=body,
            )
        elif status == 402 or (status == 429 and _quota_will_not_reset_soon(details)):
            kind = QuotaExceededError
        return kind(
            with_next_step(message, kind, context.model, "GEMINI_API_KEY"),
            status_code=status,
            provider=NAME,
            body=body,
            retry_after=_retry_delay(details, server_message),
        )


# -- request helpers ---------------------------------------------------------------


def _segment(model: str) -> str:
    """`model` as one URL path segment: the clients accept only safe names, but a provider
    may be called directly, so nothing in a name can move the request elsewhere."""
    return quote(model, safe=":@")


def _contents(request: GenerationRequest, model: str) -> list[dict[str, object]]:
    """History then the new prompt, as alternating user/model contents."""
    history = request.conversation_history
    # The rules go on the first user turn with text (the new prompt at the latest), and
    # only there; the size line goes on every later one, as on OpenAI's refinements. A
    # replayed turn is composed as it was when sent, so the history reads the same.
    first_user = next(
        (i for i, turn in enumerate(history) if turn.role == "user" and turn.text), len(history)
    )

    def composed(text: str, index: int) -> str:
        rules = request.rules_preamble and index == first_user
        return compose_prompt(text, width=request.width, height=request.height, rules=rules)

    contents: list[dict[str, object]] = []

    def add(role: str, parts: list[dict[str, object]]) -> None:
        if contents and contents[-1]["role"] == role:
            # Gemini wants roles to alternate; two user turns in a row become one.
            previous = contents[-1]["parts"]
            assert isinstance(previous, list)
            previous.extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for index, turn in enumerate(history):
        if turn.role == "user":
            text = composed(turn.text, index) if turn.text else turn.text
            add("user", _user_parts(text, turn.image_data, turn.mime_type))
        else:
            add("model", _model_parts(turn, needs_signatures=model.startswith("gemini-3")))
    prompt = composed(request.prompt, len(history))
    add("user", _user_parts(prompt, request.input_image, request.input_mime_type))
    return contents


def _user_parts(
    text: str | None, image_data: bytes | None, mime_type: str | None
) -> list[dict[str, object]]:
    parts: list[dict[str, object]] = []
    if text:
        parts.append({"text": text})
    if image_data is not None:
        parts.append(_image_part(image_data, mime_type))
    return parts


def _model_parts(turn: Turn, *, needs_signatures: bool) -> list[dict[str, object]]:
    """A model turn replayed as it came: same parts, same order, each signature in place."""
    signed: list[tuple[dict[str, object], bytes | None]] = []
    if turn.parts:
        for part in turn.parts:
            if part.text is not None:
                signed.append(({"text": part.text}, part.thought_signature))
            elif part.main_image and turn.image_data is not None:
                signed.append(
                    (_image_part(turn.image_data, turn.mime_type), part.thought_signature)
                )
            elif part.image_data is not None:
                image = _image_part(part.image_data, sniff_mime_type(part.image_data))
                signed.append((image, part.thought_signature))
    else:  # a turn written by hand: text, then image
        if turn.text:
            signed.append(({"text": turn.text}, None))
        if turn.image_data is not None:
            image = _image_part(turn.image_data, turn.mime_type)
            signed.append((image, turn.thought_signature))
    # Gemini 3 wants a signature on the first part and on every image; a turn it did
    # not make has none, so those places get the documented stand-in.
    stand_in = STAND_IN_SIGNATURE if needs_signatures else None
    for index, (wire, signature) in enumerate(signed):
        wants_one = index == 0 or "inlineData" in wire
        _sign(wire, signature, stand_in if wants_one else None)
    return [wire for wire, _ in signed]


def _sign(part: dict[str, object], signature: bytes | None, stand_in: str | None) -> None:
    if signature is not None:
        part["thoughtSignature"] = b64encode(signature)
    elif stand_in is not None:
        part["thoughtSignature"] = stand_in


def _image_part(data: bytes, mime_type: str | None) -> dict[str, object]:
    return {
        "inlineData": {
            "mimeType": mime_type or "image/png",
            "data": b64encode(data),
        }
    }


def _generation_config(
    request: GenerationRequest, options: GeminiOptions, seed: int | None
) -> dict[str, object]:
    config: dict[str, object] = {"responseModalities": list(options.response_modalities)}
    image_config: dict[str, object] = {}
    if options.aspect_ratio is not None:
        image_config["aspectRatio"] = options.aspect_ratio
    elif request.width is not None and request.height is not None:
        image_config["aspectRatio"] = nearest_aspect_ratio(request.width, request.height)
    if options.image_size is not None:
        image_config["imageSize"] = options.image_size
    if image_config:
        config["imageConfig"] = image_config
    if seed is not None:
        config["seed"] = seed
    return config


# -- response helpers --------------------------------------------------------------


class _Answer:
    """A candidate's non-thought parts: the final image, the text, every part in order."""

    def __init__(self) -> None:
        self.image: Mapping[str, object] | None = None
        self.image_signature: bytes | None = None
        self.texts: list[str] = []
        self.parts: list[TurnPart] = []

    @property
    def text(self) -> str | None:
        return "\n".join(self.texts) or None


def _read_parts(raw_parts: object) -> _Answer:
    found = _Answer()
    images: list[tuple[int, Mapping[str, object]]] = []
    for raw in as_list(raw_parts):
        part = as_mapping(raw)
        if part.get("thought") is True:
            continue  # reasoning and interim thought images are not the answer
        if part.get("inlineData") or part.get("inline_data"):
            images.append((len(found.parts), part))
            found.parts.append(TurnPart(main_image=True, thought_signature=_signature(part)))
        elif isinstance(part.get("text"), str):
            found.texts.append(str(part["text"]))
            found.parts.append(TurnPart(text=str(part["text"]), thought_signature=_signature(part)))
    if images:
        last_index, found.image = images[-1]  # the last image is the final one
        found.image_signature = found.parts[last_index].thought_signature
        unreadable: list[int] = []
        for index, part in images[:-1]:  # earlier images keep their own bytes
            data = _inline_bytes(part)
            if sniff_mime_type(data) is None:
                unreadable.append(index)  # nothing a replay could send back as an image
                continue
            found.parts[index] = TurnPart(
                image_data=data, thought_signature=found.parts[index].thought_signature
            )
        found.parts = [p for i, p in enumerate(found.parts) if i not in unreadable]
    return found


def _inline_bytes(part: Mapping[str, object]) -> bytes:
    inline = as_mapping(part.get("inlineData") or part.get("inline_data"))
    return decode_base64_image(inline.get("data"), NAME, "inlineData.data")


def _signature(part: Mapping[str, object]) -> bytes | None:
    raw = part.get("thoughtSignature") or part.get("thought_signature")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return decode_base64_image(raw, NAME, "thoughtSignature")
    except GenerationError:
        # Not base64 after all: keep the token's text as bytes rather than fail the call
        # (it is then sent back base64-encoded, which is the wire's own form for bytes).
        return raw.encode("utf-8", "surrogatepass")


def _usage(raw: object) -> Usage:
    usage = as_mapping(raw)
    return Usage(
        input_tokens=int_or_none(usage.get("promptTokenCount")),
        output_tokens=int_or_none(usage.get("candidatesTokenCount")),
        total_tokens=int_or_none(usage.get("totalTokenCount")),
        thinking_tokens=int_or_none(usage.get("thoughtsTokenCount")),
    )


def _flagged_categories(raw_ratings: object) -> list[str]:
    """Categories a safety rating marked blocked, else those rated MEDIUM or HIGH."""
    ratings = [as_mapping(r) for r in as_list(raw_ratings)]
    blocked = [str(r.get("category")) for r in ratings if r.get("blocked") is True]
    if blocked:
        return blocked
    return [str(r.get("category")) for r in ratings if r.get("probability") in ("MEDIUM", "HIGH")]


def _model_name(raw: object) -> str | None:
    name = str_or_none(raw)
    return name.removeprefix("models/") if name else None


# -- error helpers -----------------------------------------------------------------


def _is_type(detail: Mapping[str, object], name: str) -> bool:
    return str(detail.get("@type", "")).endswith(f"google.rpc.{name}")


def _quota_will_not_reset_soon(details: Sequence[Mapping[str, object]]) -> bool:
    """A per-day quota, or a quota of zero on this tier: waiting a minute will not help."""
    for detail in details:
        if _is_type(detail, "ErrorInfo"):
            # A tier whose limit is zero (free tier on a paid-only model) says so here,
            # sometimes with no QuotaFailure at all.
            metadata = as_mapping(detail.get("metadata"))
            if str(metadata.get("quota_limit_value", "")).strip() == "0":
                return True
        if not _is_type(detail, "QuotaFailure"):
            continue
        for raw in as_list(detail.get("violations")):
            violation = as_mapping(raw)
            quota_id = str(violation.get("quotaId", ""))
            if "PerDay" in quota_id or str(violation.get("quotaValue", "")) == "0":
                return True
    return False


def _retry_delay(details: Sequence[Mapping[str, object]], message: str | None) -> float | None:
    """The longer of `RetryInfo.retryDelay` and the message's "Please retry in 17.4s"."""
    hints: list[float] = []
    for detail in details:
        if _is_type(detail, "RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                hints.append(float(match.group(1)))
    if message:
        match = _RETRY_IN_MESSAGE.search(message)
        if match:
            hints.append(float(match.group(1)))
    valid = [hint for hint in hints if finite_seconds(hint) is not None]
    return max(valid) if valid else None


def _mentions_safety(message: str) -> bool:
    lowered = message.lower()
    return "safety" in lowered or "prohibited use" in lowered
