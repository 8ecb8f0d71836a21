"""aigen: one call to an image model that does the right thing.

`Client` (sync) and `AsyncClient` (async) generate images through Gemini or OpenAI,
retrying what is worth retrying, obeying the server's hints, and raising typed errors
(`ContentPolicyError`, `RateLimitError`, ...) for what is not.
"""

from typing import TYPE_CHECKING

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
    StoreUnavailableError,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._circuit import CircuitBreaker
    from ._client import ClientOptions
    from ._conversation import AsyncConversation, Conversation, ConversationState
    from ._hooks import AttemptEvent, ErrorEvent, Hooks, ResponseEvent
    from ._limits import ConversationLimits
    from ._memory_store import MemoryStore
    from ._models import (
        GenerationRequest,
        GenerationResponse,
        ProviderOptions,
        RateLimitInfo,
        Turn,
        TurnPart,
        Usage,
    )
    from ._ratelimit import MemoryRateLimitStore, RateLimit
    from ._retry import RetryEvent, RetryPolicy
    from ._store import CircuitStore, CircuitVerdict, RateChange, RateLimitStore
    from ._sync_client import Client
    from ._transport import DefaultAsyncHttpxClient, DefaultHttpxClient
    from .providers import Provider

# The clients and models are imported on first use, as pydantic does for its own names:
# `import aigen` (the CLI's start, a module that only names a type) stays cheap, and
# `from aigen import Client` imports what a client needs. The errors are plain classes
# and always here, so `except aigen.RateLimitError` never pays for more.
_LAZY: dict[str, str] = {
    "CircuitBreaker": "._circuit",
    "AsyncClient": "._async_client",
    "ClientOptions": "._client",
    "Client": "._sync_client",
    "DefaultAsyncHttpxClient": "._transport",
    "DefaultHttpxClient": "._transport",
    "AsyncConversation": "._conversation",
    "AttemptEvent": "._hooks",
    "ErrorEvent": "._hooks",
    "Hooks": "._hooks",
    "ResponseEvent": "._hooks",
    "Conversation": "._conversation",
    "ConversationState": "._conversation",
    "ConversationLimits": "._limits",
    "GenerationRequest": "._models",
    "GenerationResponse": "._models",
    "ProviderOptions": "._models",
    "RateLimitInfo": "._models",
    "Turn": "._models",
    "TurnPart": "._models",
    "Usage": "._models",
    "MemoryRateLimitStore": "._ratelimit",
    "RateLimit": "._ratelimit",
    "CircuitStore": "._store",
    "CircuitVerdict": "._store",
    "RateChange": "._store",
    "MemoryStore": "._memory_store",
    "RateLimitStore": "._store",
    "RetryEvent": "._retry",
    "RetryPolicy": "._retry",
    "Provider": ".providers",
}


# Subpackages reachable as attributes after a bare `import aigen`, as they were when this
# module imported them itself.
_SUBMODULES = frozenset({"providers"})


def __getattr__(name: str) -> object:
    from importlib import import_module

    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)  # the import binds it in globals()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aigen' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AigenError",
    "AsyncClient",
    "AsyncConversation",
    "AttemptEvent",
    "AuthenticationError",
    "BadRequestError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitStore",
    "CircuitVerdict",
    "Client",
    "ClientOptions",
    "ConfigurationError",
    "ContentPolicyError",
    "Conversation",
    "ConversationLimits",
    "ConversationState",
    "DefaultAsyncHttpxClient",
    "DefaultHttpxClient",
    "ErrorEvent",
    "GenerationError",
    "GenerationRequest",
    "GenerationResponse",
    "Hooks",
    "MemoryRateLimitStore",
    "MemoryStore",
    "NoImageError",
    "NotFoundError",
    "Provider",
    "ProviderOptions",
    "QuotaExceededError",
    "RateChange",
    "RateLimit",
    "RateLimitError",
    "RateLimitInfo",
    "RateLimitStore",
    "ResponseEvent",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "StoreUnavailableError",
    "Turn",
    "TurnPart",
    "Usage",
    "__version__",
]
