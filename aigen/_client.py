"""`Client` and `AsyncClient`: send and sleep, nothing else.

All decisions (what to send, what an answer means, whether and how long to wait) are
the engine's. The two clients differ only in `httpx.Client` vs `httpx.AsyncClient`
and `time.sleep` vs `asyncio.sleep`; neither knows which provider it talks to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from types import TracebackType
from typing import Generic, TypeVar

import httpx
from tenacity import AsyncRetrying, Retrying
from typing_extensions import Self, Unpack

from ._body import ACCEPTED_ENCODINGS, BodyReader
from ._circuit import CircuitBreaker
from ._config import resolve_settings
from ._constants import DEFAULT_BATCH_CONCURRENCY, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT
from ._conversation import AsyncConversation, Conversation, ConversationState
from ._core import Engine, GenerationCall, as_request
from ._errors import APITimeoutError, ConfigurationError, GenerationError, held_back
from ._http import HttpRequest, HttpResponse
from ._models import GenerationFields, GenerationRequest, GenerationResponse, Turn
from ._ratelimit import RateLimit
from ._retry import RetryPolicy
from .providers import Provider

__all__ = ["AsyncClient", "Client"]

# No default cap below what callers ask for: a FastAPI app awaiting hundreds of images
# at once must not queue in the pool. Idle connections kept are bounded (httpx's own 20):
# httpcore rescans every idle connection on each request, so keeping 100 made 200 calls
# in flight five times slower than raw httpx (docs/performance.md).
_POOL_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=20)
# Distinct URLs a client keeps parsed: one per model it calls, in practice.
_MAX_PARSED_URLS = 64

History = Sequence[Turn] | Sequence[dict[str, object]] | ConversationState


ConversationT = TypeVar("ConversationT", Conversation, AsyncConversation)


class _BaseClient(Generic[ConversationT]):
    """What both clients share: settings, engine, timeouts, repr, conversations."""

    _conversation_class: type[ConversationT]

    def __init__(
        self,
        *,
        provider: str | Provider | None,
        api_key: str | None,
        base_url: str | None,
        model: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int | None,
        retry: RetryPolicy | None,
        allow_insecure_http: bool,
        max_response_bytes: int,
        rate_limit: RateLimit | None,
        circuit_breaker: CircuitBreaker | None,
        max_concurrency: int | None,
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
        )
        self._engine = Engine(settings)
        self._urls: dict[str, httpx.URL] = {}
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)

    @property
    def provider(self) -> Provider:
        """The provider adapter this client talks through."""
        return self._engine.settings.provider

    @property
    def model(self) -> str:
        """The model used when a request names none."""
        return self._engine.settings.model

    def __repr__(self) -> str:
        settings = self._engine.settings
        return (
            f"{type(self).__name__}(provider={settings.provider.name!r}, "
            f"base_url={settings.base_url!r}, model={settings.model!r})"
        )

    def _attempt_timeout(self, call: GenerationCall) -> httpx.Timeout:
        """The configured timeout, shortened so an attempt cannot outlive the deadline."""
        left = call.time_left()
        if left is None:
            return self._timeout
        t = self._timeout

        def cap(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(
            connect=cap(t.connect), read=cap(t.read), write=cap(t.write), pool=cap(t.pool)
        )

    def _http_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        request: HttpRequest,
        timeout: httpx.Timeout,
    ) -> httpx.Request:
        """The httpx request for a prepared one: JSON bytes, or a multipart form."""
        files = [(f.name, (f.filename, f.data, f.content_type)) for f in request.files]
        return client.build_request(
            request.method,
            self._parsed_url(request.url),
            # aigen inflates bodies itself (within max_response_bytes): ask only for
            # the encodings it handles.
            headers={"accept-encoding": ACCEPTED_ENCODINGS, **request.headers},
            content=None if files else request.content,
            data=dict(request.form) if files else None,
            files=files or None,
            timeout=timeout,
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
        chat: ConversationT = self._conversation_class.model_validate(state)
        chat._client = self  # type: ignore[assignment]  # each client matches its class
        return chat


# What httpx raises for a failed exchange; `_typed` turns each into aigen's error.
_HTTPX_ERRORS = (httpx.TransportError, httpx.DecodingError)


def _typed(call: GenerationCall, exc: Exception) -> GenerationError:
    """httpx's exception as aigen's, so none escapes untyped."""
    if isinstance(exc, httpx.TimeoutException):
        return call.timeout_error(exc)
    if isinstance(exc, httpx.TransportError):
        return call.connection_error(exc)
    return call.undecodable_body(exc)


# Plain `with` blocks for a call without a slot to hold: a generator-based context
# manager costs microseconds, a tenth of the overhead aigen allows itself on a small call.
_NO_SLOT = nullcontext()


def prepare_batch(
    requests: Iterable[GenerationRequest | str], concurrency: int
) -> list[GenerationRequest]:
    """Validate a whole batch before any of it is sent."""
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be 1 or more, got {concurrency}")
    return [as_request(request, {}) for request in requests]


def finished(
    results: list[GenerationResponse | GenerationError | None],
) -> list[GenerationResponse | GenerationError]:
    """The batch's results, every slot filled."""
    return [result for result in results if result is not None]


def no_free_slot() -> APITimeoutError:
    """The error for a call that found no free `max_concurrency` slot before its deadline."""
    return held_back(
        APITimeoutError("no free max_concurrency slot before the deadline; nothing was sent")
    )


def _headers(response: httpx.Response) -> dict[str, str]:
    """The answer's headers as the core reads them: httpx's items() are already
    lower-cased, with repeated headers joined by ", "."""
    return dict(response.headers.items())


def _already_read(
    call: GenerationCall, response: httpx.Response, headers: dict[str, str]
) -> BodyReader | None:
    """A reader holding the body when a transport handed it over already read (httpx's
    `MockTransport` does), else `None`: then the body is still to be streamed."""
    if not response.is_stream_consumed:
        return None
    # httpx has already inflated it: it must not be inflated twice.
    reader = call.body_reader({k: v for k, v in headers.items() if k != "content-encoding"})
    reader.feed(response.content)
    return reader


class Client(_BaseClient[Conversation]):
    """The synchronous client, for Flask, Django and scripts; safe to share across threads.

    Keywords (all optional): `provider` (`"gemini"`, `"openai"` or a `Provider`),
    `api_key`, `base_url`, `model`, `timeout` (seconds per attempt, or an `httpx.Timeout`),
    `max_retries` (a shortcut for `retry=RetryPolicy(max_retries=...)`), `retry`,
    `http_client` (your own `httpx.Client`; aigen will not close it),
    `allow_insecure_http`, `max_response_bytes`, and the protections `rate_limit`
    (a `RateLimit`), `circuit_breaker` (a `CircuitBreaker`) and `max_concurrency`. See
    docs/configuration.md for which environment variables fill them in.
    """

    _conversation_class = Conversation

    def __init__(
        self,
        *,
        provider: str | Provider | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rate_limit: RateLimit | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(
            provider=provider,
            api_key=api_key,
            base_url=base_url,
            model=model,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            max_response_bytes=max_response_bytes,
            rate_limit=rate_limit,
            circuit_breaker=circuit_breaker,
            max_concurrency=max_concurrency,
        )
        self._owns_http_client = http_client is None
        self._http = http_client or httpx.Client(timeout=self._timeout, limits=_POOL_LIMITS)
        self._sleep: Callable[[float], None] = time.sleep
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None

    def generate(
        self, request: GenerationRequest | str, /, **fields: Unpack[GenerationFields]
    ) -> GenerationResponse:
        """Generate one image, retrying as the policy allows.

        Takes a `GenerationRequest`, or a prompt plus any of its fields as keywords.
        Raises a `GenerationError` subclass when the call fails for good.
        """
        call = self._engine.start(request, fields)
        with call.tracked(), self._slot(call):
            try:
                return self._attempt(call)
            except GenerationError as error:
                first_failure = error  # retried below, outside this handler's context
            retrying: Retrying = call.retry_loop.build(Retrying, self._sleep)
            return retrying(call.retry_loop.resume_after(first_failure, self._attempt), call)

    def generate_many(
        self,
        requests: Iterable[GenerationRequest | str],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> list[GenerationResponse | GenerationError]:
        """Generate many images on `concurrency` threads; results in input order.

        Each item is the `GenerationResponse`, or the `GenerationError` that call ended
        with: one failure never loses the others. Every request is validated before any is
        sent. `on_progress(done, total)` is called on this thread as calls finish.
        """
        batch = prepare_batch(requests, concurrency)
        results: list[GenerationResponse | GenerationError | None] = [None] * len(batch)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="aigen-batch") as pool:
            futures = {pool.submit(self._settle, item): i for i, item in enumerate(batch)}
            try:
                for done, future in enumerate(as_completed(futures), start=1):
                    results[futures[future]] = future.result()
                    if on_progress is not None:
                        on_progress(done, len(batch))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return finished(results)

    def _settle(self, request: GenerationRequest) -> GenerationResponse | GenerationError:
        try:
            return self.generate(request)
        except GenerationError as error:
            return error

    def _slot(self, call: GenerationCall) -> AbstractContextManager[None]:
        """Hold one of `max_concurrency` slots for the whole call (if there is a limit)."""
        return _NO_SLOT if self._slots is None else self._held_slot(call)

    @contextmanager
    def _held_slot(self, call: GenerationCall) -> Iterator[None]:
        assert self._slots is not None
        if not self._slots.acquire(timeout=call.time_left()):
            raise call.stamp(no_free_slot())
        try:
            yield
        finally:
            self._slots.release()

    def _attempt(self, call: GenerationCall) -> GenerationResponse:
        delay = call.admission_delay()
        if delay:
            self._sleep(delay)
        request = self._http_request(self._http, call.next_attempt(), self._attempt_timeout(call))
        try:
            response = self._http.send(request, stream=True)
            headers = _headers(response)
            try:
                reader = _already_read(call, response, headers)
                if reader is None:
                    reader = call.body_reader(headers)
                    for chunk in response.iter_raw():
                        reader.feed(chunk)
            finally:
                response.close()
        except _HTTPX_ERRORS as exc:
            raise _typed(call, exc) from exc
        return call.handle_response(HttpResponse(response.status_code, headers, reader.body()))

    def close(self) -> None:
        """Close the connection pool (not a `http_client` you passed in)."""
        if self._owns_http_client:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_BaseClient[AsyncConversation]):
    """The asynchronous client, for FastAPI and workers; share one across many tasks.

    Takes the same keywords as `Client`, with `http_client` an `httpx.AsyncClient`.
    """

    _conversation_class = AsyncConversation

    def __init__(
        self,
        *,
        provider: str | Provider | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rate_limit: RateLimit | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(
            provider=provider,
            api_key=api_key,
            base_url=base_url,
            model=model,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            max_response_bytes=max_response_bytes,
            rate_limit=rate_limit,
            circuit_breaker=circuit_breaker,
            max_concurrency=max_concurrency,
        )
        # asyncio is imported here, not at the top: `import aigen` in a sync app (or the
        # CLI) should not pay the 5 ms asyncio takes to import.
        import asyncio

        self._owns_http_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._timeout, limits=_POOL_LIMITS)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    async def generate(
        self, request: GenerationRequest | str, /, **fields: Unpack[GenerationFields]
    ) -> GenerationResponse:
        """Generate one image, retrying as the policy allows (see `Client.generate`)."""
        call = self._engine.start(request, fields)
        with call.tracked():
            async with self._slot(call):
                try:
                    return await self._attempt(call)
                except GenerationError as error:
                    first_failure = error  # retried below, outside this handler's context
                retrying: AsyncRetrying = call.retry_loop.build(AsyncRetrying, self._sleep)
                attempt = call.retry_loop.resume_after_async(first_failure, self._attempt)
                return await retrying(attempt, call)

    async def generate_many(
        self,
        requests: Iterable[GenerationRequest | str],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> list[GenerationResponse | GenerationError]:
        """Generate many images, `concurrency` at a time; results in input order.

        Each item is the `GenerationResponse`, or the `GenerationError` that call ended
        with: one failure never loses the others. Every request is validated before any is
        sent. `on_progress(done, total)` is called as calls finish.
        """
        import asyncio

        batch = prepare_batch(requests, concurrency)
        gate = asyncio.Semaphore(concurrency)
        done = 0

        async def settle(request: GenerationRequest) -> GenerationResponse | GenerationError:
            nonlocal done
            async with gate:
                try:
                    result: GenerationResponse | GenerationError = await self.generate(request)
                except GenerationError as error:
                    result = error
            done += 1
            if on_progress is not None:
                on_progress(done, len(batch))
            return result

        tasks = [asyncio.ensure_future(settle(item)) for item in batch]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _slot(self, call: GenerationCall) -> AbstractAsyncContextManager[None]:
        """Hold one of `max_concurrency` slots for the whole call (if there is a limit)."""
        return _NO_SLOT if self._slots is None else self._held_slot(call)

    @asynccontextmanager
    async def _held_slot(self, call: GenerationCall) -> AsyncIterator[None]:
        import asyncio

        assert self._slots is not None
        try:
            await asyncio.wait_for(self._slots.acquire(), call.time_left())
        except asyncio.TimeoutError:
            raise call.stamp(no_free_slot()) from None
        try:
            yield
        finally:
            self._slots.release()

    async def _attempt(self, call: GenerationCall) -> GenerationResponse:
        delay = call.admission_delay()
        if delay:
            await self._sleep(delay)
        request = self._http_request(self._http, call.next_attempt(), self._attempt_timeout(call))
        try:
            response = await self._http.send(request, stream=True)
            headers = _headers(response)
            try:
                reader = _already_read(call, response, headers)
                if reader is None:
                    reader = call.body_reader(headers)
                    async for chunk in response.aiter_raw():
                        reader.feed(chunk)
            finally:
                await response.aclose()
        except _HTTPX_ERRORS as exc:
            raise _typed(call, exc) from exc
        return call.handle_response(HttpResponse(response.status_code, headers, reader.body()))

    async def aclose(self) -> None:
        """Close the connection pool (not a `http_client` you passed in)."""
        if self._owns_http_client:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
