"""Provider adapters: one module per service, and the `Provider` protocol they follow.

A provider is chosen by name (`"gemini"`, `"openai"`) or passed as an instance of any
class that follows `Provider`. Built-in adapters are imported only when used.
"""

from __future__ import annotations

from importlib import import_module

from .._errors import ConfigurationError
from .._http import FormFile, HttpRequest, HttpResponse
from ._base import (
    AnyProvider,
    ErrorContext,
    MultiStepProvider,
    Provider,
    ProviderAnswer,
    RequestContext,
    api_error_class,
    decode_base64_image,
    parse_json_body,
)
from ._steps import Exchange, NextChunk, Progress, ProviderFlow, ProviderStep, Stream, Wait

__all__ = [
    "BUILTIN_PROVIDERS",
    "AnyProvider",
    "ErrorContext",
    "Exchange",
    "FormFile",
    "HttpRequest",
    "HttpResponse",
    "MultiStepProvider",
    "NextChunk",
    "Progress",
    "Provider",
    "ProviderAnswer",
    "ProviderFlow",
    "ProviderStep",
    "RequestContext",
    "Stream",
    "Wait",
    "api_error_class",
    "builtin_provider",
    "decode_base64_image",
    "parse_json_body",
]

# name -> (module, class); imported lazily so `import aigen` stays cheap.
BUILTIN_PROVIDERS: dict[str, tuple[str, str]] = {
    "gemini": ("aigen.providers.gemini", "GeminiProvider"),
    "openai": ("aigen.providers.openai", "OpenAIProvider"),
}


def builtin_provider(name: str) -> Provider:
    """A built-in provider with its defaults, by name (case-insensitive)."""
    key = name.strip().lower()
    if key not in BUILTIN_PROVIDERS:
        known = ", ".join(repr(n) for n in BUILTIN_PROVIDERS)
        raise ConfigurationError(
            f"unknown provider {name!r}: use one of {known}, or pass a Provider instance"
        )
    module_name, class_name = BUILTIN_PROVIDERS[key]
    provider: Provider = getattr(import_module(module_name), class_name)()
    return provider
