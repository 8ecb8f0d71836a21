"""Hooks: your callables, told what each call does as it happens, with typed events.

`Hooks(on_attempt=..., on_retry=..., on_response=..., on_error=...)` is passed as
`hooks=` to either client. The call's flow hands each event to its client's driver as a
`Notify` action, and the driver calls the hook: a plain callable for `Client`, a plain or
an `async` one for `AsyncClient`. A hook that raises is logged on the `aigen` logger and
never breaks the call. A client without hooks pays nothing: no event is even made.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from ._errors import ConfigurationError, GenerationError
from ._retry import RetryEvent

if TYPE_CHECKING:
    from ._models import GenerationResponse

__all__ = ["AttemptEvent", "ErrorEvent", "Hook", "HookEvent", "Hooks", "ResponseEvent"]

logger = logging.getLogger("aigen")


@dataclass(frozen=True)
class AttemptEvent:
    """An attempt is about to be sent: which call, which attempt (from 1), to whom."""

    generation_id: str
    attempt: int
    provider: str
    model: str
    method: str
    url: str


@dataclass(frozen=True)
class ResponseEvent:
    """A call ended with its response (status, request id and all are on it)."""

    generation_id: str
    response: GenerationResponse


@dataclass(frozen=True)
class ErrorEvent:
    """A call ended with an error (`error.attempts`, `error.status_code` where there is one)."""

    generation_id: str
    error: GenerationError


HookEvent = Union[AttemptEvent, RetryEvent, ResponseEvent, ErrorEvent]  # noqa: UP007
# A hook takes its event; what it returns is ignored (awaited first, on AsyncClient).
Hook = Callable[[Any], object]

_KINDS = {
    AttemptEvent: "on_attempt",
    RetryEvent: "on_retry",
    ResponseEvent: "on_response",
    ErrorEvent: "on_error",
}


@dataclass(frozen=True)
class Hooks:
    """What to call as a call goes (pass as `hooks=`); each is optional.

    - `on_attempt(AttemptEvent)`: before each attempt is sent.
    - `on_retry(RetryEvent)`: an attempt failed and another follows after `event.wait` s.
    - `on_response(ResponseEvent)`: the call succeeded.
    - `on_error(ErrorEvent)`: the call failed for good (the error is raised after it).

    `Client` takes plain callables; `AsyncClient` takes plain or `async` ones. A hook runs
    on the call's own thread or task, so a slow one slows the call.
    """

    on_attempt: Hook | None = None
    on_retry: Hook | None = None
    on_response: Hook | None = None
    on_error: Hook | None = None

    def __post_init__(self) -> None:
        for name in _KINDS.values():
            hook = getattr(self, name)
            if hook is not None and not callable(hook):
                raise ConfigurationError(
                    f"Hooks({name}={hook!r}): a hook must be a callable taking one event"
                )

    def for_event(self, event: HookEvent) -> Hook | None:
        """The hook that takes `event`, if one was given."""
        hook: Hook | None = getattr(self, _KINDS[type(event)])
        return hook

    def check_sync(self) -> None:
        """Refuse `async` hooks for `Client`, which has no event loop to await them on."""
        for name in _KINDS.values():
            if inspect.iscoroutinefunction(getattr(self, name)):
                raise ConfigurationError(
                    f"Hooks({name}=...) is an async function, which Client cannot await: "
                    "use a plain function, or AsyncClient"
                )


def hook_failed(event: HookEvent) -> None:
    """Log a hook's exception (the caller is in its `except`); the call goes on."""
    logger.warning(
        "generation %s: a hook for %s raised; the call goes on",
        event.generation_id,
        type(event).__name__,
        exc_info=True,
        extra={"generation_id": event.generation_id},
    )
