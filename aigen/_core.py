"""The sans-IO engine both clients drive: prepare a call, then interpret what came back.

`Engine.start()` validates a request and builds its `HttpRequest` (so bad input fails
before anything is sent); the `GenerationCall` it returns turns each `HttpResponse`
into a `GenerationResponse` or a typed error, and knows the retry loop for the call.
Nothing here sends, sleeps or imports httpx or asyncio; the clock is injected.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeVar

from ._body import BodyReader, too_large
from ._circuit import CircuitState
from ._config import Settings
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    CircuitOpenError,
    GenerationError,
    RateLimitError,
    held_back,
)
from ._http import HttpRequest, HttpResponse
from ._images import image_size, sniff_mime_type
from ._models import MAX_SEED, GenerationRequest, GenerationResponse
from ._ratelimit import RateLimiter
from ._retry import RetryLoop, parse_retry_after_headers
from .providers import ErrorContext, ProviderAnswer, RequestContext

__all__ = ["Engine", "GenerationCall"]

E = TypeVar("E", bound=GenerationError)
T = TypeVar("T")

logger = logging.getLogger("aigen")

_REDACTED = b"[redacted]"
# A call with no circuit breaker to tell skips the generator-based context manager.
_UNTRACKED = nullcontext()
# A "key" shorter than this is a placeholder (tests, local fakes), not a secret; replacing
# every "k" in a message would garble it without protecting anything.
_MIN_SECRET_LENGTH = 8


class Engine:
    """A client's provider-neutral logic: shared by every call, holds no per-call state."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        # Uniform over 0..MAX_SEED (2**31 - 1), and a fifth of what randint costs.
        pick_seed: Callable[[], int] = lambda: random.getrandbits(MAX_SEED.bit_length()),
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._pick_seed = pick_seed
        # The lambdas read the clocks at call time, so a test may swap them afterwards.
        self.circuit = (
            CircuitState(settings.circuit_breaker, lambda: self._clock())
            if settings.circuit_breaker is not None
            else None
        )
        self.limiter = (
            RateLimiter(
                settings.rate_limit,
                key=f"{settings.provider.name} {settings.base_url}",
                clock=lambda: self._wall_clock(),
                max_hold=settings.retry.max_retry_after,
            )
            if settings.rate_limit is not None
            else None
        )

    def start(
        self, request: GenerationRequest | str, fields: Mapping[str, object]
    ) -> GenerationCall:
        """Validate the request and prepare its HTTP request; nothing is sent yet."""
        request = as_request(request, fields)
        provider = self.settings.provider
        seed = None
        if provider.takes_seed:
            seed = request.seed if request.seed is not None else self._pick_seed()
        model = request.model or self.settings.model
        http_request = provider.build_request(
            request,
            RequestContext(
                model=model,
                seed=seed,
                base_url=self.settings.base_url,
                api_key=self.settings.api_key,
            ),
        )
        generation_id = str(uuid.uuid4())
        logger.debug(
            "generation %s: %s %s (provider %s, model %s)",
            generation_id,
            http_request.method,
            http_request.url,
            provider.name,
            model,
            extra={"generation_id": generation_id},
        )
        call = GenerationCall(
            engine=self,
            request=request,
            http_request=http_request,
            generation_id=generation_id,
            model=model,
            seed=seed,
        )
        if self.circuit is not None:
            try:
                call.is_probe = self.circuit.admit()
            except CircuitOpenError as error:
                raise call.stamp(error) from None
        return call


def as_request(request: GenerationRequest | str, fields: Mapping[str, object]) -> GenerationRequest:
    """A `GenerationRequest` from a request or a prompt, with keyword fields applied."""
    if isinstance(request, GenerationRequest):
        if not fields:
            return request
        # Field values, not a dump: a dump would turn provider options into a plain dict.
        given = {name: getattr(request, name) for name in request.model_fields_set}
        return GenerationRequest.model_validate({**given, **fields})
    if isinstance(request, str):
        return GenerationRequest.model_validate({"prompt": request, **fields})
    raise TypeError(
        f"generate() takes a prompt string or a GenerationRequest, not {type(request).__name__}"
    )


class GenerationCall:
    """One `generate()`: its id, its prepared request, its attempts and its outcome."""

    def __init__(
        self,
        *,
        engine: Engine,
        request: GenerationRequest,
        http_request: HttpRequest,
        generation_id: str,
        model: str,
        seed: int | None,
    ) -> None:
        self._engine = engine
        self._clock = engine._clock
        self.request = request
        self.http_request = http_request
        self.generation_id = generation_id
        self.model = model
        self.seed = seed
        self.attempts = 0
        self.is_probe = False
        self._started = self._clock()
        self._attempt_started = self._started
        self.retry_loop = RetryLoop(
            engine.settings.retry,
            generation_id=generation_id,
            clock=engine._clock,
            jitter=engine._jitter,
        )

    def tracked(self) -> AbstractContextManager[None]:
        """Wrap the whole call, so the circuit breaker (if any) learns how it ended."""
        return _UNTRACKED if self._engine.circuit is None else self._tracked()

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        circuit = self._engine.circuit
        assert circuit is not None
        try:
            yield
        except GenerationError as error:
            circuit.record(error, probe=self.is_probe)
            raise
        except BaseException:
            if self.is_probe:
                circuit.abandon_probe()  # cancelled: nothing was learnt
            raise
        circuit.record(None, probe=self.is_probe)

    def admission_delay(self) -> float:
        """Seconds to wait before this attempt may be sent, under the client's rate limit."""
        limiter = self._engine.limiter
        if limiter is None:
            return 0.0
        left = self.time_left()
        delay = limiter.reserve(max_wait=left)
        if left is not None and delay > left:
            raise self.stamp(
                held_back(
                    APITimeoutError(
                        f"the client's rate limit would hold this call {delay:.1f} s, past "
                        f"its deadline ({left:.1f} s left); nothing was sent"
                    )
                )
            )
        return delay

    def next_attempt(self) -> HttpRequest:
        """Count an attempt, start its timer, and return the request to send."""
        self.attempts += 1
        self._attempt_started = self._clock()
        return self.http_request

    def body_reader(self, headers: Mapping[str, str]) -> BodyReader:
        """A reader for this attempt's body; refuses one too large or too late."""
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and len(declared) > 18:
            raise self.stamp(too_large(10**18, self._engine.settings.max_response_bytes))
        expected = int(declared) if declared.isascii() and declared.isdigit() else None
        limit = self._engine.settings.max_response_bytes
        encoding = headers.get("content-encoding", "identity")
        if expected is not None and expected > limit:
            # Compressed bytes can only inflate further, so this refusal is always right.
            raise self.stamp(too_large(expected, limit))
        try:
            return BodyReader(self, limit, expected, encoding)
        except GenerationError as error:
            raise self.stamp(error) from None

    def past_deadline(self) -> bool:
        """Whether the call's deadline, if it has one, has passed."""
        left = self.retry_loop.remaining()
        return left is not None and left <= 0

    def time_left(self) -> float | None:
        """Seconds before the deadline, to cap this attempt's timeout; `None` without one."""
        return self.retry_loop.remaining()

    def handle_response(self, response: HttpResponse) -> GenerationResponse:
        """The response for a 2xx answer; otherwise raise the error it describes."""
        elapsed_ms = (self._clock() - self._attempt_started) * 1000
        try:
            if 200 <= response.status_code < 300:
                answer = self._engine.settings.provider.parse_response(response, self.request)
                if self._engine.limiter is not None:
                    self._engine.limiter.succeeded(answer.rate_limit)
                return self._finish(answer, elapsed_ms)
            error = self._api_error(response)
            if self._engine.limiter is not None and type(error) is RateLimitError:
                self._engine.limiter.rate_limited(error.retry_after, error.rate_limit)
            raise error
        except GenerationError as error:
            raise self.stamp(error) from None

    def connection_error(self, cause: BaseException) -> APIConnectionError:
        """The error for a connection that failed or broke (the client saw `cause`)."""
        settings = self._engine.settings
        # httpx's async errors often carry no text; the OS error beneath them does.
        detail = str(cause) or str(cause.__context__ or "") or "the connection was closed"
        return self.stamp(
            APIConnectionError(
                f"the connection to {settings.provider.name} at {settings.base_url} failed: "
                f"{type(cause).__name__}: {detail}"
            )
        )

    def timeout_error(self, cause: BaseException) -> APITimeoutError:
        """The error for an attempt that ran out of time."""
        name = self._engine.settings.provider.name
        return self.stamp(
            APITimeoutError(
                f"{name} did not answer in time ({type(cause).__name__}); "
                "raise timeout= if large images need longer"
            )
        )

    def undecodable_body(self, cause: BaseException) -> GenerationError:
        """The error for a body that could not be decompressed or decoded."""
        return self.stamp(GenerationError(f"could not decode the answer body: {cause}"))

    def stamp(self, error: E) -> E:
        """Mark an error with this call's generation id and attempt count, and scrub the
        key from everything it carries (a gateway may echo it in any encoding or header)."""
        key = self._engine.settings.api_key
        error.generation_id = self.generation_id
        error.attempts = self.attempts
        for name, value in vars(error).items():  # message, body, details, reason, ...
            setattr(error, name, _redact_value(value, key))
        error.args = (error.message,)
        return error

    def _api_error(self, response: HttpResponse) -> GenerationError:
        settings = self._engine.settings
        key = settings.api_key.encode()
        if len(key) >= _MIN_SECRET_LENGTH and key in response.content:
            # Some gateways echo the request; the key must not reach a message or a log.
            response = HttpResponse(
                response.status_code, response.headers, response.content.replace(key, _REDACTED)
            )
        error = settings.provider.parse_error(response, ErrorContext(model=self.model))
        if isinstance(error, APIError):
            header_hint = parse_retry_after_headers(response.headers, self._engine._wall_clock())
            hints = [
                hint
                for hint in (error.retry_after, header_hint)
                if hint is not None and math.isfinite(hint) and hint >= 0
            ]
            error.retry_after = max(hints) if hints else None
            if error.request_id is None:
                error.request_id = response.headers.get("x-request-id")
            if response.headers.get("x-should-retry", "").strip().lower() == "false":
                # Only the server's "no" is taken: its "yes" cannot make a 401 worth retrying.
                error.server_allows_retry = False
        return error

    def _finish(self, answer: ProviderAnswer, elapsed_ms: float) -> GenerationResponse:
        provider = self._engine.settings.provider.name
        mime_type = sniff_mime_type(answer.image_data)
        size = image_size(answer.image_data)
        if mime_type is None or size is None:
            start = answer.image_data[:8].hex(" ") or "nothing"
            raise GenerationError(
                f"{provider} returned image data that is not a readable PNG, JPEG or WebP "
                f"(labelled {answer.declared_mime_type or 'nothing'}, "
                f"{len(answer.image_data)} bytes starting {start})"
            )
        response = GenerationResponse(
            image_data=answer.image_data,
            mime_type=mime_type,
            width=size[0],
            height=size[1],
            generation_id=self.generation_id,
            seed=self.seed,
            inference_time_ms=elapsed_ms,
            total_time_ms=(self._clock() - self._started) * 1000,
            thought_signature=answer.thought_signature,
            parts=answer.parts,
            text=answer.text,
            model=answer.model or self.model,
            provider=provider,
            request_id=_redact_value(answer.request_id, self._engine.settings.api_key),
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


def _redact_value(value: T, secret: str) -> T:
    """`value` with `secret` replaced in every string it holds, however deeply."""
    if len(secret) < _MIN_SECRET_LENGTH:
        return value
    if isinstance(value, str):
        return _redact_text(value, secret)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {  # type: ignore[return-value]
            _redact_value(k, secret): _redact_value(v, secret) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_value(item, secret) for item in value]  # type: ignore[return-value]
    return value


def _redact_text(text: str, secret: str) -> str:
    if len(secret) < _MIN_SECRET_LENGTH or secret not in text:
        return text
    return text.replace(secret, _REDACTED.decode())
