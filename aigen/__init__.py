"""aigen: one call to an image model that does the right thing.

`Client` (sync) and `AsyncClient` (async) generate images through Gemini or OpenAI,
retrying what is worth retrying, obeying the server's hints, and raising typed errors
(`ContentPolicyError`, `RateLimitError`, ...) for what is not.
"""

from ._circuit import CircuitBreaker
from ._client import AsyncClient, Client
from ._conversation import AsyncConversation, Conversation, ConversationState
from ._errors import (
    AigenError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    ContentPolicyError,
    GenerationError,
    NoImageError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from ._models import (
    GenerationRequest,
    GenerationResponse,
    ProviderOptions,
    RateLimitInfo,
    Turn,
    TurnPart,
    Usage,
)
from ._ratelimit import MemoryRateLimitStore, RateLimit, RateLimitStore
from ._retry import RetryPolicy
from ._version import __version__
from .providers import Provider

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AigenError",
    "AsyncClient",
    "AsyncConversation",
    "AuthenticationError",
    "BadRequestError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "ConfigurationError",
    "ContentPolicyError",
    "Conversation",
    "ConversationState",
    "GenerationError",
    "GenerationRequest",
    "GenerationResponse",
    "MemoryRateLimitStore",
    "NoImageError",
    "NotFoundError",
    "Provider",
    "ProviderOptions",
    "QuotaExceededError",
    "RateLimit",
    "RateLimitError",
    "RateLimitInfo",
    "RateLimitStore",
    "RetryPolicy",
    "ServerError",
    "Turn",
    "TurnPart",
    "Usage",
    "__version__",
]
