"""`Client`: the driver that carries out a call's flow with `httpx.Client` and
`time.sleep`, and the public methods around it. Every decision is the flow's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
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
from ._conversation import Conversation
from ._errors import GenerationError
from ._flow import generation_flow
from ._http import HttpResponse
from ._models import GenerationFields, GenerationRequest, GenerationResponse
from ._ratelimit import RateLimit
from ._retry import RetryPolicy
from ._transport import DefaultHttpxClient, exchange_deadline
from .providers import AnyProvider

__all__ = ["Client"]

T = TypeVar("T")


class CallAbandoned(BaseException):
    """Thrown into a flow whose caller stopped listening (a stream left early)."""


class Client(BaseClient[Conversation]):
    """The synchronous client, for Flask, Django and scripts; safe to share across threads.

    Keywords (all optional): `provider` (`"gemini"`, `"openai"` or a `Provider`),
    `api_key`, `base_url`, `model`, `timeout` (seconds per attempt, or an `httpx.Timeout`),
    `max_retries` (a shortcut for `retry=RetryPolicy(max_retries=...)`), `retry`,
    `http_client` (your own `httpx.Client`, best made with `aigen.DefaultHttpxClient`;
    aigen will not close it), `allow_insecure_http`, `max_response_bytes`, and the
    protections `rate_limit` (a `RateLimit`), `circuit_breaker` (a `CircuitBreaker`) and
    `max_concurrency`. See docs/configuration.md for which environment variables fill
    them in.
    """

    _conversation_class = Conversation

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
        self._http = http_client or DefaultHttpxClient(timeout=self._timeout)
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None

    def generate(
        self, request: GenerationRequest | str, /, **fields: Unpack[GenerationFields]
    ) -> GenerationResponse:
        """Generate one image, retrying as the policy allows.

        Takes a `GenerationRequest`, or a prompt plus any of its fields as keywords.
        Raises a `GenerationError` subclass when the call fails for good.
        """
        if self._http.is_closed:
            raise closed_client(self)
        return self._run(generation_flow(self._engine.start(request, fields)))

    def generate_many(
        self,
        requests: Iterable[GenerationRequest | str],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> list[Result]:
        """Generate many images on `concurrency` threads; results in input order.

        Each item is the `GenerationResponse`, or the `GenerationError` that call ended
        with: one failure never loses the others. Every request is validated before any is
        sent. `on_progress(done, total)` is called on this thread as calls finish.
        """
        batch = prepare_batch(requests, concurrency)
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

    def _run(self, flow: Flow[T]) -> T:
        """Carry out a flow that emits no events, and return its result."""
        for item in self._drive(flow):
            if type(item) is Done:
                return item.value  # type: ignore[no-any-return]
        raise AssertionError("a flow's driver always ends with Done")  # pragma: no cover

    def _drive(self, flow: Flow[T]) -> Iterator[object]:
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
                            self._abandon(flow, stream)
                            raise
                    else:
                        reply = self._perform(action, stream)
                except HTTPX_ERRORS as exc:
                    error = transport_failure(exc)
                except BaseException as exc:  # a flow cleans up after anything, then re-raises
                    error = exc
        finally:
            stream.close()

    def _perform(self, action: Action, stream: _Stream) -> Any:
        if type(action) is Send:
            return self._send(action)
        if type(action) is AskStore:
            return action.op.run(action.store)
        if type(action) is Sleep:
            return self._engine.clock.sleep(action.seconds)
        if type(action) is TakeSlot:
            assert self._slots is not None
            return self._slots.acquire(timeout=action.timeout)
        if type(action) is ReturnSlot:
            assert self._slots is not None
            return self._slots.release()
        if type(action) is OpenStream:
            request = self._httpx_request(self._http, action.request, action.time_left)
            return stream.open(self._http.send(request, stream=True))
        if type(action) is ReadChunk:
            return next(stream.chunks, b"")
        raise TypeError(f"not an action for Client: {action!r}")

    def _send(self, action: Send) -> HttpResponse:
        request = self._httpx_request(self._http, action.request, action.time_left)
        with exchange_deadline(_monotonic_deadline(action.time_left)):
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

    def _abandon(self, flow: Flow[T], stream: _Stream) -> None:
        """Let a flow whose caller left clean up (its slot, its reservation)."""
        try:
            action = flow.throw(CallAbandoned())
            while True:
                action = flow.send(self._perform(action, stream))
        except (CallAbandoned, StopIteration, GenerationError):
            pass

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


def _monotonic_deadline(time_left: float | None) -> float | None:
    """The instant on the real monotonic clock when an exchange must end."""
    return None if time_left is None else time.monotonic() + time_left


class _Stream:
    """The streamed answer a flow has open (one at a time), closed when the flow ends."""

    def __init__(self) -> None:
        self._response: httpx.Response | None = None
        self.chunks: Iterator[bytes] = iter(())

    def open(self, response: httpx.Response) -> StreamHead:
        self.close()  # a retry's new stream replaces the one before
        self._response, self.chunks = response, response.iter_raw()
        return StreamHead(response.status_code, dict(response.headers.items()))

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
