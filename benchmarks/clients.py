"""The clients measured, each behind the same two calls: one image, as bytes.

Every client does the whole job a caller needs: send the request, read the answer, and
hand back the decoded image bytes. Raw httpx is the baseline: `httpx.Client` /
`httpx.AsyncClient` with httpx's default pool limits, `response.json()` and
`base64.b64decode`. Each client's library is imported only when that client is made, so
a worker process holds one library alone.

"aigen-core" is aigen without its `speedups` extra: the same client and calls, in a
process where pybase64 cannot be imported, so aigen decodes images with pydantic-core.
"""

from __future__ import annotations

import base64
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "API_KEY",
    "CLIENTS",
    "IMPORTS",
    "IMPORT_SETUP",
    "PROVIDERS_OF",
    "available",
    "make_async",
    "make_sync",
    "prepare",
    "speedups_installed",
]

API_KEY = "bench-key-0123456789"
PROMPT = "a small red boat on a calm lake, morning light"
GEMINI_MODEL = "gemini-2.5-flash-image"
OPENAI_MODEL = "gpt-image-1"
# A generous per-attempt timeout for every client: a loaded 2-core machine moving
# hundreds of megabytes must not time out. It does not change any pool limit.
TIMEOUT = 120.0

CLIENTS = ("httpx", "aigen", "aigen-core", "google-genai", "openai")
_AIGENS = ("aigen", "aigen-core")
PROVIDERS_OF = {
    "httpx": ("gemini", "openai"),
    "aigen": ("gemini", "openai"),
    "aigen-core": ("gemini", "openai"),
    "google-genai": ("gemini",),
    "openai": ("openai",),
}
# What each cold-import row times, per client. `import aigen` is lazy (the clients and
# models load on first access), so "import" alone no longer shows what an app pays:
# "import.client" times the import of the client class, which loads them. Each basis row,
# aigen's own dependencies, sits in the raw httpx column; "import.client_deps" adds the
# pydantic models aigen's client needs.
IMPORTS = {
    "import": {
        "httpx": "import httpx",
        "aigen": "import aigen",
        "aigen-core": "import aigen",
        "google-genai": "from google import genai",
        "openai": "import openai",
    },
    "import.deps": {"httpx": "import httpx, pydantic, tenacity"},
    "import.client": {
        "httpx": "from httpx import Client",
        "aigen": "from aigen import Client",
        "aigen-core": "from aigen import Client",
        "google-genai": "from google.genai import Client",
        "openai": "from openai import OpenAI",
    },
    "import.client_deps": {"httpx": "import httpx, tenacity; from pydantic import BaseModel"},
}
# Run before an import is timed (not timed itself): what `prepare` does in a worker.
IMPORT_SETUP = {"aigen-core": 'import sys; sys.modules["pybase64"] = None'}
_MODULES = {
    "httpx": "httpx",
    "aigen": "aigen",
    "aigen-core": "aigen",
    "google-genai": "google.genai",
    "openai": "openai",
}

SyncCall = Callable[[], bytes]
AsyncCall = Callable[[], Awaitable[bytes]]


def available(client: str) -> bool:
    """Whether `client`'s library is installed (without importing it)."""
    try:
        return importlib.util.find_spec(_MODULES[client]) is not None
    except ModuleNotFoundError:  # the parent package ("google") is missing
        return False


def speedups_installed() -> bool:
    """Whether aigen's `speedups` extra (pybase64) is installed in this interpreter."""
    return importlib.util.find_spec("pybase64") is not None


def prepare(client: str) -> None:
    """Set this process up for `client`; call it before anything imports aigen.

    For aigen-core, pybase64 is made unimportable (a `None` in `sys.modules` makes
    `import pybase64` raise ImportError), as if the extra were not installed. For both
    aigen variants, aigen's choice of decoder is then checked, so a column can never
    silently measure the other decoder.
    """
    if client not in _AIGENS:
        return
    expected = "pybase64" if client == "aigen" and speedups_installed() else "pydantic-core"
    if client == "aigen-core":
        sys.modules["pybase64"] = None  # type: ignore[assignment]
    from aigen._base64 import DECODER as decoder

    if decoder != expected:
        raise RuntimeError(f"{client}: aigen decodes with {decoder}, not {expected}")


def make_sync(client: str, provider: str, base: str) -> tuple[SyncCall, Callable[[], None]]:
    """A synchronous `call() -> image bytes` and its `close()`."""
    if client == "httpx":
        return _httpx_sync(provider, base)
    if client in _AIGENS:
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
    if client in _AIGENS:
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
