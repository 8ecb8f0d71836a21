"""The fast path's shortcuts keep behaviour: lazy import, parsed URLs, request bodies.

Each shortcut (docs/performance.md) must be invisible to a user: `import aigen` still
reaches every public name, a client calling many models still reaches each, and a prompt
that pydantic-core cannot encode is still sent as `json.dumps` would send it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import aigen
from aigen._client import _MAX_PARSED_URLS


def _fresh_interpreter(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_import_aigen_loads_only_the_errors() -> None:
    loaded = _fresh_interpreter(
        "import sys, aigen; "
        "print(sorted(m for m in ('httpx', 'pydantic', 'tenacity', 'asyncio', "
        "'aigen._client', 'aigen._models') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_a_sync_client_does_not_import_asyncio() -> None:
    loaded = _fresh_interpreter(
        "import sys; from aigen import Client; print('asyncio' in sys.modules)"
    )
    assert loaded == "False"


def test_every_public_name_resolves_after_a_bare_import() -> None:
    names = _fresh_interpreter(
        "import aigen; print(','.join(n for n in aigen.__all__ if getattr(aigen, n, None) is None))"
    )
    assert names == ""
    assert set(aigen.__all__) <= set(dir(aigen))


def test_the_providers_subpackage_is_an_attribute_after_a_bare_import() -> None:
    found = _fresh_interpreter("import aigen; print(aigen.providers.Provider.__name__)")
    assert found == "Provider"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        aigen.NoSuchThing  # noqa: B018


def test_a_client_calling_many_models_reaches_each(make_client: Any) -> None:
    import respx

    from .kits import KITS

    kit = KITS["gemini"]
    with respx.mock() as router:
        route = kit.route(router)
        route.mock(return_value=kit.success())
        client = make_client(provider="gemini")
        models = [f"gemini-test-{i}" for i in range(_MAX_PARSED_URLS + 6)]
        for model in models:
            client.generate("x", model=model)
        sent = [str(call.request.url).rsplit("/", 1)[1] for call in route.calls]
    assert sent == [f"{model}:generateContent" for model in models]
    assert 0 < len(client.target._urls) <= _MAX_PARSED_URLS


def test_a_prompt_that_was_not_utf8_is_sent_as_json_dumps_would(
    make_client: Any, kit: Any, api: Any
) -> None:
    # What Python makes of a command-line argument holding the byte 0xff.
    prompt = b"a cat \xff".decode("utf-8", "surrogateescape")
    api.mock(return_value=kit.success())
    make_client(provider=kit.name).generate(prompt)
    sent = json.loads(api.calls.last.request.content)
    assert prompt in json.dumps(sent, ensure_ascii=False)
