"""One call's state and how its answers are read: ids, attempts, timings, typed errors.

A `GenerationCall` is made by `Engine.start()` and read by the call's flow
(aigen/_flow.py): it holds the prepared request, counts attempts, times them, turns an
answer into a `GenerationResponse` or into the error it describes, and stamps every
error with the call's id with the key scrubbed out. Nothing here does I/O.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar, cast

from tenacity import Retrying

from ._actions import TransportFailure
from ._body import BodyReader, too_large
from ._circuit import Breaker
from ._clock import Clock
from ._config import Settings
from ._constants import MAX_REPORTED_RETRY_AFTER
from ._errors import APIConnectionError, APIError, APITimeoutError, GenerationError
from ._hooks import AttemptEvent, Hooks
from ._http import HttpRequest, HttpResponse
from ._images import image_size, sniff_mime_type
from ._models import GenerationRequest, GenerationResponse
from ._ratelimit import RateLimiter
from ._redact import redact_bytes, redact_value, scrub_chain
from ._retry import RetryEvent, parse_retry_after_headers
from .providers import ErrorContext, Provider, ProviderAnswer
from .providers._steps import ProviderFlow

__all__ = ["GenerationCall"]

E = TypeVar("E", bound=GenerationError)

logger = logging.getLogger("aigen")


class GenerationCall:
    """One `generate()`: its id, its prepared request, its attempts and its outcome."""

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        jitter: Callable[[], float],
        retrying: Retrying,
        limiter: RateLimiter | None,
        breaker: Breaker | None,
        hooks: Hooks | None,
        request: GenerationRequest,
        http_request: HttpRequest | None,
        generation_id: str,
        model: str,
        seed: int | None,
        steps: ProviderFlow | None = None,
    ) -> None:
        # The client's rules and protections, shared by all its calls.
        self.settings = settings
        self.clock = clock
        self._jitter = jitter
        self.retrying = retrying
        self.limiter = limiter
        self.breaker = breaker
        self.hooks = hooks
        self.last_retry: RetryEvent | None = None  # set by the retry rules as they decide
        self._monotonic: Callable[[], float] = clock.monotonic
        self.request = request
        self.http_request = http_request
        self.generation_id = generation_id
        self.model = model
        self.seed = seed
        self.steps = steps  # a multi-step provider's exchange() flow, already started
        self.attempts = 0
        self.is_probe = False
        self.streamed_bytes = 0
        self._started = self._monotonic()
        self._attempt_started = self._started
        self._answered: float | None = None

    # -- time ------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the call started."""
        return self._monotonic() - self._started

    def time_left(self) -> float | None:
        """Seconds before the deadline; `None` without one."""
        deadline = self.settings.retry.deadline
        if deadline is None:
            return None
        return max(0.0, deadline - self.elapsed())

    def past_deadline(self) -> bool:
        """Whether the call's deadline, if it has one, has passed."""
        left = self.time_left()
        return left is not None and left <= 0

    def jitter(self) -> float:
        """A float in [0, 1) for the backoff's jitter."""
        return self._jitter()

    # -- one attempt -----------------------------------------------------------------------

    def next_attempt(self) -> None:
        """Count a paid attempt and start its timer."""
        self.attempts += 1
        self._attempt_started = self._monotonic()

    def attempt_event(self, request: HttpRequest) -> AttemptEvent:
        """What an `on_attempt` hook is told of the attempt about to be sent."""
        return AttemptEvent(
            generation_id=self.generation_id,
            attempt=self.attempts,
            provider=self.settings.provider.name,
            model=self.model,
            method=request.method,
            url=redact_value(request.url, self.settings.api_key),
        )

    @staticmethod
    def streamed(request: HttpRequest) -> HttpRequest:
        """`request` as sent for a streamed answer: asking for no compression, since
        its events are read as they arrive (an inflater would hold them back)."""
        return replace(request, headers={**request.headers, "accept-encoding": "identity"})

    def body_reader(self, headers: Mapping[str, str]) -> BodyReader:
        """A reader for this attempt's body; refuses one too large or too late."""
        declared = headers.get("content-length", "")
        limit = self.settings.max_response_bytes
        expected = None
        if declared.isascii() and declared.isdigit():
            if len(declared) > 18:
                raise self.stamp(too_large(10**18, limit))
            expected = int(declared)
        if expected is not None and expected > limit:
            # Compressed bytes can only inflate further, so this refusal is always right.
            raise self.stamp(too_large(expected, limit))
        try:
            return BodyReader(self, limit, expected, headers.get("content-encoding", "identity"))
        except GenerationError as error:
            raise self.stamp(error) from None

    def check_status(self, response: HttpResponse) -> HttpResponse:
        """`response` if it is a 2xx; otherwise raise the error it describes."""
        if 200 <= response.status_code < 300:
            self._answered = self._monotonic()  # the attempt's end: its answer is here
            return response
        raise self.stamp(self._api_error(response))

    def failed_exchange(self, failure: TransportFailure) -> GenerationError:
        """The error for an exchange that failed below HTTP."""
        cause = failure.cause
        # Raised `from cause`: httpx's error holds the request sent, key header included.
        scrub_chain(cause, self.settings.api_key, include_self=True)
        name = self.settings.provider.name
        if failure.kind == "timeout":
            return self.stamp(
                APITimeoutError(
                    f"{name} did not answer in time ({type(cause).__name__}); "
                    "raise timeout= if large images need longer"
                )
            )
        if failure.kind == "connection":
            # httpx's async errors often carry no text; the OS error beneath them does.
            detail = str(cause) or str(cause.__context__ or "") or "the connection was closed"
            return self.stamp(
                APIConnectionError(
                    f"the connection to {name} at {self.settings.base_url} failed: "
                    f"{type(cause).__name__}: {detail}"
                )
            )
        return self.stamp(GenerationError(f"could not decode the answer body: {cause}"))

    def read_answer(self, response: HttpResponse) -> ProviderAnswer:
        """What the provider reads from a 2xx answer (or the error it raises)."""
        try:
            # Only a single-exchange provider's answer is read here (see Engine.start).
            return cast(Provider, self.settings.provider).parse_response(response)
        except GenerationError as error:
            raise self.stamp(error) from None

    # -- errors ----------------------------------------------------------------------------

    def stamp(self, error: E) -> E:
        """Mark an error with this call's generation id and attempt count, and scrub the
        key from everything it carries (a gateway may echo it in any encoding or header)."""
        key = self.settings.api_key
        error.generation_id = self.generation_id
        error.attempts = self.attempts
        # Its own fields (message, body, details, reason, ...), and what it was raised
        # from or while handling.
        scrub_chain(error, key, include_self=True)
        error.args = (error.message,)
        return error

    def _api_error(self, response: HttpResponse) -> GenerationError:
        settings = self.settings
        # Some gateways echo the request; the key must not reach a message or a log.
        content = redact_bytes(response.content, settings.api_key)
        if content is not response.content:
            response = HttpResponse(response.status_code, response.headers, content)
        error = settings.provider.parse_error(response, ErrorContext(model=self.model))
        if isinstance(error, APIError):
            header_hint = parse_retry_after_headers(response.headers, self.clock.time())
            hints = [
                hint
                for hint in (error.retry_after, header_hint)
                if hint is not None and math.isfinite(hint) and hint >= 0
            ]
            # A hint is reported capped: `Retry-After: 1e35` must not reach an app's header.
            error.retry_after = min(max(hints), MAX_REPORTED_RETRY_AFTER) if hints else None
            if error.request_id is None:
                error.request_id = response.headers.get("x-request-id")
            if response.headers.get("x-should-retry", "").strip().lower() == "false":
                # Only the server's "no" is taken: its "yes" cannot make a 401 worth retrying.
                error.server_allows_retry = False
        return error

    # -- the result ------------------------------------------------------------------------

    def finish(self, answer: ProviderAnswer) -> GenerationResponse:
        """The response for a provider's answer, its image checked and measured."""
        answered = self._monotonic() if self._answered is None else self._answered
        elapsed_ms = (answered - self._attempt_started) * 1000
        provider = self.settings.provider.name
        mime_type = sniff_mime_type(answer.image_data)
        size = image_size(answer.image_data)
        if mime_type is None or size is None:
            start = answer.image_data[:8].hex(" ") or "nothing"
            raise self.stamp(
                GenerationError(
                    f"{provider} returned image data that is not a readable PNG, JPEG or WebP "
                    f"(labelled {answer.declared_mime_type or 'nothing'}, "
                    f"{len(answer.image_data)} bytes starting {start})"
                )
            )
        response = GenerationResponse(
            image_data=answer.image_data,
            mime_type=mime_type,
            width=size[0],
            height=size[1],
            generation_id=self.generation_id,
            seed=self.seed,
            inference_time_ms=elapsed_ms,
            total_time_ms=(self._monotonic() - self._started) * 1000,
            thought_signature=answer.thought_signature,
            parts=answer.parts,
            text=answer.text,
            model=answer.model or self.model,
            provider=provider,
            request_id=redact_value(answer.request_id, self.settings.api_key),
            usage=answer.usage,
            rate_limit=answer.rate_limit,
            finish_reason=answer.finish_reason,
            attempts=self.attempts,
        )
        logger.debug(
            "generation %s: %dx%d %s in %.0f ms (%d attempt(s), request id %s, usage %s)",
            self.generation_id,
            response.width,
            response.height,
            response.mime_type,
            response.inference_time_ms,
            response.attempts,
            response.request_id,
            response.usage,
            extra={"generation_id": self.generation_id},
        )
        return response
