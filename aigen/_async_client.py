"""`AsyncClient`: the driver that carries out a call's flow with `httpx.AsyncClient` and
`asyncio.sleep`, and the public methods around it. Every decision is the flow's."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx
from typing_extensions import Self, Unpack

from . import _actions as act
from ._client import BaseClient, Batch, ClientOptions, OnProgress, Result
from ._constants import DEFAULT_BATCH_CONCURRENCY
from ._conversation import AsyncConversation
from ._deadline import exchange_deadline
from ._driving import Stepper, body_of, monotonic_deadline
from ._errors import ConfigurationError, GenerationError
from ._flow import generation_flow
from ._http import HttpResponse
from ._models import GenerationFields, GenerationRequest, GenerationResponse
from ._transport import DefaultAsyncHttpxClient

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(BaseClient[AsyncConversation]):
    """The asynchronous client, for FastAPI and workers; share one across many tasks.

    Takes the same keywords as `Client`, with `http_client` an `httpx.AsyncClient` (best
    made with `aigen.DefaultAsyncHttpxClient`).
    """

    _conversation_class = AsyncConversation

    def __init__(
        self, *, http_client: httpx.AsyncClient | None = None, **options: Unpack[ClientOptions]
    ) -> None:
        super().__init__(**options)
        self._owns_http_client = http_client is None
        self._http = http_client or DefaultAsyncHttpxClient(timeout=self._timeout)
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
        requests: Batch,
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        on_progress: OnProgress = None,
    ) -> list[Result]:
        """Generate many images, `concurrency` at a time; results in input order.

        Each item is the `GenerationResponse`, or the `GenerationError` that call ended
        with: one failure never loses the others. Every request is validated before any is
        sent. `on_progress(done, total)` is called as calls finish.
        """
        batch = self._prepared(requests, concurrency)
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
            raise self._closed_error()
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
        if self._engine.settings.max_concurrency:
            self._slots = asyncio.Semaphore(self._engine.settings.max_concurrency)
        if self._owns_http_client:
            # An async generator left open is closed by the loop as it shuts down
            # (asyncio.run, pytest-asyncio): it closes this loop's connections then,
            # while the loop can still close them.
            self._loop_guard = _close_at_loop_end(self._http)
            with contextlib.suppress(StopIteration):  # the generator is at its yield
                self._loop_guard.asend(None).send(None)

    # -- the driver ------------------------------------------------------------------------

    async def _run(self, flow: act.Flow[T]) -> T:
        """Carry out a flow and return its result (a streaming caller's events dropped)."""
        last: object = None
        async for last in self._drive(flow):  # noqa: B007 (only the last, Done, matters)
            pass
        return cast(act.Done[T], last).value

    async def _drive(self, flow: act.Flow[T]) -> AsyncIterator[object]:
        """Perform each action `flow` yields and send back its reply (or throw its failure
        in); yield each event the flow emits, and last `Done(result)`."""
        steps = Stepper(flow)
        async with _Stream() as stream:
            while (action := steps.next()) is not None:
                try:
                    if type(action) is act.Emit and not steps.abandoned:
                        steps.reply((yield action.event))
                    else:
                        steps.reply(await self._perform(action, stream))
                except BaseException as exc:  # the flow cleans up after anything, re-raises
                    steps.fail(exc)
        if not steps.abandoned:
            yield act.Done(steps.result)

    async def _perform(self, action: act.Action, stream: _Stream) -> Any:
        """Carry out one action: `_do_<verb>`, the only places `AsyncClient` does I/O."""
        return await getattr(self, "_do_" + action.verb)(action, stream)

    async def _do_send(self, action: act.Send, stream: _Stream) -> HttpResponse:
        return await self._send(action)

    async def _do_ask_store(self, action: act.AskStore, stream: _Stream) -> Any:
        return await action.op.arun(action.store)

    async def _do_sleep(self, action: act.Sleep, stream: _Stream) -> None:
        await self._engine.clock.asleep(action.seconds)

    async def _do_take_slot(self, action: act.TakeSlot, stream: _Stream) -> bool:
        try:
            await _within(cast(asyncio.Semaphore, self._slots).acquire(), action.timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _do_return_slot(self, action: act.ReturnSlot, stream: _Stream) -> None:
        cast(asyncio.Semaphore, self._slots).release()

    async def _do_open_stream(self, action: act.OpenStream, stream: _Stream) -> act.StreamHead:
        request = self._httpx_request(self._http, action.request, action.time_left)
        return await stream.open(await self._http.send(request, stream=True))

    async def _do_read_chunk(self, action: act.ReadChunk, stream: _Stream) -> bytes:
        return await anext(stream.chunks, b"")

    async def _do_emit(self, action: act.Emit, stream: _Stream) -> None:
        """An event once the caller has gone: nobody to hand it to."""

    async def _send(self, action: act.Send) -> HttpResponse:
        request = self._httpx_request(self._http, action.request, action.time_left)
        with exchange_deadline(monotonic_deadline(action.time_left)):
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

    async def open(self, response: httpx.Response) -> act.StreamHead:
        await self.aclose()  # a retry's new stream replaces the one before
        self._response, self.chunks = response, response.aiter_raw()
        return act.StreamHead(response.status_code, dict(response.headers.items()))

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    async def __aenter__(self) -> _Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _close_at_loop_end(http: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Never finishes on its own; closing it (as a loop shutting down does) closes `http`."""
    try:
        yield
    finally:
        await http.aclose()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover
