"""The part of a fake that is neither socket nor wire: the script, the record, the answer.

`ScriptedAPI` holds a queue of outcomes and the requests seen, and turns one request into
the reply to send. `FakeServer` (a real socket) and `MockProvider` (respx, no socket)
both build on it, so a script plays the same on either.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TypedDict

from ._dialect import DRAWN_TYPES, Dialect, Surroundings
from ._outcomes import Drop, Outcome, Reply, Situation, success
from ._recording import RecordedRequest

__all__ = ["TEST_API_KEY", "ClientOptions", "ScriptedAPI"]

# Long enough that aigen redacts it wherever it could appear (it redacts 8+ characters).
TEST_API_KEY = "aigen-test-key-not-a-secret"


class ClientOptions(TypedDict):
    """The keywords that point an aigen client at a fake: `Client(**fake.client_options)`."""

    provider: str
    api_key: str
    base_url: str


class ScriptedAPI:
    """A scripted fake provider, without the transport: see `FakeServer` and `MockProvider`.

    - `script(*outcomes, replace=False)`: queue outcomes, played in order, one per valid
      request (`replace=True` first drops those still queued). An outcome the provider
      cannot say (`text_only()` on OpenAI, say) raises `ValueError`.
    - `clear()`: no outcome queued, no request recorded, the default a success again.
    - `default`: what is played once the queue is empty (a `success()` unless changed).
    - `requests`: every request received so far, in order of arrival.
    - `api_key`: when set, the only key accepted; the dialect refuses any other its way.
    - `mime_type`: the type of the images a success draws (`"image/png"` or `"image/jpeg"`).
    - `wall_clock`: the clock for HTTP dates and timestamps in answers (`time.time`).
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        api_key: str | None = None,
        default: Outcome | None = None,
        mime_type: str = "image/png",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if mime_type not in DRAWN_TYPES:
            raise ValueError(f"the fakes draw {' and '.join(DRAWN_TYPES)}, not {mime_type!r}")
        self.dialect = dialect
        self.api_key = api_key
        self.mime_type = mime_type
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._queue: deque[Outcome] = deque()
        self._requests: list[RecordedRequest] = []
        self._default: Outcome = success()
        if default is not None:
            self.default = default

    @property
    def provider(self) -> str:
        """The provider this fake speaks for (`"gemini"`, `"openai"`)."""
        return self.dialect.name

    @property
    def base_url(self) -> str:
        """The URL to pass as `base_url=`."""
        raise NotImplementedError

    @property
    def client_options(self) -> ClientOptions:
        """`provider`, `api_key` and `base_url` for `Client(**...)` or `AsyncClient(**...)`."""
        return {
            "provider": self.provider,
            "api_key": self.api_key or TEST_API_KEY,
            "base_url": self.base_url,
        }

    @property
    def environ(self) -> dict[str, str]:
        """The environment variables that make `Client()` (no arguments) use this fake."""
        key_variable = "GEMINI_API_KEY" if self.provider == "gemini" else "OPENAI_API_KEY"
        options = self.client_options
        return {
            "AIGEN_PROVIDER": options["provider"],
            "AIGEN_BASE_URL": options["base_url"],
            key_variable: options["api_key"],
        }

    @property
    def default(self) -> Outcome:
        """What is played when the script is empty."""
        return self._default

    @default.setter
    def default(self, outcome: Outcome) -> None:
        self._refuse_unsayable(outcome)
        self._default = outcome

    def script(self, *outcomes: Outcome, replace: bool = False) -> None:
        """Queue outcomes for the next valid requests, in order.

        Outcomes are added after any still queued; `replace=True` drops those first, so
        the next requests play exactly `outcomes`.
        """
        for outcome in outcomes:
            self._refuse_unsayable(outcome)
        with self._lock:
            if replace:
                self._queue.clear()
            self._queue.extend(outcomes)

    def clear(self) -> None:
        """Forget the script and the record: no outcome queued, no request seen, and the
        `default` back to a `success()`. For a fake shared by several tests, between them.

        (Not `reset`: `reset()` is the outcome that resets a connection.)
        """
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._default = success()

    @property
    def pending(self) -> int:
        """Scripted outcomes not played yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def arrivals(self) -> list[float]:
        """`arrived_at` of every request so far."""
        return [r.arrived_at for r in self.requests]

    def respond(self, seen: RecordedRequest) -> tuple[Outcome, Reply | None]:
        """Record `seen` and return what to play: the outcome, and its reply (`None`: drop).

        The dialect's own checks (path, key, body) answer first without using the script.
        A failure while rendering is recorded with the request, then raised.
        """
        seen = replace(seen, model=self.dialect.model_of(seen))
        refusal = self.dialect.check(seen, self.api_key)
        outcome: Outcome = refusal if refusal is not None else self._next_outcome()
        scripted = outcome if refusal is None else None
        try:
            reply = self._render(outcome, seen)
        except Exception:
            self._record(replace(seen, outcome=scripted))
            raise
        request_id = self.dialect.request_id(reply) if reply is not None else None
        self._record(replace(seen, outcome=scripted, reply=reply, request_id=request_id))
        return outcome, reply

    # -- helpers ---------------------------------------------------------------------

    def _refuse_unsayable(self, outcome: Outcome) -> None:
        if isinstance(outcome, Situation):
            reason = self.dialect.refusal(outcome)
            if reason is not None:
                raise ValueError(f"the fake {self.provider} cannot play {outcome.kind}: {reason}")

    def _next_outcome(self) -> Outcome:
        with self._lock:
            return self._queue.popleft() if self._queue else self._default

    def _render(self, outcome: Outcome, request: RecordedRequest) -> Reply | None:
        """The reply `outcome` sends to `request` (`None` for a `Drop`)."""
        if isinstance(outcome, Drop):
            return None
        if isinstance(outcome, Situation):
            around = Surroundings(mime_type=self.mime_type, now=self.wall_clock())
            said = self.dialect.render(outcome, request, around)
            outcome = replace(
                said,
                headers={**said.headers, **outcome.headers},
                delay=outcome.delay,
                head_duration=outcome.head_duration,
                body_duration=outcome.body_duration,
                chunks=outcome.chunks,
                cut_after=outcome.cut_after,
                reset_after=outcome.reset_after,
                content_type=outcome.content_type or said.content_type,
                chunked=outcome.chunked or said.chunked,
                gzip=outcome.gzip or said.gzip,
            )
        return self.dialect.finish(outcome, request)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
