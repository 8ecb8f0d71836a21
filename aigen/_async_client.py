"""`AsyncClient`: the driver that carries out a call's flow with `httpx.AsyncClient` and
`asyncio.sleep`, and the public methods around it. Every decision is the flow's."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import weakref
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
from ._hooks import HookEvent, Hooks, hook_failed
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
        # What belongs to one event loop (its pool, its slots), for each loop in use.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPart] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False
        self._used = False  # whether a loop has used the client yet
        self._pid = os.getpid()
        self._forsaken: list[object] = []  # what was inherited through os.fork()

    async def generate(
        self, request: GenerationRequest | str, /, **fields: Unpack[GenerationFields]
    ) -> GenerationResponse:
        """Generate one image, retrying as the policy allows (see `Client.generate`)."""
        part = self._loop_part()
        return await self._run(generation_flow(self._engine.start(request, fields)), part)

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

    def _loop_part(self) -> _LoopPart:
        """What this event loop's calls use: its own pool (for aigen's pool) and slots."""
        if self._closed or (self._http.is_closed and not self._owns_http_client):
            raise self._closed_error()
        if os.getpid() != self._pid:
            self._after_fork()
        loop = asyncio.get_running_loop()
        part = self._loops.get(loop)
        if part is None:
            first = not self._loops and not self._used
            self._used = True
            http = self._http
            if self._owns_http_client and not first:
                # Connections belong to the loop that opened them: a fresh pool here
                # (the last loop's closed as that loop ended, or serves it still).
                http = DefaultAsyncHttpxClient(timeout=self._timeout)
            limit = self._engine.settings.max_concurrency
            part = self._loops[loop] = _LoopPart(
                http, asyncio.Semaphore(limit) if limit else None, first=first
            )
            if self._owns_http_client:
                part.close_with_loop()
        return part

    def _after_fork(self) -> None:
        """In a child of `os.fork()`, forget every loop's pool and slots: their kept-alive
        sockets are the parent's too (see `Client._check_fork`). Nothing inherited is
        closed (that would shut the parent's TLS sessions down) or left to be collected."""
        self._pid = os.getpid()
        parts = list(self._loops.values())
        for part in parts:
            part.forsaken = True  # its loop's shutdown, if the child runs it, leaves it be
        self._forsaken += [self._http, *parts]
        self._loops = weakref.WeakKeyDictionary()
        if self._owns_http_client:
            self._http = DefaultAsyncHttpxClient(timeout=self._timeout)
            self._used = False  # the new pool is the first loop's, as in a fresh client

    # -- the driver ------------------------------------------------------------------------

    async def _run(self, flow: act.Flow[T], part: _LoopPart) -> T:
        """Carry out a flow and return its result (a streaming caller's events dropped)."""
        last: object = None
        async for last in self._drive(flow, part):  # noqa: B007 (only the last, Done, matters)
            pass
        return cast(act.Done[T], last).value

    async def _drive(self, flow: act.Flow[T], part: _LoopPart) -> AsyncIterator[object]:
        """Perform each action `flow` yields and send back its reply (or throw its failure
        in); yield each event the flow emits, and last `Done(result)`."""
        steps = Stepper(flow)
        async with _Run(part) as run:
            while (action := steps.next()) is not None:
                try:
                    if type(action) is act.Emit and not steps.abandoned:
                        steps.reply((yield action.event))
                    else:
                        steps.reply(await self._perform(action, run))
                except BaseException as exc:  # the flow cleans up after anything, re-raises
                    steps.fail(exc)
        if not steps.abandoned:
            yield act.Done(steps.result)

    async def _perform(self, action: act.Action, run: _Run) -> Any:
        """Carry out one action: `_do_<verb>`, the only places `AsyncClient` does I/O."""
        try:
            return await getattr(self, "_do_" + action.verb)(action, run)
        except RuntimeError as exc:  # httpx's, for a pool it cannot use
            raise self._unusable_pool(run, exc) from exc

    async def _do_send(self, action: act.Send, run: _Run) -> HttpResponse:
        request = self._httpx_request(run.http, action.request, action.time_left)
        with exchange_deadline(monotonic_deadline(action.time_left)):
            response = await run.http.send(request, stream=True)
            try:
                headers = dict(response.headers.items())
                reader = body_of(action, response, headers)
                if not response.is_stream_consumed:
                    async for chunk in response.aiter_raw():
                        reader.feed(chunk)
            finally:
                await response.aclose()
        return HttpResponse(response.status_code, headers, reader.body())

    async def _do_ask_store(self, action: act.AskStore, run: _Run) -> Any:
        return await action.op.arun(action.store)

    async def _do_sleep(self, action: act.Sleep, run: _Run) -> None:
        await self._engine.clock.asleep(action.seconds)

    async def _do_take_slot(self, action: act.TakeSlot, run: _Run) -> bool:
        try:
            await _within(cast(asyncio.Semaphore, run.slots).acquire(), action.timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _do_return_slot(self, action: act.ReturnSlot, run: _Run) -> None:
        cast(asyncio.Semaphore, run.slots).release()

    async def _do_open_stream(self, action: act.OpenStream, run: _Run) -> act.StreamHead:
        request = self._httpx_request(run.http, action.request, action.time_left)
        with exchange_deadline(monotonic_deadline(action.time_left)):
            return await run.open(await run.http.send(request, stream=True))

    async def _do_read_chunk(self, action: act.ReadChunk, run: _Run) -> bytes:
        with exchange_deadline(monotonic_deadline(action.time_left)):
            return await anext(run.chunks, b"")

    async def _do_notify(self, action: act.Notify, run: _Run) -> None:
        event = cast(HookEvent, action.event)
        hook = cast(Hooks, self._engine.settings.hooks).for_event(event)
        if hook is None:
            return
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a hook's failure is the app's to see, never the call's
            hook_failed(event)

    async def _do_emit(self, action: act.Emit, run: _Run) -> None:
        """An event once the caller has gone: nobody to hand it to."""

    def _unusable_pool(self, run: _Run, cause: RuntimeError) -> Exception:
        """An aigen error for httpx's `RuntimeError` about the pool, or the error itself."""
        if run.http.is_closed:
            return self._closed_error()
        if not run.part.first:
            return ConfigurationError(
                "this AsyncClient's http_client was first used on another event loop, and "
                f"its connections cannot serve this one ({cause}): make one http_client "
                "(and AsyncClient) per event loop, e.g. in your app's startup"
            )
        return cause

    async def aclose(self) -> None:
        """Close the connection pool (not a `http_client` you passed in)."""
        self._closed = True
        if not self._owns_http_client:
            return
        part = self._loops.pop(asyncio.get_running_loop(), None)
        if part is not None:
            await part.aclose()
        # Other loops' pools close as those loops shut down; the first may not be in use.
        if not any(p.http is self._http for p in self._loops.values()):
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


class _LoopPart:
    """What one event loop's calls share: a pool and the `max_concurrency` slots."""

    def __init__(
        self, http: httpx.AsyncClient, slots: asyncio.Semaphore | None, *, first: bool
    ) -> None:
        self.http = http
        self.slots = slots
        self.first = first  # the loop the client was first used on
        self.forsaken = False  # inherited through os.fork(): never to be closed here
        self._guard: AsyncGenerator[None, None] | None = None

    def close_with_loop(self) -> None:
        """Close the pool as the loop shuts down: an async generator left open is closed
        by the loop then (asyncio.run, pytest-asyncio), while it can still close sockets."""
        self._guard = _close_at_loop_end(self)
        with contextlib.suppress(StopIteration):  # the generator is at its yield
            self._guard.asend(None).send(None)

    async def aclose(self) -> None:
        if self._guard is not None:
            await self._guard.aclose()  # which closes the pool
        await self.http.aclose()


class _Run:
    """One flow's run: its loop's part, and the streamed answer it has open (one at a
    time), closed when the flow ends."""

    def __init__(self, part: _LoopPart) -> None:
        self.part = part
        self.http = part.http
        self.slots = part.slots
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

    async def __aenter__(self) -> _Run:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _close_at_loop_end(part: _LoopPart) -> AsyncGenerator[None, None]:
    """Never finishes on its own; closing it (as a loop shutting down does) closes the
    part's pool, unless the part was inherited through os.fork()."""
    try:
        yield
    finally:
        if not part.forsaken:
            await part.http.aclose()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover
