"""What a fake needs to know about one provider's wire (`Dialect`), and what dialects share.

The shared parts: the image drawn for a success (the prompt written on it, cached), the
prompt text worth drawing, retry hints as headers, and the malformed bodies that look
the same on every provider.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from .._prompt import compose_prompt
from ._outcomes import Reply, Situation
from ._recording import RecordedRequest
from ._render import render_image

__all__ = [
    "DRAWN_TYPES",
    "Dialect",
    "Surroundings",
    "b64",
    "common_malformed",
    "hint_headers",
    "picture",
    "refuse_details",
    "seconds_text",
    "shown_prompt",
]

DRAWN_TYPES = ("image/png", "image/jpeg")
# aigen's rules preamble opens with this line and ends with "Image request: <prompt>".
_PREAMBLE_START = compose_prompt("", width=None, height=None, rules=True).partition("\n")[0]
_PREAMBLE_END = "Image request: "
_SIZE_LINE = "\n\nImage size: exactly "
_NOT_BASE64 = "*** not base64 ***"
_NOT_AN_IMAGE = b"GIF89a? no: these bytes are no PNG, JPEG or WebP"
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in to the network</title></head>\n"
    b"<body><h1>Welcome</h1><p>Please accept the terms of use to continue.</p></body></html>\n"
)


@dataclass(frozen=True)
class Surroundings:
    """What a dialect may read from the fake while rendering: its image type and its clock."""

    mime_type: str
    now: float


class Dialect(Protocol):
    """One provider's wire, as a fake speaks it; the socket and the script are the fake's."""

    name: str
    default_base_url: str

    def model_of(self, request: RecordedRequest) -> str | None:
        """The model the request names, if any."""
        ...

    def check(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        """The answer the real API gives before any model runs, or `None` to play the script.

        `api_key`, when set, is the only key accepted.
        """
        ...

    def refusal(self, situation: Situation) -> str | None:
        """Why this provider cannot say `situation` (checked when it is scripted), or `None`."""
        ...

    def render(self, situation: Situation, request: RecordedRequest, around: Surroundings) -> Reply:
        """`situation` in this provider's words (status, body and headers; no timing)."""
        ...

    def finish(self, reply: Reply, request: RecordedRequest) -> Reply:
        """`reply` with the headers every answer of this provider carries."""
        ...

    def request_id(self, reply: Reply) -> str | None:
        """The id this provider gave the answer (a header or a body field), if any."""
        ...


def b64(data: bytes) -> str:
    """Standard base64 text, as both providers send image data."""
    return base64.b64encode(data).decode()


def seconds_text(seconds: float) -> str:
    """0.3 -> "0.3", 17.0 -> "17": for durations in bodies, headers and messages."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") or "0"


@functools.lru_cache(maxsize=256)
def picture(text: str, width: int, height: int, mime_type: str) -> bytes:
    """The image a success draws: `text` on a `width` x `height` PNG or JPEG, made once."""
    return render_image(text, width, height, mime_type)


# The most of a prompt a fake draws: more than fits on any image it makes (the drawing
# ends in "..."), few enough that a 10 MB prompt costs the fake's thread nothing.
MAX_SHOWN_PROMPT = 2000


def shown_prompt(prompt: str) -> str:
    """The user's own words in a prompt aigen composed: no rules preamble, no size line.

    At most `MAX_SHOWN_PROMPT` characters, and always valid text: a lone surrogate (which
    JSON can carry as `"\ud800"`) becomes `?` instead of crashing the drawing.
    """
    if prompt.startswith(_PREAMBLE_START) and _PREAMBLE_END in prompt:
        text = prompt.partition(_PREAMBLE_END)[2]
    else:
        text = prompt.rpartition(_SIZE_LINE)[0] if _SIZE_LINE in prompt else prompt
    cut = len(text) > MAX_SHOWN_PROMPT * 2
    text = " ".join(text[: MAX_SHOWN_PROMPT * 2].split())
    if cut or len(text) > MAX_SHOWN_PROMPT:
        text = text[:MAX_SHOWN_PROMPT] + "..."
    return text.encode("utf-8", "replace").decode("utf-8") or "(no prompt)"


def hint_headers(situation: Situation, now: float) -> dict[str, str]:
    """The headers a header-style retry hint adds (none for body and message styles)."""
    hint = situation.hint
    if hint is None:
        return {}
    if situation.hint_style == "retry_after":
        return {"retry-after": seconds_text(hint)}
    if situation.hint_style == "http_date":
        return {"retry-after": email.utils.formatdate(math.ceil(now + hint), usegmt=True)}
    if situation.hint_style == "retry_after_ms":
        return {"retry-after-ms": str(round(hint * 1000))}
    return {}


def refuse_details(situation: Situation, allowed: Collection[str], provider: str) -> str | None:
    """Why `situation.details` cannot be said, or `None` if every detail is known."""
    unknown = sorted(set(situation.details) - set(allowed))
    if not unknown:
        return None
    known = ", ".join(sorted(allowed)) or "none"
    return f"{provider} takes no details {unknown} for {situation.kind} (it knows: {known})"


def common_malformed(
    situation: Situation, body_with_data: Callable[[str], Mapping[str, object]]
) -> Reply | None:
    """The malformed answers every provider can give, or `None` for a provider's own kind.

    `body_with_data(text)` is the provider's success body with `text` as the image data.
    """
    flaw = situation.flaw
    json_type = {"content-type": "application/json; charset=UTF-8"}
    if flaw == "not_json":
        return Reply(200, b"this is not JSON", json_type)
    if flaw == "html_200":
        return Reply(200, _HTML_PAGE, {"content-type": "text/html; charset=utf-8"})
    if flaw == "bad_base64":
        return Reply(200, dict(body_with_data(_NOT_BASE64)))
    if flaw == "not_an_image":
        return Reply(200, dict(body_with_data(b64(_NOT_AN_IMAGE))))
    if flaw == "truncated_json":
        whole = json.dumps(body_with_data(b64(picture("cut", 16, 16, "image/png")))).encode()
        return Reply(200, whole[: len(whole) // 2], json_type)
    return None
