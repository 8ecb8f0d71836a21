"""A sans-IO driver for tests: carry out a call's flow (aigen/_flow.py) with canned answers.

`drive(generation_flow(call), answer)` does what a client's driver does, without a socket
or a real sleep: each `Send` is answered by `answer(request)` (an `HttpResponse`, or an
exception such as a `TransportFailure` to throw in), its body read through the action's
`open_body` so the size cap and the deadline apply; each `AskStore` runs on its store;
each `Sleep` is only recorded (time stands still) unless `sleep` is given, e.g. a
`FakeClock`'s. A failure while performing an action is thrown back into the flow, as the
clients do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aigen._actions import Action, AskStore, Emit, Flow, ReturnSlot, Send, Sleep, TakeSlot
from aigen._http import HttpRequest, HttpResponse

__all__ = ["Answer", "drive"]

T = TypeVar("T")
Answer = Callable[[HttpRequest], "HttpResponse | BaseException"]


def drive(
    flow: Flow[T],
    answer: Answer,
    *,
    actions: list[Action] | None = None,
    sleep: Callable[[float], object] | None = None,
) -> T:
    """Perform every action `flow` yields (appending each to `actions`) and return what
    the flow returns, or let its error out. Slots are always free; events are dropped."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            action = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if actions is not None:
            actions.append(action)
        reply, error = None, None
        try:
            reply = _perform(action, answer, sleep)
        except Exception as failure:  # thrown in, as a client's driver does
            error = failure


def _perform(action: Action, answer: Answer, sleep: Callable[[float], object] | None) -> Any:
    if type(action) is Send:
        response = answer(action.request)
        if isinstance(response, BaseException):
            raise response
        reader = action.open_body(response.headers)
        reader.feed(response.content)
        return HttpResponse(response.status_code, response.headers, reader.body())
    if type(action) is AskStore:
        return action.op.run(action.store)
    if type(action) is Sleep:
        if sleep is not None:
            sleep(action.seconds)
        return None
    if type(action) is TakeSlot:
        return True
    if type(action) in (ReturnSlot, Emit):
        return None
    raise TypeError(f"drive() does not perform {action!r}")
