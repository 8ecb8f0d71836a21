"""What `Client` and `AsyncClient` share: settings, the engine, requests for httpx, repr.

The two clients (aigen/_sync_client.py, aigen/_async_client.py) are each a driver loop
that carries out a call's flow of actions (aigen/_actions.py) and the public methods
around it; everything they can share without an `await` is here. Neither knows which
provider it talks to.
"""

from __future__ import annotations

import random
import time as _time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypedDict, TypeVar

import httpx

from ._body import ACCEPTED_ENCODINGS
from ._circuit import CircuitBreaker
from ._clock import Clock
from ._config import resolve_settings
from ._constants import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT
from ._conversation import AsyncConversation, Conversation, ConversationState
from ._core import Engine, as_request
from ._errors import ConfigurationError, GenerationError
from ._hooks import Hooks
from ._http import HttpRequest
from ._limits import ConversationLimits
from ._log_scrub import protect_key
from ._models import MAX_SEED, GenerationRequest, GenerationResponse, Turn
from ._ratelimit import RateLimit
from ._retry import RetryPolicy
from ._transport import checked_timeout
from .providers import AnyProvider

__all__ = [
    "BaseClient",
    "Batch",
    "ClientOptions",
    "OnProgress",
    "Result",
    "SystemClock",
]

# Distinct URLs a client keeps parsed: one per model it calls, in practice.
_MAX_PARSED_URLS = 64

History = Sequence[Turn] | Sequence[dict[str, object]] | ConversationState

ConversationT = TypeVar("ConversationT", Conversation, AsyncConversation)
T = TypeVar("T")

# What each item of a `generate_many` is: the response, or the error that call ended with.
Result = GenerationResponse | GenerationError
# What `generate_many` takes, and what it calls as calls finish: `on_progress(done, total)`.
Batch = Iterable[GenerationRequest | str]
OnProgress = Callable[[int, int], object] | None


class ClientOptions(TypedDict, total=False):
    """The keywords `Client` and `AsyncClient` share (all but `http_client`), all optional.

    Defaults: `provider` from `AIGEN_PROVIDER` or the key variable that is set (else
    gemini); `api_key` from the provider's key variable; `base_url` from `AIGEN_BASE_URL`
    or the provider's endpoint; `model` the provider's default; `timeout=120.0` (seconds
    per attempt, or an `httpx.Timeout`); `max_retries=None` (2, through the default
    `RetryPolicy`); `retry=None`; `allow_insecure_http=False`; `max_response_bytes` 64 MiB;
    `rate_limit=None`, `circuit_breaker=None`, `max_concurrency=None` (no limits);
    `hooks=None` (an `aigen.Hooks`: your callables, told of each attempt, retry and outcome);
    `conversation_limits=None` (`ConversationLimits()`: caps that fit every provider).
    docs/configuration.md says what each does. Use it to type a factory of your own:
    `def make_client(**options: Unpack[aigen.ClientOptions]) -> aigen.Client`.
    """

    provider: str | AnyProvider | None
    api_key: str | None
    base_url: str | None
    model: str | None
    timeout: float | httpx.Timeout
    max_retries: int | None
    retry: RetryPolicy | None
    allow_insecure_http: bool
    max_response_bytes: int
    rate_limit: RateLimit | None
    circuit_breaker: CircuitBreaker | None
    max_concurrency: int | None
    hooks: Hooks | None
    conversation_limits: ConversationLimits | None


class SystemClock:
    """The real clocks, `time.sleep` and `asyncio.sleep` (see `aigen._clock.Clock`)."""

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)
    sleep = staticmethod(_time.sleep)

    async def asleep(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)`."""
        # Imported here: a sync app should not pay for asyncio's import.
        import asyncio

        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


def _pick_seed() -> int:
    # Uniform over 0..MAX_SEED (2**31 - 1), and a fifth of what randint costs.
    return random.getrandbits(MAX_SEED.bit_length())


class BaseClient(Generic[ConversationT]):
    """What both clients share: settings, engine, timeouts, repr, conversations."""

    _conversation_class: type[ConversationT]

    def __init__(
        self,
        *,
        provider: str | AnyProvider | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rate_limit: RateLimit | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        max_concurrency: int | None = None,
        hooks: Hooks | None = None,
        conversation_limits: ConversationLimits | None = None,
    ) -> None:
        settings = resolve_settings(
            provider=provider,
            api_key=api_key,
            base_url=base_url,
            model=model,
            max_retries=max_retries,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            max_response_bytes=max_response_bytes,
            rate_limit=rate_limit,
            circuit_breaker=circuit_breaker,
            max_concurrency=max_concurrency,
            conversation_limits=conversation_limits,
            hooks=hooks,
        )
        self._engine = Engine(
            settings, clock=SystemClock(), jitter=random.random, pick_seed=_pick_seed
        )
        self._urls: dict[str, httpx.URL] = {}
        self._timeout = checked_timeout(timeout)
        protect_key(self, settings.api_key)  # out of httpx's and httpcore's log records

    @property
    def provider(self) -> AnyProvider:
        """The provider adapter this client talks through."""
        return self._engine.settings.provider

    @property
    def model(self) -> str:
        """The model used when a request names none."""
        return self._engine.settings.model

    @property
    def clock(self) -> Clock:
        """The clock the client reads and sleeps on (see `aigen.testing.use_clock`)."""
        return self._engine.clock

    def __repr__(self) -> str:
        settings = self._engine.settings
        return (
            f"{type(self).__name__}(provider={settings.provider.name!r}, "
            f"base_url={settings.base_url!r}, model={settings.model!r})"
        )

    def _attempt_timeout(self, time_left: float | None) -> httpx.Timeout:
        """The configured timeout, shortened so an attempt cannot outlive the deadline."""
        if time_left is None:
            return self._timeout
        t = self._timeout

        def cap(value: float | None) -> float:
            return time_left if value is None else min(value, time_left)

        return httpx.Timeout(
            connect=cap(t.connect), read=cap(t.read), write=cap(t.write), pool=cap(t.pool)
        )

    def _httpx_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        request: HttpRequest,
        time_left: float | None,
    ) -> httpx.Request:
        """The httpx request for a prepared one: JSON bytes, or a multipart form."""
        files = [(f.name, (f.filename, f.data, f.content_type)) for f in request.files]
        return client.build_request(
            request.method,
            self._parsed_url(request.url),
            # aigen inflates bodies itself (within max_response_bytes): ask only for
            # the encodings it handles, unless the request says otherwise.
            headers={"accept-encoding": ACCEPTED_ENCODINGS, **request.headers},
            content=None if files else request.content,
            data=dict(request.form) if files else None,
            files=files or None,
            timeout=self._attempt_timeout(time_left),
        )

    def _parsed_url(self, url: str) -> httpx.URL:
        """`url` parsed once: httpx parses a string URL on every request (about 10 µs,
        a twentieth of a small call on loopback), and a client sends to very few URLs."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _MAX_PARSED_URLS:
                self._urls.clear()  # many models in turn: start over rather than grow
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _closed_error(self) -> ConfigurationError:
        """The error for a call on a client whose connection pool is closed."""
        name = type(self).__name__
        return ConfigurationError(
            f"this {name} is closed (close() was called, or its `with` block ended, or the "
            f"http_client it was given is closed): make a new {name}, or make the call "
            "inside the `with` block"
        )

    @staticmethod
    def _prepared(requests: Batch, concurrency: int) -> list[GenerationRequest]:
        """A whole batch validated, before any of it is sent."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise ConfigurationError(
                f"concurrency={concurrency!r} is a {type(concurrency).__name__}: it takes a "
                "whole number of calls at once, e.g. concurrency=8"
            )
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be 1 or more, got {concurrency}")
        return [as_request(request, {}) for request in requests]

    def conversation(
        self,
        *,
        history: History | None = None,
        width: int | None = None,
        height: int | None = None,
        model: str | None = None,
        seed: int | None = None,
        rules_preamble: bool | None = None,
    ) -> ConversationT:
        """Start a multi-turn conversation, or resume a saved one with `history=`.

        `history` takes a saved conversation (its settings come along unless given
        here), or a list of `Turn`s or of dicts with the same fields.
        """
        state: dict[str, object] = {}
        if isinstance(history, ConversationState):
            state = history.model_dump(exclude={"history"})
            state["history"] = list(history.history)
        elif history is not None:
            state["history"] = list(history)
        explicit = {
            "width": width,
            "height": height,
            "model": model,
            "seed": seed,
            "rules_preamble": rules_preamble,
        }
        state.update({key: value for key, value in explicit.items() if value is not None})
        limits = self._engine.settings.conversation_limits
        history_given = state.get("history")
        if isinstance(history_given, list):
            limits.check_turn_count(len(history_given))  # before any turn is read
        chat: ConversationT = self._conversation_class.model_validate(state)
        limits.check_history(chat.history)
        chat._client = self  # type: ignore[assignment]  # each client matches its class
        return chat
