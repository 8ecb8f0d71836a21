"""Resolve a client's settings from its keywords and the environment, once, up front."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from urllib.parse import urlsplit

from ._circuit import CircuitBreaker
from ._constants import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_PROVIDER,
    ENV_BASE_URL,
    ENV_PROVIDER,
)
from ._errors import ConfigurationError
from ._hooks import Hooks
from ._limits import DEFAULT_LIMITS, ConversationLimits
from ._ratelimit import RateLimit
from ._retry import RetryPolicy
from .providers import BUILTIN_PROVIDERS, AnyProvider, MultiStepProvider, Provider, builtin_provider

__all__ = ["MODEL_NAME_CHARACTERS", "Settings", "check_model_name", "resolve_settings"]

# What a model (or deployment) name may hold. It becomes a segment of the URL path
# (Gemini's `/models/{model}:generateContent`, Azure's deployments): a "/", "?", "#", "%",
# space or ".." there would move the request, key included, somewhere else. Every model
# name Google and OpenAI publish fits (fine-tuned OpenAI models use ":").
MODEL_NAME_CHARACTERS = "letters, digits, '.', '_', '-', ':' and '@'"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")


@dataclass(frozen=True)
class Settings:
    """A client's resolved configuration; the key is kept out of the repr."""

    provider: AnyProvider
    api_key: str = field(repr=False)
    base_url: str
    model: str
    retry: RetryPolicy
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    rate_limit: RateLimit | None = None
    circuit_breaker: CircuitBreaker | None = None
    max_concurrency: int | None = None
    conversation_limits: ConversationLimits = DEFAULT_LIMITS
    hooks: Hooks | None = None


def resolve_settings(
    *,
    provider: str | AnyProvider | None,
    api_key: str | None,
    base_url: str | None,
    model: str | None,
    max_retries: int | None,
    retry: RetryPolicy | None,
    allow_insecure_http: bool,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    rate_limit: RateLimit | None = None,
    circuit_breaker: CircuitBreaker | None = None,
    max_concurrency: int | None = None,
    conversation_limits: ConversationLimits | None = None,
    hooks: Hooks | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Apply the precedence in SPEC: keyword, then environment, then the provider's default."""
    _check_types(
        api_key=api_key,
        base_url=base_url,
        model=model,
        max_retries=max_retries,
        retry=retry,
        allow_insecure_http=allow_insecure_http,
        max_response_bytes=max_response_bytes,
        rate_limit=rate_limit,
        circuit_breaker=circuit_breaker,
        max_concurrency=max_concurrency,
        conversation_limits=conversation_limits,
        hooks=hooks,
    )
    env = os.environ if environ is None else environ
    resolved = _resolve_provider(provider, env)
    key = _resolve_api_key(api_key, resolved, env)
    url = _resolve_base_url(base_url, resolved, env, allow_insecure_http)
    if model is not None:
        if not model.strip():
            raise ConfigurationError("model is empty: pass a model name or leave it out")
        check_model_name(model, "model")
    if retry is not None and max_retries is not None:
        raise ConfigurationError(
            "pass max_retries or retry, not both: max_retries is a shortcut for "
            "RetryPolicy(max_retries=...)"
        )
    if max_response_bytes < 1:
        raise ConfigurationError(f"max_response_bytes must be positive, got {max_response_bytes}")
    if max_concurrency is not None and max_concurrency < 1:
        raise ConfigurationError(
            f"max_concurrency must be 1 or more (or None for no limit), got {max_concurrency}"
        )
    if max_retries is not None and max_retries < 0:
        raise ConfigurationError(f"max_retries must be 0 or more, got {max_retries}")
    policy = retry or (
        RetryPolicy() if max_retries is None else RetryPolicy(max_retries=max_retries)
    )
    return Settings(
        provider=resolved,
        api_key=key,
        base_url=url,
        model=model or resolved.default_model,
        retry=policy,
        max_response_bytes=max_response_bytes,
        rate_limit=rate_limit,
        circuit_breaker=circuit_breaker,
        max_concurrency=max_concurrency,
        conversation_limits=conversation_limits or DEFAULT_LIMITS,
        hooks=hooks,
    )


def check_model_name(model: str, where: str) -> str:
    """`model` if it is safe to put in a URL path; a `ConfigurationError` naming the
    allowed characters otherwise (`where` says which keyword or field it came from)."""
    if _MODEL_NAME.fullmatch(model) is None:
        shown = model if len(model) <= 80 else model[:77] + "..."
        hint = ""
        if model.startswith(("models/", "tunedModels/")):
            hint = f" (leave out the prefix: {where}={model.split('/', 1)[1]!r})"
        raise ConfigurationError(
            f"{where}={shown!r} is not a model name aigen can put in a URL{hint}: a model "
            f"name starts with a letter or digit and holds only {MODEL_NAME_CHARACTERS}, "
            "at most 200 characters"
        )
    return model


def _is_int(value: object) -> bool:
    """An `int` that is not a `bool` (`True` is 1 to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(
    *,
    api_key: object,
    base_url: object,
    model: object,
    max_retries: object,
    retry: object,
    allow_insecure_http: object,
    max_response_bytes: object,
    rate_limit: object,
    circuit_breaker: object,
    max_concurrency: object,
    conversation_limits: object = None,
    hooks: object = None,
) -> None:
    """Refuse a keyword of the wrong type now, naming it, rather than fail on each call."""

    def refuse(name: str, value: object, wanted: str) -> ConfigurationError:
        return ConfigurationError(
            f"{name}={_shown(name, value)} is a {type(value).__name__}: {name} takes {wanted}"
        )

    for name, value in (("api_key", api_key), ("base_url", base_url), ("model", model)):
        if value is not None and not isinstance(value, str):
            raise refuse(name, value, "a string (or None for the default)")
    counts = (
        ("max_retries", max_retries, "a whole number of retries, e.g. max_retries=3"),
        ("max_concurrency", max_concurrency, "a whole number of calls, e.g. max_concurrency=4"),
    )
    for name, value, wanted in counts:
        if value is not None and not _is_int(value):
            raise refuse(name, value, f"{wanted} (or None)")
    if not _is_int(max_response_bytes):
        raise refuse(
            "max_response_bytes",
            max_response_bytes,
            "a number of bytes as an int, e.g. max_response_bytes=64 * 1024 * 1024",
        )
    if not isinstance(allow_insecure_http, bool):
        raise refuse("allow_insecure_http", allow_insecure_http, "True or False")
    protections = (
        ("retry", retry, RetryPolicy, "RetryPolicy(max_retries=3)"),
        ("rate_limit", rate_limit, RateLimit, "RateLimit(requests_per_minute=60)"),
        ("circuit_breaker", circuit_breaker, CircuitBreaker, "CircuitBreaker()"),
        (
            "conversation_limits",
            conversation_limits,
            ConversationLimits,
            "ConversationLimits(max_turns=200)",
        ),
        ("hooks", hooks, Hooks, "aigen.Hooks(on_retry=print)"),
    )
    for name, value, cls, example in protections:
        if value is not None and not isinstance(value, cls):
            raise refuse(
                name, value, f"a {cls.__name__}, e.g. {name}={example}, or None to go without"
            )


def _shown(name: str, value: object) -> str:
    """A wrong value as a message may show it: never an api_key's text."""
    if name == "api_key":
        return f"<{type(value).__name__}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _resolve_provider(provider: str | AnyProvider | None, env: Mapping[str, str]) -> AnyProvider:
    if provider is not None and not isinstance(provider, str):
        if not isinstance(provider, (Provider, MultiStepProvider)):
            raise ConfigurationError(
                f"provider={provider!r} is neither a provider name nor a Provider: it needs "
                "name, default_model, default_base_url, api_key_env_vars, takes_seed, "
                "build_request, parse_response and parse_error (or exchange and parse_error)"
            )
        return provider
    name = provider or env.get(ENV_PROVIDER) or _infer_provider_name(env)
    return builtin_provider(name)


def _infer_provider_name(env: Mapping[str, str]) -> str:
    """The built-in provider whose key variable is set; Gemini when none or both are."""
    with_keys = [
        name
        for name, (module, cls) in BUILTIN_PROVIDERS.items()
        if any(env.get(var) for var in getattr(import_module(module), cls).api_key_env_vars)
    ]
    return with_keys[0] if len(with_keys) == 1 else DEFAULT_PROVIDER


def _resolve_api_key(api_key: str | None, provider: AnyProvider, env: Mapping[str, str]) -> str:
    if api_key is not None:
        if not api_key.strip():
            raise ConfigurationError(
                "api_key is empty: pass the key, or leave it out to use the environment"
            )
        return api_key.strip()
    for var in provider.api_key_env_vars:
        value = env.get(var, "").strip()
        if value:
            return value
    names = " or ".join(provider.api_key_env_vars) or "the provider's key variable"
    raise ConfigurationError(f"no API key for {provider.name}: set {names}, or pass api_key=")


def _resolve_base_url(
    base_url: str | None, provider: AnyProvider, env: Mapping[str, str], allow_insecure_http: bool
) -> str:
    url = (base_url or env.get(ENV_BASE_URL) or provider.default_base_url).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigurationError(
            f"base_url {url!r} has a query or fragment: aigen appends each call's path to "
            "base_url, so give only scheme, host and path, e.g. 'https://gw.example.com/gemini'"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {url!r} is not an http(s) URL: give scheme and host, e.g. "
            "'https://proxy.example.com' or 'http://127.0.0.1:8080'"
        )
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing to send the API key over plain http to {parts.hostname}: use https, "
            "or pass allow_insecure_http=True if this network is trusted"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
