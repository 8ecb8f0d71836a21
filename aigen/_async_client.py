"""`AsyncClient`: the driver that carries out a call's flow with `httpx.AsyncClient` and
`asyncio.sleep`, and the public methods around it. Every decision is the flow's."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import httpx
from typing_extensions import Self, Unpack

from ._actions import (
    Action,
    AskStore,
    Done,
    Emit,
    Flow,
    OpenStream,
    ReadChunk,
    ReturnSlot,
    Send,
    Sleep,
    StreamHead,
    TakeSlot,
)
from ._circuit import CircuitBreaker
from ._client import (
    HTTPX_ERRORS,
    BaseClient,
    Result,
    body_of,
    closed_client,
    prepare_batch,
    transport_failure,
)
from ._constants import DEFAULT_BATCH_CONCURRENCY, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT
from ._conversation import AsyncConversation
from ._errors import ConfigurationError, GenerationError
from ._flow import generation_flow
from ._http import HttpResponse
from ._models import GenerationFields, GenerationRequest, GenerationResponse
from ._ratelimit import RateLimit
from ._retry import RetryPolicy
from ._sync_client import CallAbandoned, _monotonic_deadline
from ._transport import DefaultAsyncHttpxClient, exchange_deadline
from .providers import AnyProvider

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(BaseClient[AsyncConversation]):
    """The asynchronous client, for FastAPI and workers; share one across many tasks.

    Takes the same keywords as `Client`, with `http_client` an `httpx.AsyncClient` (best
    made with `aigen.DefaultAsyncHttpxClient`).
    """

    _conversation_class = AsyncConversation

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
        self._owns_http_client = http_client is None
        self._http = http_client or DefaultAsyncHttpxClient(timeout=self._timeout)
        self._max_concurrency = max_concurrency
        # What belongs to one event loop: the pool's connections and the slots' semaphore.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop_guard: AsyncGenerator[None, None] | None = None
        self._closed = False

    async def generate(
        self, request: GenerationRequest | str, /, **fields: Unpack[GenerationFields]
    ) -> GenerationResponse:
        """Generate one image, retrying as the policy allows (see `Client.generate`)."""
        self._enter_loop()
        return await self._run(generation_flow(self._engine.start(request, fields)))

    async def generate_many(
        self,
        requests: Iterable[GenerationRequest | str],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> list[Result]:
        """Generate many images, `concurrency` at a time; results in input order.

        Each item is the `GenerationResponse`, or the `GenerationError` that call ended
        with: one failure never loses the others. Every request is validated before any is
        sent. `on_progress(done, total)` is called as calls finish.
        """
        batch = prepare_batch(requests, concurrency)
        gate = asyncio.Semaphore(concurrency)
        done = 0

        async def settle(request: GenerationRequest) -> Result:
            nonlocal done
            async with gate:
                try:
                    result: Result = await self.generate(request)
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

    def _enter_loop(self) -> None:
        """Check the client is open, and give a new event loop its own pool and slots."""
        if self._closed or (self._http.is_closed and not self._owns_http_client):
            raise closed_client(self)
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is not None:
            if not self._owns_http_client:
                raise ConfigurationError(
                    "this AsyncClient's http_client was used on another event loop, and its "
                    "connections belong to that loop: make one http_client (and AsyncClient) "
                    "per event loop, e.g. in your app's startup"
                )
            # aigen's own pool: a fresh one for this loop (the last loop's closed with it).
            self._http = DefaultAsyncHttpxClient(timeout=self._timeout)
        self._loop = loop
        if self._max_concurrency:
            self._slots = asyncio.Semaphore(self._max_concurrency)
        if self._owns_http_client:
            # An async generator left open is closed by the loop as it shuts down
            # (asyncio.run, pytest-asyncio): it closes this loop's connections then,
            # while the loop can still close them.
            self._loop_guard = _close_at_loop_end(self._http)
            with contextlib.suppress(StopIteration):  # the generator is at its yield
                self._loop_guard.asend(None).send(None)

    # -- the driver ------------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        """Carry out a flow that emits no events, and return its result."""
        async for item in self._drive(flow):
            if type(item) is Done:
                return item.value  # type: ignore[no-any-return]
        raise AssertionError("a flow's driver always ends with Done")  # pragma: no cover

    async def _drive(self, flow: Flow[T]) -> AsyncIterator[object]:
        """Perform each action `flow` yields, send back the reply (or throw the failure
        in), yield each event it emits, and last `Done(result)`."""
        reply: Any = None
        error: BaseException | None = None
        stream = _Stream()
        try:
            while True:
                try:
                    action = flow.send(reply) if error is None else flow.throw(error)
                except StopIteration as done:
                    yield Done(done.value)
                    return
                reply = error = None
                try:
                    if type(action) is Emit:
                        try:
                            yield action.event
                        except GeneratorExit:
                            await self._abandon(flow, stream)
                            raise
                    else:
                        reply = await self._perform(action, stream)
                except HTTPX_ERRORS as exc:
                    error = transport_failure(exc)
                except BaseException as exc:  # a flow cleans up after anything, then re-raises
                    error = exc
        finally:
            await stream.aclose()

    async def _perform(self, action: Action, stream: _Stream) -> Any:
        if type(action) is Send:
            return await self._send(action)
        if type(action) is AskStore:
            return await action.op.arun(action.store)
        if type(action) is Sleep:
            return await self._engine.clock.asleep(action.seconds)
        if type(action) is TakeSlot:
            assert self._slots is not None
            try:
                return await _within(self._slots.acquire(), action.timeout)
            except asyncio.TimeoutError:
                return False
        if type(action) is ReturnSlot:
            assert self._slots is not None
            return self._slots.release()
        if type(action) is OpenStream:
            request = self._httpx_request(self._http, action.request, action.time_left)
            return await stream.open(await self._http.send(request, stream=True))
        if type(action) is ReadChunk:
            return await anext(stream.chunks, b"")
        raise TypeError(f"not an action for AsyncClient: {action!r}")

    async def _send(self, action: Send) -> HttpResponse:
        request = self._httpx_request(self._http, action.request, action.time_left)
        with exchange_deadline(_monotonic_deadline(action.time_left)):
            response = await self._http.send(request, stream=True)
            try:
                headers = dict(response.headers.items())
                reader = body_of(action, response, headers)
                if not response.is_stream_consumed:
                    async for chunk in response.aiter_raw():
                        reader.feed(chunk)
            finally:
                await response.aclose()
        return HttpResponse(response.status_code, headers, reader.body())

    async def _abandon(self, flow: Flow[T], stream: _Stream) -> None:
        """Let a flow whose caller left clean up (its slot, its reservation)."""
        try:
            action = flow.throw(CallAbandoned())
            while True:
                action = flow.send(await self._perform(action, stream))
        except (CallAbandoned, StopIteration, GenerationError):
            pass

    async def aclose(self) -> None:
        """Close the connection pool (not a `http_client` you passed in)."""
        self._closed = True
        if self._loop_guard is not None:
            await self._loop_guard.aclose()  # which closes the pool
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


async def _within(awaitable: Any, seconds: float | None) -> Any:
    """`await awaitable`, raising `asyncio.TimeoutError` after `seconds` (`None`: never)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover (Python 3.10)


class _Stream:
    """The streamed answer a flow has open (one at a time), closed when the flow ends."""

    def __init__(self) -> None:
        self._response: httpx.Response | None = None
        self.chunks: AsyncIterator[bytes] = _nothing()

    async def open(self, response: httpx.Response) -> StreamHead:
        await self.aclose()  # a retry's new stream replaces the one before
        self._response, self.chunks = response, response.aiter_raw()
        return StreamHead(response.status_code, dict(response.headers.items()))

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None


async def _close_at_loop_end(http: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Never finishes on its own; closing it (as a loop shutting down does) closes `http`."""
    try:
        yield
    finally:
        await http.aclose()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover
