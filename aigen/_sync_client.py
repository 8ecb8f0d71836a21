"""`Client`: the driver that carries out a call's flow with `httpx.Client` and
`time.sleep`, and the public methods around it. Every decision is the flow's."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx
from typing_extensions import Self, Unpack

from . import _actions as act
from ._client import BaseClient, Batch, ClientOptions, OnProgress, Result
from ._constants import DEFAULT_BATCH_CONCURRENCY
from ._conversation import Conversation
from ._deadline import exchange_deadline
from ._driving import Stepper, body_of, monotonic_deadline
from ._errors import GenerationError
from ._flow import generation_flow
from ._hooks import HookEvent, Hooks, hook_failed
from ._http import HttpResponse
from ._models import GenerationFields, GenerationRequest, GenerationResponse
from ._transport import DefaultHttpxClient

__all__ = ["Client"]

T = TypeVar("T")


class Client(BaseClient[Conversation]):
    """The synchronous client, for Flask, Django and scripts; safe to share across threads.

    Keywords (all optional): `provider` (`"gemini"`, `"openai"` or a `Provider`),
    `api_key`, `base_url`, `model`, `timeout` (seconds per attempt, or an `httpx.Timeout`),
    `max_retries` (a shortcut for `retry=RetryPolicy(max_retries=...)`), `retry`,
    `http_client` (your own `httpx.Client`, best made with `aigen.DefaultHttpxClient`;
    aigen will not close it), `allow_insecure_http`, `max_response_bytes`, and the
    protections `rate_limit` (a `RateLimit`), `circuit_breaker` (a `CircuitBreaker`) and
    `max_concurrency`. Their defaults are `BaseClient`'s; docs/configuration.md says which
    environment variables fill them in.
    """

    _conversation_class = Conversation

    def __init__(
        self, *, http_client: httpx.Client | None = None, **options: Unpack[ClientOptions]
    ) -> None:
        super().__init__(**options)
        if self._engine.settings.hooks is not None:
            self._engine.settings.hooks.check_sync()
        self._owns_http_client = http_client is None
        self._http = http_client or DefaultHttpxClient(timeout=self._timeout)
        limit = self._engine.settings.max_concurrency
        self._slots = threading.BoundedSemaphore(limit) if limit else None
        self._pid = os.getpid()
        self._forsaken: list[httpx.Client] = []  # pools inherited through os.fork()

    def _check_fork(self) -> None:
        """In a child of `os.fork()` (gunicorn --preload, Celery prefork), start afresh: the
        kept-alive sockets inherited from the parent are the parent's too, and two processes
        reading one socket get each other's answers. As redis-py's ConnectionPool does."""
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        if self._owns_http_client:
            # Never closed here: closing would shut the parent's TLS sessions down. It is
            # kept, unused, so that collecting it cannot touch those sockets either.
            self._forsaken.append(self._http)
            self._http = DefaultHttpxClient(timeout=self._timeout)
        limit = self._engine.settings.max_concurrency
        # A slot taken by a parent's thread at the fork would never be given back here.
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    def generate(
        self, request: GenerationRequest | str, /, **fields: Unpack[GenerationFields]
    ) -> GenerationResponse:
        """Generate one image, retrying as the policy allows.

        Takes a `GenerationRequest`, or a prompt plus any of its fields as keywords.
        Raises a `GenerationError` subclass when the call fails for good.
        """
        self._check_fork()
        if self._http.is_closed:
            raise self._closed_error()
        return self._run(generation_flow(self._engine.start(request, fields)))

    def generate_many(
        self,
        requests: Batch,
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        on_progress: OnProgress = None,
    ) -> list[Result]:
        """Generate many images on `concurrency` threads; results in input order.

        Each item is the `GenerationResponse`, or the `GenerationError` that call ended
        with: one failure never loses the others. Every request is validated before any is
        sent. `on_progress(done, total)` is called on this thread as calls finish.
        """
        batch = self._prepared(requests, concurrency)
        results: list[Result | None] = [None] * len(batch)
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
        return [result for result in results if result is not None]

    def _settle(self, request: GenerationRequest) -> Result:
        try:
            return self.generate(request)
        except GenerationError as error:
            return error

    # -- the driver ------------------------------------------------------------------------

    def _run(self, flow: act.Flow[T]) -> T:
        """Carry out a flow and return its result (a streaming caller's events dropped)."""
        last: object = None
        for last in self._drive(flow):  # noqa: B007 (only the last, Done, matters)
            pass
        return cast(act.Done[T], last).value

    def _drive(self, flow: act.Flow[T]) -> Iterator[object]:
        """Perform each action `flow` yields and send back its reply (or throw its failure
        in); yield each event the flow emits, and last `Done(result)`."""
        steps = Stepper(flow)
        with _Run() as run:
            while (action := steps.next()) is not None:
                try:
                    if type(action) is act.Emit and not steps.abandoned:
                        steps.reply((yield action.event))
                    else:
                        steps.reply(self._perform(action, run))
                except BaseException as exc:  # the flow cleans up after anything, re-raises
                    steps.fail(exc)
        if not steps.abandoned:
            yield act.Done(steps.result)

    def _perform(self, action: act.Action, run: _Run) -> Any:
        """Carry out one action: `_do_<verb>`, the only places `Client` does I/O."""
        try:
            return getattr(self, "_do_" + action.verb)(action, run)
        except RuntimeError as exc:  # httpx's, for a pool closed meanwhile
            raise (self._closed_error() if self._http.is_closed else exc) from exc

    def _do_send(self, action: act.Send, run: _Run) -> HttpResponse:
        request = self._httpx_request(self._http, action.request, action.time_left)
        with exchange_deadline(monotonic_deadline(action.time_left)):
            response = self._http.send(request, stream=True)
            try:
                headers = dict(response.headers.items())
                reader = body_of(action, response, headers)
                if not response.is_stream_consumed:
                    for chunk in response.iter_raw():
                        reader.feed(chunk)
            finally:
                response.close()
        return HttpResponse(response.status_code, headers, reader.body())

    def _do_ask_store(self, action: act.AskStore, run: _Run) -> Any:
        return action.op.run(action.store)

    def _do_sleep(self, action: act.Sleep, run: _Run) -> None:
        self._engine.clock.sleep(action.seconds)

    def _do_take_slot(self, action: act.TakeSlot, run: _Run) -> bool:
        return cast(threading.BoundedSemaphore, self._slots).acquire(timeout=action.timeout)

    def _do_return_slot(self, action: act.ReturnSlot, run: _Run) -> None:
        cast(threading.BoundedSemaphore, self._slots).release()

    def _do_open_stream(self, action: act.OpenStream, run: _Run) -> act.StreamHead:
        request = self._httpx_request(self._http, action.request, action.time_left)
        with exchange_deadline(monotonic_deadline(action.time_left)):
            return run.open(self._http.send(request, stream=True))

    def _do_read_chunk(self, action: act.ReadChunk, run: _Run) -> bytes:
        with exchange_deadline(monotonic_deadline(action.time_left)):
            return next(run.chunks, b"")

    def _do_notify(self, action: act.Notify, run: _Run) -> None:
        event = cast(HookEvent, action.event)
        hook = cast(Hooks, self._engine.settings.hooks).for_event(event)
        if hook is None:
            return
        try:
            hook(event)
        except Exception:  # a hook's failure is the app's to see, never the call's
            hook_failed(event)

    def _do_emit(self, action: act.Emit, run: _Run) -> None:
        """An event once the caller has gone: nobody to hand it to."""

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


class _Run:
    """One flow's run: the streamed answer it has open (one at a time), closed when the
    flow ends."""

    def __init__(self) -> None:
        self._response: httpx.Response | None = None
        self.chunks: Iterator[bytes] = iter(())

    def open(self, response: httpx.Response) -> act.StreamHead:
        self.close()  # a retry's new stream replaces the one before
        self._response, self.chunks = response, response.iter_raw()
        return act.StreamHead(response.status_code, dict(response.headers.items()))

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
