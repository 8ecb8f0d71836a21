"""The clients measured, each behind the same two calls: one image, as bytes.

Every client does the whole job a caller needs: send the request, read the answer, and
hand back the decoded image bytes. Raw httpx is the baseline: `httpx.Client` /
`httpx.AsyncClient` with httpx's default pool limits, `response.json()` and
`base64.b64decode`. Each client's library is imported only when that client is made, so
a worker process holds one library alone.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "API_KEY",
    "CLIENTS",
    "IMPORTS",
    "PROVIDERS_OF",
    "available",
    "make_async",
    "make_sync",
]

API_KEY = "bench-key-0123456789"
PROMPT = "a small red boat on a calm lake, morning light"
GEMINI_MODEL = "gemini-2.5-flash-image"
OPENAI_MODEL = "gpt-image-1"
# A generous per-attempt timeout for every client: a loaded 2-core machine moving
# hundreds of megabytes must not time out. It does not change any pool limit.
TIMEOUT = 120.0

CLIENTS = ("httpx", "aigen", "google-genai", "openai")
PROVIDERS_OF = {
    "httpx": ("gemini", "openai"),
    "aigen": ("gemini", "openai"),
    "google-genai": ("gemini",),
    "openai": ("openai",),
}
# What "cold import" times for each client; "deps" is aigen's own dependencies, the
# basis of the import target.
IMPORTS = {
    "httpx": "import httpx",
    "aigen": "import aigen",
    "google-genai": "from google import genai",
    "openai": "import openai",
    "deps": "import httpx, pydantic, tenacity",
}
_MODULES = {"httpx": "httpx", "aigen": "aigen", "google-genai": "google.genai", "openai": "openai"}

SyncCall = Callable[[], bytes]
AsyncCall = Callable[[], Awaitable[bytes]]


def available(client: str) -> bool:
    """Whether `client`'s library is installed (without importing it)."""
    try:
        return importlib.util.find_spec(_MODULES[client]) is not None
    except ModuleNotFoundError:  # the parent package ("google") is missing
        return False


def make_sync(client: str, provider: str, base: str) -> tuple[SyncCall, Callable[[], None]]:
    """A synchronous `call() -> image bytes` and its `close()`."""
    if client == "httpx":
        return _httpx_sync(provider, base)
    if client == "aigen":
        return _aigen_sync(provider, base)
    if client == "google-genai":
        return _genai_sync(base)
    if client == "openai":
        return _openai_sync(base)
    raise ValueError(f"unknown client {client!r}")


def make_async(
    client: str, provider: str, base: str
) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    """An asynchronous `await call() -> image bytes` and its `await close()`."""
    if client == "httpx":
        return _httpx_async(provider, base)
    if client == "aigen":
        return _aigen_async(provider, base)
    if client == "google-genai":
        return _genai_async(base)
    if client == "openai":
        return _openai_async(base)
    raise ValueError(f"unknown client {client!r}")


# -- raw httpx ---------------------------------------------------------------------


def _httpx_request(provider: str, base: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    if provider == "gemini":
        return (
            f"{base}/v1beta/models/{GEMINI_MODEL}:generateContent",
            {"x-goog-api-key": API_KEY},
            {
                "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]},
            },
        )
    return (
        f"{base}/v1/images/generations",
        {"authorization": f"Bearer {API_KEY}"},
        {"model": OPENAI_MODEL, "prompt": PROMPT},
    )


def _image_from_json(provider: str, answer: Any) -> bytes:
    if provider == "gemini":
        for part in answer["candidates"][0]["content"]["parts"]:
            inline = part.get("inlineData")
            if inline:
                return base64.b64decode(inline["data"])
        raise ValueError("no image in the Gemini answer")
    return base64.b64decode(answer["data"][0]["b64_json"])


def _httpx_sync(provider: str, base: str) -> tuple[SyncCall, Callable[[], None]]:
    import httpx

    http = httpx.Client(timeout=TIMEOUT)
    url, headers, body = _httpx_request(provider, base)

    def call() -> bytes:
        response = http.post(url, json=body, headers=headers)
        response.raise_for_status()
        return _image_from_json(provider, response.json())

    return call, http.close


def _httpx_async(provider: str, base: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    import httpx

    http = httpx.AsyncClient(timeout=TIMEOUT)
    url, headers, body = _httpx_request(provider, base)

    async def call() -> bytes:
        response = await http.post(url, json=body, headers=headers)
        response.raise_for_status()
        return _image_from_json(provider, response.json())

    return call, http.aclose


# -- aigen -------------------------------------------------------------------------


def _aigen_options(provider: str, base: str) -> dict[str, Any]:
    model = GEMINI_MODEL if provider == "gemini" else OPENAI_MODEL
    return {
        "provider": provider,
        "api_key": API_KEY,
        "base_url": base,
        "model": model,
        "timeout": TIMEOUT,
        "max_retries": 0,
    }


def _aigen_sync(provider: str, base: str) -> tuple[SyncCall, Callable[[], None]]:
    import aigen

    client = aigen.Client(**_aigen_options(provider, base))

    def call() -> bytes:
        return client.generate(PROMPT).image_data

    return call, client.close


def _aigen_async(provider: str, base: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    import aigen

    client = aigen.AsyncClient(**_aigen_options(provider, base))

    async def call() -> bytes:
        return (await client.generate(PROMPT)).image_data

    return call, client.aclose


# -- google-genai ------------------------------------------------------------------


def _genai_client(base: str) -> Any:
    from google import genai
    from google.genai import types

    options = types.HttpOptions(
        base_url=base + "/", api_version="v1beta", timeout=int(TIMEOUT * 1000)
    )
    return genai.Client(api_key=API_KEY, http_options=options)


def _genai_config() -> Any:
    from google.genai import types

    return types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"])


def _genai_image(response: Any) -> bytes:
    for part in response.candidates[0].content.parts:
        if part.inline_data is not None and part.inline_data.data:
            data: bytes = part.inline_data.data
            return data
    raise ValueError("no image in the google-genai response")


def _genai_sync(base: str) -> tuple[SyncCall, Callable[[], None]]:
    client = _genai_client(base)
    config = _genai_config()

    def call() -> bytes:
        response = client.models.generate_content(
            model=GEMINI_MODEL, contents=PROMPT, config=config
        )
        return _genai_image(response)

    return call, client.close


def _genai_async(base: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    client = _genai_client(base)
    config = _genai_config()

    async def call() -> bytes:
        response = await client.aio.models.generate_content(
            model=GEMINI_MODEL, contents=PROMPT, config=config
        )
        return _genai_image(response)

    async def close() -> None:
        await client.aio.aclose()

    return call, close


# -- openai ------------------------------------------------------------------------


def _openai_image(response: Any) -> bytes:
    if not response.data or not response.data[0].b64_json:
        raise ValueError("no b64_json in the openai response")
    return base64.b64decode(response.data[0].b64_json)


def _openai_sync(base: str) -> tuple[SyncCall, Callable[[], None]]:
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=TIMEOUT)

    def call() -> bytes:
        response = client.images.generate(model=OPENAI_MODEL, prompt=PROMPT)
        return _openai_image(response)

    return call, client.close


def _openai_async(base: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    import openai

    client = openai.AsyncOpenAI(
        base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=TIMEOUT
    )

    async def call() -> bytes:
        response = await client.images.generate(model=OPENAI_MODEL, prompt=PROMPT)
        return _openai_image(response)

    return call, client.close
