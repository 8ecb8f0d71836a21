"""The sans-IO engine driven by plain function calls: no client, no socket, no sleep."""

from __future__ import annotations

import json

import pytest

import aigen
from aigen._config import resolve_settings
from aigen._core import Engine
from aigen._http import HttpResponse

from . import gemini_bodies as gb
from .conftest import FakeTime


def engine(fake: FakeTime, **settings: object) -> Engine:
    resolved = resolve_settings(
        provider="gemini",
        api_key="key-0123456789",
        base_url=None,
        model=None,
        max_retries=None,
        retry=settings.pop("retry", None),  # type: ignore[arg-type]
        allow_insecure_http=False,
        **settings,  # type: ignore[arg-type]
    )
    return Engine(resolved, clock=fake.monotonic, wall_clock=fake.time, pick_seed=lambda: 99)


def test_a_call_is_prepared_before_anything_is_sent() -> None:
    call = engine(FakeTime()).start("A fox", {"width": 1280, "height": 720})
    request = call.next_attempt()
    assert request.method == "POST"
    assert request.url.endswith("/v1beta/models/gemini-2.5-flash-image:generateContent")
    assert call.seed == 99
    assert call.attempts == 1


def test_timing_runs_from_sending_to_the_last_byte() -> None:
    fake = FakeTime()
    call = engine(fake).start("A fox", {})
    call.next_attempt()
    fake.now += 2.5  # the model thinks, then the body arrives
    body = json.dumps(gb.image_answer()).encode()
    result = call.handle_response(HttpResponse(200, {}, body))
    assert result.inference_time_ms == pytest.approx(2500)


def test_the_size_cap_is_checked_on_the_declared_length_first() -> None:
    call = engine(FakeTime(), max_response_bytes=10).start("x", {})
    with pytest.raises(aigen.GenerationError, match="max_response_bytes") as caught:
        call.body_reader({"content-length": "11"})
    assert caught.value.generation_id == call.generation_id


def test_the_size_cap_is_checked_as_the_body_streams() -> None:
    reader = engine(FakeTime(), max_response_bytes=10).start("x", {}).body_reader({})
    reader.feed(b"12345")
    reader.feed(b"67890")
    with pytest.raises(aigen.GenerationError, match="larger than max_response_bytes"):
        reader.feed(b"1")


def test_a_body_still_arriving_at_the_deadline_is_cut() -> None:
    fake = FakeTime()
    call = engine(fake, retry=aigen.RetryPolicy(deadline=5)).start("x", {})
    reader = call.body_reader({})
    reader.feed(b"abc")
    fake.now += 6
    with pytest.raises(aigen.APITimeoutError, match="deadline"):
        reader.feed(b"def")


def test_a_body_that_has_fully_arrived_is_kept_past_the_deadline() -> None:
    fake = FakeTime()
    call = engine(fake, retry=aigen.RetryPolicy(deadline=5)).start("x", {})
    reader = call.body_reader({"content-length": "6"})
    reader.feed(b"abc")
    fake.now += 6
    reader.feed(b"def")
    assert reader.body() == b"abcdef"
