"""docs/recipes/flask.md: one Client per app, made in the factory, closed at exit."""

from __future__ import annotations

import atexit
from collections.abc import Callable
from types import ModuleType

import pytest

import aigen
from aigen.testing import FakeGemini

from .conftest import API_KEY


def test_a_missing_key_stops_the_app_factory(flask_recipe: ModuleType) -> None:
    with pytest.raises(aigen.ConfigurationError, match="GEMINI_API_KEY"):
        flask_recipe.create_app()  # no key given, none in the environment


def test_the_key_and_the_url_can_come_from_the_environment(
    flask_recipe: ModuleType, server: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("AIGEN_BASE_URL", server.base_url)
    app = flask_recipe.create_app()  # the page's own settings: RetryPolicy(deadline=25.0)
    try:
        answer = app.test_client().post("/images", json={"prompt": "A red fox"})
        assert answer.status_code == 200
        assert app.extensions["aigen"]._engine.settings.retry.deadline == 25.0
    finally:
        app.extensions["aigen"].close()


def test_the_client_is_closed_at_exit_and_not_after_a_request(
    flask_recipe: ModuleType,
    client_options: dict[str, object],
    server: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at_exit: list[Callable[[], object]] = []
    monkeypatch.setattr(atexit, "register", at_exit.append)

    app = flask_recipe.create_app({"AIGEN": client_options})
    client: aigen.Client = app.extensions["aigen"]
    http = app.test_client()
    for prompt in ["A red fox", "A blue whale"]:
        assert http.post("/images", json={"prompt": prompt}).status_code == 200
        assert not client._http.is_closed  # the app context's teardown left it open

    assert at_exit == [client.close]
    at_exit[0]()
    assert client._http.is_closed
