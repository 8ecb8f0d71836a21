"""Opt-in pytest fixtures for testing code that uses aigen, against fake providers on 127.0.0.1.

Not registered automatically: opt in from your `conftest.py` with

```python
pytest_plugins = ["aigen.testing.pytest_plugin"]
```

Fixtures:

- `fake_gemini`, `fake_openai`: a running `FakeGemini` / `FakeOpenAI`, stopped after the
  test. Each accepts only `TEST_API_KEY` (its `.api_key`); point a client at it with
  `Client(**fake.client_options)`, or your app with `fake.environ`; script it with
  `.script(...)`; read what arrived in `.requests`.
- `aigen_client`: a factory, `aigen_client(fake, **options)`, of `aigen.Client`s pointed
  at a fake (or at a `MockProvider`), closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .._retry import RetryPolicy
from .._sync_client import Client
from ._script import TEST_API_KEY, ScriptedAPI
from ._server import FakeGemini, FakeOpenAI

__all__ = ["ClientFactory", "aigen_client", "fake_gemini", "fake_openai"]

# Much shorter than aigen's two minutes: a test that hangs should fail soon.
TEST_TIMEOUT = 10.0


class ClientFactory:
    """Makes `aigen.Client`s pointed at a fake; closes them all on `close()`."""

    def __init__(self) -> None:
        self._made: list[Client] = []

    def __call__(
        self,
        fake: ScriptedAPI,
        *,
        model: str | None = None,
        timeout: float | httpx.Timeout = TEST_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Client:
        """A `Client` for `fake` (its provider, base URL and key), with these settings.

        Retries sleep in real time: pass `retry=RetryPolicy(initial_delay=0.05)` (or
        `max_retries=0`) to keep a test that meets 5xx answers fast.
        """
        client = Client(
            **fake.client_options,
            model=model,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
        )
        self._made.append(client)
        return client

    def close(self) -> None:
        """Close every client made."""
        for client in self._made:
            client.close()
        self._made.clear()


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    """A running fake Gemini API that accepts `TEST_API_KEY`; stopped after the test."""
    with FakeGemini(api_key=TEST_API_KEY) as fake:
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running fake OpenAI Images API that accepts `TEST_API_KEY`; stopped after the test."""
    with FakeOpenAI(api_key=TEST_API_KEY) as fake:
        yield fake


@pytest.fixture
def aigen_client() -> Iterator[ClientFactory]:
    """`aigen_client(fake, **options)` -> an `aigen.Client` for that fake, closed after the test."""
    factory = ClientFactory()
    yield factory
    factory.close()
