"""A call as a flow of actions (aigen/_actions.py): every decision, no I/O.

`generation_flow(call)` is the whole of one `generate()`::

    breaker admits?  ──no──▶ CircuitOpenError
      │ yes
    max_concurrency slot (TakeSlot) ──none before the deadline──▶ APITimeoutError
      │
    attempt: limiter slot (AskStore Reserve, Sleep) ─▶ Send ─▶ 2xx? ─▶ provider reads it
      ▲                                                                 │ yes: response
      │                                                                 ▼ no: an error
      └── Sleep(n) ◀── tenacity.iter(state with the error) ─▶ DoSleep(n), or it raises
      │
    ReturnSlot, breaker told the outcome (AskStore Record)

Each client's driver performs the actions (aigen/_sync_client.py, aigen/_async_client.py),
so the two clients share every line of this. A provider with an `exchange()` flow
(aigen/providers/_steps.py) has each of its steps carried out here the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterable
from typing import Any, cast

from tenacity import DoSleep, RetryCallState

from ._actions import (
    AskStore,
    Emit,
    Flow,
    Notify,
    OpenStream,
    ReadChunk,
    ReturnSlot,
    Send,
    Sleep,
    StreamHead,
    TakeSlot,
    TransportFailure,
)
from ._body import too_large
from ._call import GenerationCall
from ._circuit import outcome_of, refusal
from ._errors import APITimeoutError, GenerationError, RateLimitError, held_back
from ._hooks import ErrorEvent, ResponseEvent
from ._http import HttpRequest, HttpResponse
from ._models import GenerationResponse
from ._store import CallOutcome, StoreOp
from .providers import ProviderAnswer
from .providers._steps import Exchange, NextChunk, Progress, ProviderFlow, Stream, Wait

__all__ = ["generation_flow"]


def generation_flow(call: GenerationCall) -> Flow[GenerationResponse]:
    """One `generate()`, from admission to the response (or the error it ends with)."""
    if call.hooks is None:
        return (yield from _protected(call))
    try:
        response = yield from _protected(call)
    except GenerationError as error:
        yield Notify(ErrorEvent(call.generation_id, error))
        raise
    yield Notify(ResponseEvent(call.generation_id, response))
    return response


def _protected(call: GenerationCall) -> Flow[GenerationResponse]:
    """The call within its protections: the breaker's word, a slot, the limiter's."""
    breaker = call.breaker
    if breaker is None:
        if call.settings.max_concurrency is None:  # no protection: the answer alone
            return call.finish((yield from _answer(call)))
        return (yield from _within_slot(call))
    # Wall time, as the limiter's: a store shared between hosts compares their clocks.
    verdict = yield AskStore(breaker.store, breaker.admit(call.clock.time()))
    if verdict.decision in ("open", "probing"):
        raise call.stamp(refusal(verdict))
    call.is_probe = verdict.decision == "probe"
    try:
        response = yield from _within_slot(call)
    except GeneratorExit:
        raise  # closed without a driver: there is no one left to ask the store
    except BaseException as error:
        # A cancelled call, like one aigen held back, tells the breaker nothing.
        outcome: CallOutcome = (
            outcome_of(error) if isinstance(error, GenerationError) else "nothing"
        )
        yield _record(call, outcome)
        raise
    yield _record(call, "success")
    return response


def _record(call: GenerationCall, outcome: CallOutcome) -> AskStore:
    breaker = call.breaker
    assert breaker is not None
    now = call.clock.time()
    return AskStore(breaker.store, breaker.record(now, outcome, probe=call.is_probe))


def _within_slot(call: GenerationCall) -> Flow[GenerationResponse]:
    """The call inside one of the client's `max_concurrency` slots, when it has a limit."""
    if call.settings.max_concurrency is None:
        return call.finish((yield from _answer(call)))
    if not (yield TakeSlot(call.time_left())):
        raise call.stamp(
            held_back(
                APITimeoutError(
                    "no free max_concurrency slot before the deadline; nothing was sent"
                )
            )
        )
    try:
        response = call.finish((yield from _answer(call)))
    except GeneratorExit:
        raise
    except BaseException:
        yield ReturnSlot()
        raise
    yield ReturnSlot()
    return response


def _answer(call: GenerationCall) -> Flow[ProviderAnswer]:
    """The provider's answer: one exchange, or the steps of the provider's own flow."""
    if call.steps is not None:
        return (yield from _provider_steps(call, call.steps))
    assert call.http_request is not None  # a provider without exchange() built it
    # Read inside the attempt: a provider may find a retryable error in a 2xx body.
    answer: ProviderAnswer = yield from _retried(
        call, call.http_request, paid=True, read=call.read_answer
    )
    limiter = call.limiter
    if limiter is not None:
        yield from _ask(limiter.store, limiter.succeeded(call.clock.time(), answer.rate_limit))
    return answer


def _provider_steps(call: GenerationCall, steps: ProviderFlow) -> Flow[ProviderAnswer]:
    """Carry out a provider's `exchange()` steps, throwing a failed step's error back."""
    try:
        return (yield from _steps_of(call, steps))
    except GenerationError:
        raise
    except BaseException:
        # Cancelled or abandoned: the provider's flow gets GeneratorExit, so its own
        # `finally` can run (it must not yield there: nothing carries out steps now).
        steps.close()
        raise


def _steps_of(call: GenerationCall, steps: ProviderFlow) -> Flow[ProviderAnswer]:
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(reply) if error is None else steps.throw(error)
        except StopIteration as done:
            answer: ProviderAnswer = done.value
            return answer
        except GenerationError as failure:
            raise call.stamp(failure) from None
        reply, error = None, None
        try:
            if type(step) is Exchange or type(step) is Stream:
                reply = yield from _retried(
                    call, step.request, paid=step.paid, stream=type(step) is Stream
                )
                limiter = call.limiter
                if step.paid and limiter is not None:
                    yield from _ask(limiter.store, limiter.succeeded(call.clock.time(), None))
            elif type(step) is NextChunk:
                reply = yield from _next_chunk(call)
            elif type(step) is Wait:
                yield from _wait(call, step.seconds)
            elif type(step) is Progress:
                yield Emit(step.event)
            else:
                raise TypeError(f"a provider's exchange() yielded {step!r}, not a step")
        except GenerationError as failure:
            error = failure


def _wait(call: GenerationCall, seconds: float) -> Generator[Sleep, Any, None]:
    """A provider's pause (a poll interval), never one that would end past the deadline."""
    left = call.time_left()
    if left is not None and seconds > left:
        raise call.stamp(
            APITimeoutError(
                f"the {call.settings.provider.name} job was not done before the deadline "
                f"(the next check would come {seconds:.1f} s from now, {left:.1f} s left); "
                "raise the RetryPolicy's deadline for slower jobs"
            )
        )
    yield Sleep(seconds)


def _retried(
    call: GenerationCall,
    request: HttpRequest,
    *,
    paid: bool,
    stream: bool = False,
    read: Callable[[HttpResponse], Any] | None = None,
) -> Generator[Any, Any, Any]:
    """Attempts at one exchange until one succeeds or tenacity stops.

    tenacity decides after every failure: the attempt's error becomes its outcome, and
    `iter()` answers "sleep N" (a `Sleep`, then the next attempt) or raises the error.
    Its answers that are known beforehand are not asked for: a fresh state is always
    "attempt" (no `before` hook is set), and a success is always returned, since the rules
    retry errors only. So a call that succeeds at once pays nothing for the loop.
    """
    retrying = call.retrying
    state: RetryCallState | None = None
    while True:
        try:
            answer = yield from _attempt(call, request, paid=paid, stream=stream)
            return answer if read is None else read(cast(HttpResponse, answer))
        except GenerationError:
            if state is None:
                state = RetryCallState(retrying, None, (call,), {})
                retrying.begin()  # the per-thread statistics its sleep step counts in
            state.set_exception(sys.exc_info())  # type: ignore[arg-type]
        do = retrying.iter(state)  # DoSleep, or it raises the error: reraise=True
        if type(do) is not DoSleep:  # pragma: no cover (tenacity's contract)
            raise AssertionError(f"tenacity answered {do!r} after a failed attempt")
        state.prepare_for_next_attempt()
        if call.hooks is not None and call.last_retry is not None:
            yield Notify(call.last_retry)
        yield Sleep(do)


def _attempt(
    call: GenerationCall, request: HttpRequest, *, paid: bool, stream: bool
) -> Generator[Any, Any, HttpResponse | StreamHead]:
    """One attempt: wait for the limiter's slot (paid requests), send, check the status."""
    limiter = call.limiter
    if paid and limiter is not None:
        yield from _admission(call)
    if paid:
        call.next_attempt()
    if call.hooks is not None:
        yield Notify(call.attempt_event(request))
    try:
        if stream:
            head: StreamHead = yield OpenStream(call.streamed(request), call.time_left())
            if 200 <= head.status_code < 300:
                return head
            # An error's body is small: read it whole, for the provider to describe.
            reader = call.body_reader(head.headers)
            while chunk := (yield ReadChunk(call.time_left())):
                reader.feed(chunk)
            response = HttpResponse(head.status_code, head.headers, reader.body())
        else:
            response = yield Send(request, call.time_left(), call.body_reader)
    except TransportFailure as failure:
        raise call.failed_exchange(failure) from failure.cause
    try:
        return call.check_status(response)
    except RateLimitError as error:
        limiter = call.limiter
        # A quota that waiting will not fix (QuotaExceededError) says nothing of the rate.
        if limiter is not None and type(error) is RateLimitError:
            now = call.clock.time()
            yield from _ask(
                limiter.store, limiter.rate_limited(now, error.retry_after, error.rate_limit)
            )
        raise


def _admission(call: GenerationCall) -> Generator[Any, Any, None]:
    """Wait for the rate limiter's next slot, or give up at once if it is past the deadline."""
    limiter = call.limiter
    assert limiter is not None
    clock = call.clock
    left = call.time_left()
    delay: float = yield AskStore(limiter.store, limiter.reserve(clock.time(), max_wait=left))
    if left is not None and delay > left:
        raise call.stamp(
            held_back(
                APITimeoutError(
                    f"the client's rate limit would hold this call {delay:.1f} s, past "
                    f"its deadline ({left:.1f} s left); nothing was sent"
                )
            )
        )
    if not delay:
        return
    try:
        yield Sleep(delay)
    except GeneratorExit:
        raise
    except BaseException:
        # Cancelled while waiting its turn: the slot goes back to those still queued.
        yield AskStore(limiter.store, limiter.refund(clock.time()))
        raise


def _ask(store: object, ops: Iterable[StoreOp[Any]]) -> Generator[AskStore, Any, None]:
    """Ask `store` to carry out each of `ops`, in order."""
    for op in ops:
        yield AskStore(store, op)


def _next_chunk(call: GenerationCall) -> Generator[Any, Any, bytes]:
    """The open stream's next bytes, within the size cap and the deadline."""
    try:
        chunk: bytes = yield ReadChunk(call.time_left())
    except TransportFailure as failure:
        raise call.failed_exchange(failure) from failure.cause
    call.streamed_bytes += len(chunk)
    limit = call.settings.max_response_bytes
    if call.streamed_bytes > limit:
        raise call.stamp(too_large(call.streamed_bytes, limit))
    if chunk and call.past_deadline():
        raise call.stamp(APITimeoutError("the stream was still arriving when the deadline passed"))
    return chunk
