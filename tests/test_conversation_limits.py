"""Caps on what a conversation (and any request) carries, checked before anything is sent
(issue 11): turns, the bytes of all images together, the bytes of any one image; and a
tampered stored conversation refused fast and cheaply."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen import Conversation, ConversationLimits, ConversationState, Turn

from . import gemini_bodies as gb
from .images import png

IMAGE = png(8, 8)


@pytest.fixture
def api() -> Any:
    """Both providers' endpoints, answering with an image."""
    with respx.mock(assert_all_called=False) as router:
        router.route(path__regex=r":generateContent$").mock(
            return_value=httpx.Response(200, json=gb.image_answer())
        )
        yield router


def history(turns: int, image: bytes | None = IMAGE) -> list[dict[str, Any]]:
    return [
        {"role": "user", "text": f"prompt {n}"}
        if n % 2 == 0
        else {"role": "model", "image_data": image}
        for n in range(turns)
    ]


def test_the_defaults_fit_every_provider() -> None:
    limits = ConversationLimits()
    assert limits.max_input_image_bytes == 50_000_000  # OpenAI: each image under 50 MB
    assert limits.max_total_image_bytes * 4 // 3 <= 100_000_000  # Gemini: 100 MB base64
    assert limits.max_turns == 100


def test_a_tampered_stored_conversation_of_a_million_turns_is_refused_fast() -> None:
    stored = json.dumps({"history": [{"role": "user", "text": "again"}] * 1_000_000})
    started = time.perf_counter()
    with pytest.raises(aigen.ConfigurationError, match=r"1,000,000 turns.*max_turns"):
        Conversation.model_validate_json(stored)
    assert time.perf_counter() - started < 3.0  # it took 15 s (and 550 MiB) to load


def test_a_stored_conversation_too_long_to_be_within_the_limits_is_not_read() -> None:
    limits = ConversationLimits(max_turns=2, max_total_image_bytes=1000)
    stored = b'{"history": [' + b" " * limits.max_json_bytes + b"]}"
    with pytest.raises(aigen.ConfigurationError, match="was not read"):
        ConversationState.model_validate_json(stored, context={"conversation_limits": limits})


def test_a_stored_conversation_within_the_limits_loads_as_before() -> None:
    state = ConversationState(history=[Turn(**turn) for turn in history(4)], width=64, height=64)
    assert ConversationState.model_validate_json(state.model_dump_json()) == state
    with pytest.raises(Exception, match="JSON"):  # not JSON: pydantic's own error, as before
        ConversationState.model_validate_json("{not json")


def test_raised_limits_load_a_longer_conversation() -> None:
    stored = json.dumps({"history": history(150, image=None)[::2] * 2})
    with pytest.raises(aigen.ConfigurationError):
        ConversationState.model_validate_json(stored)
    limits = ConversationLimits(max_turns=200)
    loaded = ConversationState.model_validate_json(stored, context={"conversation_limits": limits})
    assert len(loaded.history) == 150


def test_resuming_too_many_turns_is_refused_before_sending(make_client: Any, api: Any) -> None:
    client = make_client()
    with pytest.raises(aigen.ConfigurationError, match="max_turns"):
        client.conversation(history=history(101))
    assert not api.calls


def test_a_conversation_that_grows_past_max_turns_is_refused_before_sending(
    make_client: Any, api: Any
) -> None:
    client = make_client(conversation_limits=ConversationLimits(max_turns=2))
    chat = client.conversation()
    chat.send("first")  # 0 turns of history
    chat.send("second")  # 2 turns
    with pytest.raises(aigen.ConfigurationError, match=r"4 turns.*max_turns=4"):
        chat.send("third")  # 4 turns: over
    assert len(api.calls) == 2
    assert len(chat.history) == 4


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_a_60_mb_input_image_is_refused_before_sending(
    make_client: Any, api: Any, provider: str
) -> None:
    api.route(path__regex=r"/v1/images/").mock(return_value=httpx.Response(500))
    huge = IMAGE + b"\0" * 60_000_000
    client = make_client(provider=provider)
    with pytest.raises(aigen.ConfigurationError, match=r"input_image is 60,000,\d+ bytes"):
        client.generate("x", input_image=huge)
    assert not api.calls


def test_images_over_the_total_are_refused_before_sending(make_client: Any, api: Any) -> None:
    limits = ConversationLimits(max_total_image_bytes=3 * len(IMAGE))
    client = make_client(conversation_limits=limits)
    client.generate("fits", conversation_history=history(6))  # 3 images
    with pytest.raises(aigen.ConfigurationError, match=r"bytes of images.*max_total_image_bytes"):
        client.generate("x", conversation_history=history(6), input_image=IMAGE)
    with pytest.raises(aigen.ConfigurationError, match="max_total_image_bytes"):
        client.conversation(history=history(8))
    assert len(api.calls) == 1


def test_one_image_over_its_cap_in_the_history_is_named(make_client: Any, api: Any) -> None:
    client = make_client(conversation_limits=ConversationLimits(max_input_image_bytes=100))
    big = IMAGE + b"\0" * 200
    with pytest.raises(aigen.ConfigurationError, match="the image of turn 1 is"):
        client.generate("x", conversation_history=history(2, image=big))
    assert not api.calls


@pytest.mark.parametrize("value", [100, {"max_turns": 5}, True])
def test_conversation_limits_takes_a_conversation_limits(client_kind: str, value: Any) -> None:
    cls = aigen.Client if client_kind == "sync" else aigen.AsyncClient
    with pytest.raises(aigen.ConfigurationError, match=r"conversation_limits=.*ConversationLimits"):
        cls(api_key="k", conversation_limits=value)


def test_limit_fields_are_strict() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        ConversationLimits(max_turns="5")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        ConversationLimits(max_total_image_bytes=True)
