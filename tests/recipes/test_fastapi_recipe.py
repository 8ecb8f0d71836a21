"""docs/recipes/fastapi.md: one AsyncClient per app, made and closed by the lifespan."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

import aigen
from aigen.testing import FakeGemini, success

from ..images import png
from .conftest import API_KEY


def test_a_missing_key_stops_startup(fastapi_recipe: ModuleType) -> None:
    app = fastapi_recipe.create_app()  # no key given, none in the environment
    with pytest.raises(aigen.ConfigurationError, match="GEMINI_API_KEY"), TestClient(app):
        pass


def test_the_module_app_reads_the_environment(
    fastapi_recipe: ModuleType, server: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("AIGEN_BASE_URL", server.base_url)
    app = fastapi_recipe.app  # what `uvicorn main:app` serves
    with TestClient(app) as http:
        assert http.post("/images", json={"prompt": "A red fox"}).status_code == 200
        assert app.state.aigen._engine.settings.retry.deadline == 25.0


def test_the_client_lives_as_long_as_the_app(
    fastapi_recipe: ModuleType, client_options: dict[str, Any]
) -> None:
    app = fastapi_recipe.create_app(**client_options)
    with TestClient(app) as http:
        client: aigen.AsyncClient = app.state.aigen
        for prompt in ["A red fox", "A blue whale"]:
            assert http.post("/images", json={"prompt": prompt}).status_code == 200
            assert app.state.aigen is client
            assert not client._http.is_closed
    assert client._http.is_closed  # shutdown closed it


def test_one_async_client_serves_concurrent_requests(
    fastapi_recipe: ModuleType, client_options: dict[str, Any], server: FakeGemini
) -> None:
    image = png(16, 16)
    server.default = success(image, delay=0.3)
    app = fastapi_recipe.create_app(**client_options)
    with TestClient(app) as http, ThreadPoolExecutor(4) as pool:

        def ask(number: int) -> Any:
            return http.post("/images", json={"prompt": f"Fox number {number}"})

        started = time.monotonic()
        answers = list(pool.map(ask, range(4)))
        elapsed = time.monotonic() - started

    assert [answer.content for answer in answers] == [image] * 4
    assert server.peak_in_flight == 4  # all four were waiting on the provider at once
    assert elapsed < 1.0  # not four waits of 0.3 s, one after another
