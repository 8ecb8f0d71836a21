"""Shared fixtures: every behavioural test runs once with `Client` and once with `AsyncClient`.

The `make_client` fixture returns a client behind a small facade whose methods are
synchronous for both kinds (the async client's coroutines run on one event loop per
test), so each test is written once and parametrized over `client_kind`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from aigen import AsyncClient, AsyncConversation, Client
from aigen.testing import FakeClock, use_clock

API_KEY = "test-key-0123456789-do-not-log"
ENV_VARS = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENAI_API_KEY",
    "AIGEN_PROVIDER",
    "AIGEN_BASE_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own keys or settings."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


# The clock that only moves when the code under test sleeps: aigen's public one.
FakeTime = FakeClock


class Facade:
    """Calls an object's methods and runs any coroutine they return to completion."""

    def __init__(self, target: Any, run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self._target = target
        self._run = run

    @property
    def target(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or inspect.isclass(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._run(result)
            if isinstance(result, AsyncConversation):
                return Facade(result, self._run)
            return result

        return call


def install_fake_time(client: Client | AsyncClient, fake: FakeTime) -> None:
    """Point a client's clocks and sleep at `fake`."""
    use_clock(client, fake)


@pytest.fixture(params=["sync", "async"])
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(client_kind: str, fake_time: FakeTime) -> Iterator[Callable[..., Any]]:
    """A factory: `make_client(**keywords)` -> facade over `Client` or `AsyncClient`.

    `api_key` defaults to a test key; `real_time=True` keeps the real clock and sleep.
    """
    loop = asyncio.new_event_loop()
    made: list[Client | AsyncClient] = []

    def factory(*, real_time: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("api_key", API_KEY)
        cls = Client if client_kind == "sync" else AsyncClient
        client = cls(**kwargs)
        made.append(client)
        if not real_time:
            install_fake_time(client, fake_time)
        return Facade(client, loop.run_until_complete)

    yield factory
    for client in made:
        if isinstance(client, Client):
            client.close()
        else:
            loop.run_until_complete(client.aclose())
    loop.close()


@pytest.fixture(params=["gemini", "openai"])
def kit(request: pytest.FixtureRequest) -> Any:
    """Each provider's way of answering, for the provider-neutral behaviour tests."""
    from .kits import KITS

    return KITS[str(request.param)]


@pytest.fixture
def api(kit: Any) -> Iterator[Any]:
    """The mocked generation endpoint(s) of `kit`'s provider (a respx route)."""
    import respx

    with respx.mock(assert_all_called=False) as router:
        yield kit.route(router)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A running Redis for the session: AIGEN_TEST_REDIS_URL's, or one started here."""
    from .redis_server import RedisServer, missing, reachable

    url = os.environ.get("AIGEN_TEST_REDIS_URL")
    if url:
        if not reachable(url):
            missing(f"no Redis answers at AIGEN_TEST_REDIS_URL ({url})")
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()
