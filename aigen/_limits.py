"""How much one request may carry: turns of history and bytes of images, checked before
anything is sent (and before a stored conversation is even read in full).

A conversation grows by an image each turn and is stored between web requests, where it
can be tampered with: without a cap, a million turns (31 MB of JSON) took 15 s and 550 MiB
to load and 1 GiB to send, and a 60 MB input image was sent to be refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ._errors import ConfigurationError
from ._models import GenerationRequest, Turn

__all__ = ["DEFAULT_LIMITS", "ConversationLimits"]

# OpenAI's edits take images "each less than 50 MB"; Gemini takes more (see below).
DEFAULT_MAX_INPUT_IMAGE_BYTES = 50_000_000
# Gemini's inline data may total 100 MB base64-encoded (since January 2026; 20 MB before):
# 75 MB of image bytes. OpenAI sends only the newest image of a conversation.
DEFAULT_MAX_TOTAL_IMAGE_BYTES = 75_000_000
# Fifty refinements: far past where a model still follows the thread, and where Gemini
# 3 Pro's fourteen reference images end.
DEFAULT_MAX_TURNS = 100
# Beside its images, what a stored turn may take in JSON (text, signatures, keys).
_JSON_PER_TURN = 64 * 1024


class ConversationLimits(BaseModel):
    """Caps on what one request carries (pass as `conversation_limits=`).

    - `max_turns`: turns of history a request (or a resumed conversation) may hold.
    - `max_total_image_bytes`: the bytes of every image it carries together, the input
      image and each history image.
    - `max_input_image_bytes`: the bytes of any one of those images.

    The defaults fit every built-in provider's own limits (docs/multi-turn.md). A request
    over a cap raises `ConfigurationError` before anything is sent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_turns: int = Field(default=DEFAULT_MAX_TURNS, ge=0, strict=True)
    max_total_image_bytes: int = Field(default=DEFAULT_MAX_TOTAL_IMAGE_BYTES, ge=1, strict=True)
    max_input_image_bytes: int = Field(default=DEFAULT_MAX_INPUT_IMAGE_BYTES, ge=1, strict=True)

    @property
    def max_json_bytes(self) -> int:
        """The longest stored conversation (JSON) worth reading: its images in base64,
        and room for each turn's text and signatures."""
        return self.max_total_image_bytes * 4 // 3 + (self.max_turns + 1) * _JSON_PER_TURN

    def check_turn_count(self, count: int) -> None:
        """Refuse `count` turns of history if it is over `max_turns`."""
        if count > self.max_turns:
            raise ConfigurationError(
                f"the conversation holds {count:,} turns, over the limit of "
                f"{self.max_turns:,} (ConversationLimits.max_turns): start a new conversation "
                "from the last image, or raise the limit with "
                f"conversation_limits=ConversationLimits(max_turns={count})"
            )

    def check_history(self, history: Sequence[Turn]) -> None:
        """Refuse a history over any cap."""
        self.check_turn_count(len(history))
        self._check_images(_history_images(history))

    def check_request(self, request: GenerationRequest) -> None:
        """Refuse a request over any cap, before it is built or sent."""
        history = request.conversation_history
        if not history and request.input_image is None:
            return  # the common call: nothing to count
        self.check_turn_count(len(history))
        images = _history_images(history)
        if request.input_image is not None:
            images.append(("input_image", len(request.input_image)))
        self._check_images(images)

    def check_json_size(self, size: int) -> None:
        """Refuse a stored conversation longer than any within the caps, unread."""
        if size > self.max_json_bytes:
            raise ConfigurationError(
                f"the stored conversation is {size:,} bytes, more than any within the limits "
                f"could be ({self.max_json_bytes:,}): it was not read. Raise them with "
                "context={'conversation_limits': ConversationLimits(...)} if it is yours"
            )

    def _check_images(self, images: Iterable[tuple[str, int]]) -> None:
        total = 0
        for where, size in images:
            if size > self.max_input_image_bytes:
                raise ConfigurationError(
                    f"{where} is {size:,} bytes, over the limit of "
                    f"{self.max_input_image_bytes:,} for one image "
                    "(ConversationLimits.max_input_image_bytes; OpenAI takes images under "
                    "50 MB): make it smaller, e.g. as JPEG, or raise the limit"
                )
            total += size
        if total > self.max_total_image_bytes:
            raise ConfigurationError(
                f"the request carries {total:,} bytes of images, over the limit of "
                f"{self.max_total_image_bytes:,} (ConversationLimits.max_total_image_bytes; "
                "Gemini takes 100 MB of inline data, base64 included): start a new "
                "conversation from the last image, or raise the limit"
            )


def _history_images(history: Sequence[Turn]) -> list[tuple[str, int]]:
    images: list[tuple[str, int]] = []
    for n, turn in enumerate(history):
        if turn.image_data is not None:
            images.append((f"the image of turn {n}", len(turn.image_data)))
        for part in turn.parts:
            if part.image_data is not None:
                images.append((f"an image in turn {n}", len(part.image_data)))
    return images


DEFAULT_LIMITS = ConversationLimits()
