"""The fakes stand up to odd prompts, and a shared fake can be cleared between tests.

A lone surrogate and a 10 MB prompt are answered like any other (both clients, both
fakes, on 127.0.0.1); `script(..., replace=True)` and `clear()` stop one test's leftovers
from reaching the next.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import aigen
from aigen.testing import (
    TEST_API_KEY,
    FakeServer,
    fake_server,
    overloaded,
    success,
    text_only,
)
from aigen.testing._dialect import shown_prompt
from aigen.testing._render import render_png
from aigen.testing.respx import mock_provider

from .images import png


@pytest.fixture(params=["gemini", "openai"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    with fake_server(str(request.param)) as fake:
        yield fake


def connect(make_client: Any, fake: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("timeout", 5.0)
    return make_client(
        provider=fake.provider, base_url=fake.base_url, real_time=True, max_retries=0, **kwargs
    )


def test_a_lone_surrogate_in_the_prompt_is_drawn(make_client: Any, server: FakeServer) -> None:
    image = connect(make_client, server).generate("a \ud800 fox", width=64, height=64)
    assert image.image_data.startswith(b"\x89PNG")
    assert len(server.requests) == 1


def test_a_ten_megabyte_prompt_does_not_hold_the_fake(make_client: Any) -> None:
    prompt = "word " * 2_000_000  # 10 MB
    fake = fake_server("openai").start()
    try:
        started = time.monotonic()
        image = connect(make_client, fake, timeout=3.0).generate(prompt, width=64, height=64)
        assert image.width == 64
        assert time.monotonic() - started < 3.0
    finally:
        fake.stop(timeout=1.0)  # raises "threads did not stop" if the drawing still runs


def test_what_is_drawn_is_capped_and_valid_text() -> None:
    shown = shown_prompt("x" * 10_000_000)
    assert len(shown) <= 2003
    assert shown.endswith("...")
    assert shown_prompt("a \ud800 fox") == "a ? fox"
    started = time.monotonic()
    render_png("y " * 5_000_000, 64, 64)  # the drawing itself wraps only what fits
    render_png("\udfff", 16, 16)
    assert time.monotonic() - started < 2.0


# -- leftovers between tests ---------------------------------------------------------------


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_script_replace_drops_what_was_queued(provider: str) -> None:
    with mock_provider(provider) as fake:
        fake.script(overloaded(), overloaded())
        fake.script(success(png(8, 8)), replace=True)
        assert fake.pending == 1
        fake.script(overloaded())
        assert fake.pending == 2  # without replace=True, script() still appends


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_clear_forgets_queue_requests_and_default(provider: str) -> None:
    with mock_provider(provider) as fake:
        fake.default = overloaded()
        fake.script(overloaded())
        with aigen.Client(provider=provider, api_key=TEST_API_KEY, max_retries=0) as client:
            with pytest.raises(aigen.ServerError):
                client.generate("first test")
            fake.script(overloaded())  # a leftover the first test never played
            fake.clear()
            assert fake.pending == 0
            assert fake.requests == []
            assert client.generate("second test").image_data  # a success by default again
            assert len(fake.requests) == 1


def test_clear_on_a_running_server_keeps_its_port(make_client: Any, server: FakeServer) -> None:
    port = server.port
    client = connect(make_client, server)
    client.generate("one")
    # The server counts a write once it returns, which can be just after the client has
    # read the answer: wait for its count rather than race it.
    assert server.wait_until(lambda s: s.bytes_sent > 0)
    server.script(text_only("no") if server.provider == "gemini" else overloaded())
    server.clear()
    assert (server.pending, server.requests, server.bytes_sent) == (0, [], 0)
    assert server.port == port
    assert client.generate("two").image_data
