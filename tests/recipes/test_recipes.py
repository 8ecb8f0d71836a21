"""What every recipe in docs/recipes/ promises, checked for Flask, Django and FastAPI alike.

Each test runs once per framework (`[flask]`, `[django]`, `[fastapi]`): the page's own
app, driven by the framework's own test client, talking to a fake Gemini on 127.0.0.1.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

import aigen
from aigen.testing import (
    FakeGemini,
    content_blocked,
    overloaded,
    quota_exhausted,
    rate_limited,
    stall,
    success,
)

from ..images import png
from .conftest import Web


def _texts(turn: dict[str, Any]) -> list[str]:
    return [part["text"] for part in turn["parts"] if "text" in part]


def _images(turn: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(p["inlineData"]["data"]) for p in turn["parts"] if "inlineData" in p]


def test_the_image_comes_back_from_the_provider(web: Web, server: FakeGemini) -> None:
    image = png(64, 36)
    server.script(success(image))

    answer = web.post("/images", {"prompt": "A red fox in the snow", "width": 1280, "height": 720})

    assert answer.status == 200
    assert answer.body == image
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["X-Conversation-Id"]
    [sent] = server.requests
    [turn] = sent.json["contents"]
    [prompt] = _texts(turn)
    assert "A red fox in the snow" in prompt
    assert "1280x720" in prompt  # the size the caller asked for reached the provider


def test_a_refinement_sends_the_earlier_turns(web: Web, server: FakeGemini) -> None:
    first, second, third = (png(64, 48, rgb) for rgb in [(200, 0, 0), (0, 0, 200), (0, 200, 0)])
    server.script(success(first), success(second), success(third))

    started = web.post("/images", {"prompt": "A red fox", "width": 640, "height": 480})
    conversation_id = started.headers["X-Conversation-Id"]
    refined = web.post(f"/images/{conversation_id}/refine", {"prompt": "Make it night"})

    assert refined.status == 200
    assert refined.body == second
    assert refined.headers["X-Conversation-Id"] == conversation_id
    # The stored conversation came back: the opening prompt and the image the model made.
    user, model, new = server.requests[1].json["contents"]
    assert [user["role"], model["role"], new["role"]] == ["user", "model", "user"]
    assert "A red fox" in _texts(user)[0]
    assert "640x480" in _texts(user)[0]  # the conversation's size was stored with it
    assert _images(model) == [first]
    [refinement] = _texts(new)
    assert refinement.startswith("Make it night")
    assert "640x480" in refinement  # and stated again on the refinement

    # And the refinement was stored in turn: the next one builds on both images.
    again = web.post(f"/images/{conversation_id}/refine", {"prompt": "Add a moon"})
    assert again.body == third
    contents = server.requests[2].json["contents"]
    assert [_images(turn) for turn in contents[1::2]] == [[first], [second]]
    [refinement] = _texts(contents[-1])
    assert refinement.startswith("Add a moon")


def test_an_unknown_conversation_is_404(web: Web, server: FakeGemini) -> None:
    answer = web.post("/images/no-such-id/refine", {"prompt": "Make it night"})

    assert answer.status == 404
    assert answer.json()["error"] == "not_found"
    assert server.requests == []


@pytest.mark.parametrize("stage", ["prompt", "output"])
def test_a_content_block_is_422_with_its_stage_and_reason(
    web: Web, server: FakeGemini, stage: str
) -> None:
    server.script(content_blocked(stage))  # type: ignore[arg-type]

    answer = web.post("/images", {"prompt": "Something the filter refuses"})

    assert answer.status == 422
    body = answer.json()
    assert body["error"] == "content_policy"
    assert body["stage"] == stage
    assert body["reason"]  # the provider's own code, e.g. "SAFETY" or "IMAGE_SAFETY"
    assert body["generation_id"]
    assert len(server.requests) == 1  # never retried


def test_a_refused_refinement_keeps_the_conversation(web: Web, server: FakeGemini) -> None:
    first, second = png(64, 48, (200, 0, 0)), png(64, 48, (0, 0, 200))
    server.script(success(first), content_blocked("prompt"), success(second))

    started = web.post("/images", {"prompt": "A red fox"})
    conversation_id = started.headers["X-Conversation-Id"]
    refused = web.post(f"/images/{conversation_id}/refine", {"prompt": "Something refused"})
    rephrased = web.post(f"/images/{conversation_id}/refine", {"prompt": "Make it night"})

    assert (refused.status, rephrased.status) == (422, 200)
    assert rephrased.body == second
    contents = server.requests[2].json["contents"]
    assert len(contents) == 3  # the refused turn was not stored
    assert _texts(contents[-1]) == ["Make it night"]


def test_a_rate_limit_hint_too_long_is_429_with_retry_after(web: Web, server: FakeGemini) -> None:
    server.script(rate_limited(90.5))  # longer than RetryPolicy.max_retry_after (60 s)

    answer = web.post("/images", {"prompt": "A red fox"})

    assert answer.status == 429
    assert answer.headers["Retry-After"] == "91"  # whole seconds, rounded up
    assert answer.json()["error"] == "rate_limited"
    assert answer.json()["retry_after"] == 90.5
    assert len(server.requests) == 1  # raised at once, not slept on


def test_a_short_rate_limit_hint_is_waited_out_by_aigen(web: Web, server: FakeGemini) -> None:
    image = png(32, 32)
    server.script(rate_limited(0.05), success(image))

    answer = web.post("/images", {"prompt": "A red fox"})

    assert answer.status == 200
    assert answer.body == image
    assert len(server.requests) == 2


def test_a_spent_quota_is_503(web: Web, server: FakeGemini) -> None:
    server.script(quota_exhausted())

    answer = web.post("/images", {"prompt": "A red fox"})

    assert answer.status == 503
    assert answer.json()["error"] == "quota_exhausted"
    assert "Retry-After" not in answer.headers  # waiting will not help
    assert len(server.requests) == 1  # never retried


def test_an_overloaded_provider_is_502(web: Web, server: FakeGemini) -> None:
    server.script(overloaded(), overloaded())

    answer = web.post("/images", {"prompt": "A red fox"})

    assert answer.status == 502
    assert answer.json()["error"] == "generation_failed"
    assert len(server.requests) == 2  # the app's policy allows one retry


@pytest.mark.parametrize(
    "client_overrides",
    [{"timeout": 0.2, "retry": aigen.RetryPolicy(max_retries=0)}],
    ids=["timeout-0.2s"],
)
def test_a_provider_that_does_not_answer_in_time_is_504(
    client_overrides: dict[str, Any], web: Web, server: FakeGemini
) -> None:
    server.script(stall(5.0))  # cut short when the fake stops

    answer = web.post("/images", {"prompt": "A red fox"})

    assert answer.status == 504
    assert answer.json()["error"] == "timeout"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"prompt": "A red fox", "width": 640}, "height"),
        ({"prompt": "   "}, "prompt is empty"),
    ],
    ids=["width-without-height", "blank-prompt"],
)
def test_a_request_aigen_refuses_is_400_and_nothing_is_sent(
    web: Web, server: FakeGemini, payload: dict[str, Any], words: str
) -> None:
    answer = web.post("/images", payload)

    assert answer.status == 400
    assert answer.json()["error"] == "invalid_request"
    assert words in answer.json()["message"]
    assert server.requests == []


def test_one_client_serves_every_request_over_one_connection(web: Web, server: FakeGemini) -> None:
    client = web.aigen_client()

    first = web.post("/images", {"prompt": "A red fox"})
    second = web.post("/images", {"prompt": "A blue whale"})

    assert (first.status, second.status) == (200, 200)
    assert web.aigen_client() is client
    assert len(server.requests) == 2
    assert server.open_connections == 1  # the second image reused the first one's connection
