"""Multi-turn refinement: a conversation's state as a pydantic model, bound to a client.

The state (every turn, with its images and thought signatures, and the settings every
send shares) is plain data: `model_dump_json()` stores it between two web requests and
`client.conversation(history=...)` resumes it. The client it sends through is a private
attribute, never serialized, so a stored conversation never holds the key.
"""

from __future__ import annotations

from typing import Any, Protocol

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from typing_extensions import Self

from ._errors import ConfigurationError
from ._limits import DEFAULT_LIMITS, ConversationLimits
from ._models import GenerationRequest, GenerationResponse, ProviderOptions, Turn, WholeNumber

__all__ = ["AsyncConversation", "Conversation", "ConversationState"]


class _SyncGenerator(Protocol):
    def generate(self, request: GenerationRequest, /) -> GenerationResponse: ...


class _AsyncGenerator(Protocol):
    async def generate(self, request: GenerationRequest, /) -> GenerationResponse: ...


class ConversationState(BaseModel):
    """What a conversation remembers: its turns and the settings each send uses."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    history: list[Turn] = Field(default_factory=list)
    width: WholeNumber | None = None
    height: WholeNumber | None = None
    model: str | None = None
    seed: WholeNumber | None = None
    rules_preamble: bool = Field(default=True, strict=True)

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """A stored conversation read back, refused cheaply when it is over the limits:
        one too long is not parsed at all, and one with too many turns is refused before
        any turn is validated. `context={"conversation_limits": ConversationLimits(...)}`
        sets the limits (the defaults otherwise)."""
        limits = _limits_in(kwargs.get("context"))
        limits.check_json_size(len(json_data))
        try:
            data = pydantic_core.from_json(json_data)  # parsed once, in Rust; not validated
        except ValueError:  # not JSON: pydantic's own ValidationError says where
            return super().model_validate_json(json_data, **kwargs)
        history = data.get("history") if isinstance(data, dict) else None
        if isinstance(history, list):
            limits.check_turn_count(len(history))
        return cls.model_validate(data, **kwargs)

    def _request(
        self, prompt: str, input_image: bytes | None, options: ProviderOptions | None
    ) -> GenerationRequest:
        return GenerationRequest(
            prompt=prompt,
            width=self.width,
            height=self.height,
            model=self.model,
            seed=self.seed,
            input_image=input_image,
            conversation_history=list(self.history),
            rules_preamble=self.rules_preamble,
            options=options,
        )

    def _record(self, request: GenerationRequest, response: GenerationResponse) -> None:
        # Only a successful exchange joins the history: a failed send can simply be sent again.
        user_turn = Turn(role="user", text=request.prompt, image_data=request.input_image)
        self.history = [*self.history, user_turn, response.as_turn()]

    @property
    def last_image(self) -> bytes | None:
        """The newest image the model made in this conversation, or `None`."""
        for turn in reversed(self.history):
            if turn.role == "model" and turn.image_data is not None:
                return turn.image_data
        return None


class Conversation(ConversationState):
    """A conversation sent through a `Client`; `send()` refines the last image."""

    _client: _SyncGenerator | None = PrivateAttr(default=None)

    def send(
        self,
        prompt: str,
        /,
        *,
        input_image: bytes | None = None,
        options: ProviderOptions | None = None,
    ) -> GenerationResponse:
        """Send `prompt` with the whole history; the answer joins the history."""
        if self._client is None:
            raise ConfigurationError(_UNBOUND)
        request = self._request(prompt, input_image, options)
        response = self._client.generate(request)
        self._record(request, response)
        return response


class AsyncConversation(ConversationState):
    """A conversation sent through an `AsyncClient`; `await send()` refines the last image."""

    _client: _AsyncGenerator | None = PrivateAttr(default=None)

    async def send(
        self,
        prompt: str,
        /,
        *,
        input_image: bytes | None = None,
        options: ProviderOptions | None = None,
    ) -> GenerationResponse:
        """Send `prompt` with the whole history; the answer joins the history."""
        if self._client is None:
            raise ConfigurationError(_UNBOUND)
        request = self._request(prompt, input_image, options)
        response = await self._client.generate(request)
        self._record(request, response)
        return response


def _limits_in(context: object) -> ConversationLimits:
    """The limits a validation context names, else the defaults."""
    if isinstance(context, dict):
        limits = context.get("conversation_limits")
        if isinstance(limits, ConversationLimits):
            return limits
    return DEFAULT_LIMITS


_UNBOUND = (
    "this conversation is not bound to a client (it was loaded from JSON): "
    "resume it with client.conversation(history=saved)"
)
