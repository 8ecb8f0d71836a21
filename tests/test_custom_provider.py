"""The custom-provider page's own code, run against a mocked gateway with both clients."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen.providers import Provider

from .images import png

DOC = Path(__file__).parent.parent / "docs" / "custom-provider.md"
GATEWAY = "https://images.internal.example.com/v2/images"


@pytest.fixture(scope="module")
def gateway_provider_class() -> Any:
    """Exactly the first python block of docs/custom-provider.md, executed."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None, "docs/custom-provider.md lost its example"
    namespace: dict[str, Any] = {"__name__": "custom_provider_doc"}
    exec(compile(block.group(1), str(DOC), "exec"), namespace)
    return namespace["GatewayProvider"]


def test_the_documented_provider_follows_the_protocol(gateway_provider_class: Any) -> None:
    assert isinstance(gateway_provider_class(), Provider)


def test_the_documented_provider_generates(make_client: Any, gateway_provider_class: Any) -> None:
    image = png(48, 32)
    answer = {"id": "gw-1", "image_base64": _b64(image)}
    with respx.mock() as router:
        route = router.post(GATEWAY).mock(return_value=httpx.Response(200, json=answer))
        client = make_client(provider=gateway_provider_class(), api_key="token-1")
        result = client.generate("A lighthouse at dusk", width=768, height=512, seed=42)
    sent = json.loads(route.calls[0].request.content)
    assert sent == {
        "model": "house-diffusion-v3",
        "prompt": "A lighthouse at dusk",
        "width": 768,
        "height": 512,
        "seed": 42,
    }
    assert route.calls[0].request.headers["authorization"] == "Bearer token-1"
    assert (result.provider, result.request_id, result.seed) == ("gateway", "gw-1", 42)
    assert (result.mime_type, result.width, result.height) == ("image/png", 48, 32)


def test_the_documented_provider_reads_its_key_variable(
    make_client: Any, gateway_provider_class: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TOKEN", "from-env")
    with respx.mock() as router:
        route = router.post(GATEWAY).mock(
            return_value=httpx.Response(200, json={"id": "x", "image_base64": _b64(png())})
        )
        make_client(provider=gateway_provider_class(), api_key=None).generate("x")
    assert route.calls[0].request.headers["authorization"] == "Bearer from-env"


def test_the_documented_provider_gets_retries_and_safety_for_free(
    make_client: Any, gateway_provider_class: Any
) -> None:
    refused = {"error": {"message": "prompt refused", "reason": "unsafe_prompt"}}
    with respx.mock() as router:
        route = router.post(GATEWAY).mock(
            side_effect=[
                httpx.Response(
                    503, json={"error": {"message": "busy"}}, headers={"retry-after": "2"}
                ),
                httpx.Response(400, json=refused),
            ]
        )
        client = make_client(provider=gateway_provider_class())
        with pytest.raises(aigen.ContentPolicyError) as caught:
            client.generate("x")
    assert caught.value.stage == "prompt"
    assert caught.value.attempts == 2
    assert route.call_count == 2


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
