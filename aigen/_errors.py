"""Every error aigen raises, in one tree.

```
AigenError
├── ConfigurationError            bad or missing settings; raised before any request
└── GenerationError               any failed generate(): .message, .details
    ├── APIError                  .status_code, .request_id, .provider, .body
    │   ├── BadRequestError       400, 422
    │   ├── AuthenticationError   401, 403, and Gemini's 400 API_KEY_INVALID
    │   ├── NotFoundError         404 (unknown or retired model)
    │   ├── RateLimitError        429; .retry_after (seconds, or None)
    │   │   └── QuotaExceededError  429 that waiting will not fix; never retried
    │   └── ServerError           5xx (500-599; any other unknown status is a plain APIError)
    ├── ContentPolicyError        .reason, .stage ("prompt" or "output"), .categories
    ├── NoImageError              the model answered without an image; .text
    ├── APIConnectionError
    ├── APITimeoutError
    ├── CircuitOpenError
    └── StoreUnavailableError     a shared store (aigen.redis) is unreachable and was asked
                                  to raise; nothing was sent
```

Every `GenerationError` also carries the `generation_id` of the call it ended, so a log
line and an exception can be matched, and `attempts`, the HTTP attempts it took.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from ._models import RateLimitInfo

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AigenError",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigurationError",
    "ContentPolicyError",
    "GenerationError",
    "NoImageError",
    "NotFoundError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "StoreUnavailableError",
]

Stage = Literal["prompt", "output"]
E = TypeVar("E", bound="GenerationError")


class AigenError(Exception):
    """Base class of every error raised by aigen."""


class ConfigurationError(AigenError):
    """A setting is missing or wrong; raised before any request is sent."""


class GenerationError(AigenError):
    """A `generate()` call failed.

    `message` says what went wrong in words a person can act on; `details` holds
    whatever structured data came with it (a provider's error body, a finish reason).
    """

    generation_id: str | None
    attempts: int
    held_back: bool
    """True when aigen refused the call itself (a client-side limit): nothing was sent."""

    def __init__(self, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.generation_id = None
        self.attempts = 0
        self.held_back = False


class APIError(GenerationError):
    """The provider answered with an HTTP error status.

    `body` is the parsed JSON error body (or its text when it was not JSON).
    `retry_after` is the wait the server asked for (`Retry-After`, `retry-after-ms`,
    Gemini's `RetryInfo`), in seconds, or `None`. `rate_limit` holds the provider's
    rate-limit headers, parsed, where it sends them (OpenAI). `server_allows_retry` is
    `False` when the server answered `x-should-retry: false`; aigen then does not retry.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        provider: str,
        request_id: str | None = None,
        body: object = None,
        details: object = None,
        retry_after: float | None = None,
        rate_limit: RateLimitInfo | None = None,
    ) -> None:
        super().__init__(message, details=details if details is not None else body)
        self.status_code = status_code
        self.provider = provider
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after
        self.rate_limit = rate_limit
        self.server_allows_retry: bool | None = None

    def __str__(self) -> str:
        where = f"{self.provider} {self.status_code}"
        if self.request_id:
            where += f", request id {self.request_id}"
        return f"{self.message} ({where})"


class BadRequestError(APIError):
    """The provider refused the request as malformed (400, 422)."""


class AuthenticationError(APIError):
    """The key is missing, invalid or not allowed (401, 403, Gemini's API_KEY_INVALID)."""


class NotFoundError(APIError):
    """The model or endpoint does not exist (404): check the model name."""


class RateLimitError(APIError):
    """Too many requests (429).

    `retry_after` is the wait in seconds the server asked for, or `None` when it gave
    no hint. Raised at once when that wait is longer than the policy's
    `max_retry_after` or would end past its `deadline`; otherwise after the retries
    ran out, carrying the last hint.
    """


class QuotaExceededError(RateLimitError):
    """A 429 that waiting will not fix (a daily or zero quota, no credit); never retried."""


class ServerError(APIError):
    """The provider failed (5xx); retried by default."""


class ContentPolicyError(GenerationError):
    """The provider refused the prompt or the image it made on safety grounds.

    Never retried: the same request would be refused again and may cost quota.
    `stage` is `"prompt"` when the input was refused and `"output"` when the generated
    image was withheld; `reason` is the provider's own code (`"IMAGE_SAFETY"`,
    `"moderation_blocked"`, ...); `categories` lists the harm categories it named.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        stage: Stage,
        categories: list[str] | None = None,
        provider: str | None = None,
        request_id: str | None = None,
        details: object = None,
    ) -> None:
        super().__init__(message, details=details)
        self.reason = reason
        self.stage: Stage = stage
        self.categories = list(categories or [])
        self.provider = provider
        self.request_id = request_id


class NoImageError(GenerationError):
    """The model answered, but without an image; `text` holds what it said instead."""

    def __init__(
        self,
        message: str,
        *,
        text: str | None = None,
        finish_reason: str | None = None,
        request_id: str | None = None,
        details: object = None,
    ) -> None:
        super().__init__(message, details=details)
        self.text = text
        self.finish_reason = finish_reason
        self.request_id = request_id


class APIConnectionError(GenerationError):
    """The provider could not be reached, or the connection broke; retried by default."""


class APITimeoutError(GenerationError):
    """An attempt took longer than the client's `timeout`; retried by default."""


def held_back(error: E) -> E:
    """Mark `error` as raised by aigen itself before sending: never retried, and no sign
    that the provider is failing."""
    error.held_back = True
    return error


class CircuitOpenError(GenerationError):
    """Recent calls kept failing, so this one was refused without being sent."""


class StoreUnavailableError(GenerationError):
    """The limiter's or the breaker's shared store could not be reached (Redis down or too
    slow) and was built with `on_unavailable="raise"`; the call was not sent."""

    def __init__(self, message: str, *, details: object = None) -> None:
        super().__init__(message, details=details)
        # aigen refused the call itself: never retried, and no sign the provider is failing.
        self.held_back = True
