"""The engine both clients drive: prepare a call, then hand back its flow of actions.

`Engine.start()` validates a request and builds its `HttpRequest` (so bad input fails
before anything is sent) and returns the `GenerationCall` (aigen/_call.py);
`generation_flow(call)` (aigen/_flow.py) is then what the client's driver carries out.
Nothing here sends, sleeps, reads a clock of its own or imports httpx or asyncio: the
clock, the jitter and the seed are injected.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import cast

from ._call import GenerationCall
from ._circuit import Breaker
from ._clock import Clock
from ._config import Settings, check_model_name
from ._models import GenerationRequest
from ._ratelimit import RateLimiter
from ._retry import RetryRules
from .providers import Provider, RequestContext
from .providers._steps import ProviderFlow

__all__ = ["Engine", "as_request", "store_key"]

logger = logging.getLogger("aigen")


class Engine:
    """A client's provider-neutral logic: shared by every call, holds no per-call state."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        jitter: Callable[[], float],
        pick_seed: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.jitter = jitter
        self._pick_seed = pick_seed
        self.retrying = RetryRules(settings.retry).retrying()
        key = store_key(settings)
        self.breaker = (
            Breaker(settings.circuit_breaker, key=key)
            if settings.circuit_breaker is not None
            else None
        )
        self.limiter = (
            RateLimiter(settings.rate_limit, key=key, max_hold=settings.retry.max_retry_after)
            if settings.rate_limit is not None
            else None
        )

    def start(
        self, request: GenerationRequest | str, fields: Mapping[str, object]
    ) -> GenerationCall:
        """Validate the request and prepare its HTTP request; nothing is sent yet."""
        request = as_request(request, fields)
        self.settings.conversation_limits.check_request(request)
        provider = self.settings.provider
        seed = None
        if provider.takes_seed:
            seed = request.seed if request.seed is not None else self._pick_seed()
        model = (
            self.settings.model
            if request.model is None
            else check_model_name(request.model, "model")
        )
        context = RequestContext(
            model=model, seed=seed, base_url=self.settings.base_url, api_key=self.settings.api_key
        )
        exchange = getattr(provider, "exchange", None)  # a MultiStepProvider's flow
        if exchange is None:
            http_request = cast(Provider, provider).build_request(request, context)
            steps: ProviderFlow | None = None
        else:
            http_request, steps = None, exchange(request, context)
        generation_id = str(uuid.uuid4())
        logger.debug(
            "generation %s: %s (provider %s, model %s)",
            generation_id,
            "a multi-step exchange"
            if http_request is None
            else f"{http_request.method} {http_request.url}",
            provider.name,
            model,
            extra={"generation_id": generation_id},
        )
        return GenerationCall(
            settings=self.settings,
            clock=self.clock,
            jitter=self.jitter,
            retrying=self.retrying,
            limiter=self.limiter,
            breaker=self.breaker,
            hooks=self.settings.hooks,
            request=request,
            http_request=http_request,
            generation_id=generation_id,
            model=model,
            seed=seed,
            steps=steps,
        )


def store_key(settings: Settings) -> str:
    """The default name of a client's bucket and breaker in their store.

    Clients that share a store, in one process or many, share a bucket and a breaker when
    they call the same provider, default model and endpoint with the same API key: a
    provider counts its quota per key (and often per model). The model is the client's
    default one: a request that names another model still counts against this bucket, so
    a client meant for two models' quotas is two clients (or `RateLimit(key=...)`). The key
    itself is never in the name, only the start of its SHA-256, which tells keys apart
    without giving any of one away.
    """
    digest = hashlib.sha256(settings.api_key.encode()).hexdigest()[:16]
    return f"{settings.provider.name}:{settings.model}:key-{digest}:{settings.base_url}"


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
