"""The three recipe apps, loaded from their doc pages, each behind its framework's test client.

Each `*_web` fixture starts the page's app pointed at `server` (a fake Gemini on
127.0.0.1) and wraps the framework's own test client in the same small `Web` interface,
so the behaviour every recipe promises is tested once, in test_recipes.py, for all three.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import pytest

import aigen
from aigen.testing import FakeGemini

from . import _doc

API_KEY = "recipe-test-key-0123456789"
# Retries sleep in real time here: one quick retry, so a test that meets a 5xx is fast.
FAST = aigen.RetryPolicy(max_retries=1, initial_delay=0.01)


@dataclass(frozen=True)
class Answer:
    """What the app answered: the framework's response, reduced to what the tests read."""

    status: int
    headers: Mapping[str, str]  # each framework's own case-insensitive headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Web(Protocol):
    """One recipe app, driven through its framework's test client."""

    def post(self, path: str, payload: object) -> Answer: ...

    def aigen_client(self) -> aigen.Client | aigen.AsyncClient: ...


@pytest.fixture
def server() -> Iterator[FakeGemini]:
    """A fake Gemini API on 127.0.0.1 that accepts only API_KEY."""
    with FakeGemini(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def client_overrides() -> dict[str, Any]:
    """Client keywords a test wants on top of `client_options` (parametrize to change)."""
    return {}


@pytest.fixture
def client_options(server: FakeGemini, client_overrides: dict[str, Any]) -> dict[str, Any]:
    """The aigen client keywords every recipe app is started with."""
    options = {"api_key": API_KEY, "base_url": server.base_url, "retry": FAST, "timeout": 5.0}
    return {**options, **client_overrides}


# -- Flask ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def flask_recipe() -> Iterator[ModuleType]:
    """docs/recipes/flask.md's `imagegen` module."""
    with _doc.importable(_doc.RECIPES / "flask.md"):
        yield importlib.import_module("imagegen")


@dataclass
class FlaskWeb:
    app: Any  # flask.Flask
    http: Any  # flask.testing.FlaskClient

    def post(self, path: str, payload: object) -> Answer:
        response = self.http.post(path, json=payload)
        return Answer(response.status_code, response.headers, response.get_data())

    def aigen_client(self) -> aigen.Client:
        client: aigen.Client = self.app.extensions["aigen"]
        return client


@pytest.fixture
def flask_web(flask_recipe: ModuleType, client_options: dict[str, Any]) -> Iterator[FlaskWeb]:
    app = flask_recipe.create_app({"AIGEN": client_options})
    yield FlaskWeb(app, app.test_client())
    app.extensions["aigen"].close()  # what atexit would do at the end of the process


# -- Django -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_recipe() -> ModuleType:
    """docs/recipes/django.md's `images.client`, in a Django configured from the page.

    Django is configured once per process, so the page's modules stay importable for the
    rest of the run. The page's settings are used as they are, except the cache: its
    Redis is replaced by local memory (one process is all a test needs).
    """
    import django
    from django.conf import settings

    if not settings.configured:
        _doc.install(_doc.RECIPES / "django.md")
        page_settings = importlib.import_module("mysite.settings")
        settings.configure(
            INSTALLED_APPS=["images"],
            ROOT_URLCONF="mysite.urls",
            AIGEN=page_settings.AIGEN,
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            ALLOWED_HOSTS=["testserver"],
            SECRET_KEY="recipe-tests-only",
            USE_TZ=True,
        )
        django.setup()
    assert "images" in settings.INSTALLED_APPS, "Django was configured without the recipe"
    return importlib.import_module("images.client")


@dataclass
class DjangoWeb:
    recipe: ModuleType  # images.client
    http: Any  # django.test.Client

    def post(self, path: str, payload: object) -> Answer:
        response = self.http.post(path, payload, content_type="application/json")
        return Answer(response.status_code, response.headers, response.content)

    def aigen_client(self) -> aigen.Client:
        client: aigen.Client = self.recipe.get_client()
        return client


@pytest.fixture
def django_web(django_recipe: ModuleType, client_options: dict[str, Any]) -> Iterator[DjangoWeb]:
    from django.conf import settings
    from django.core.cache import cache
    from django.test import Client, override_settings

    with override_settings(AIGEN={**settings.AIGEN, **client_options}):
        django_recipe.close_client()  # a client made from other settings
        yield DjangoWeb(django_recipe, Client())
        django_recipe.close_client()
    cache.clear()


# -- FastAPI ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fastapi_recipe() -> Iterator[ModuleType]:
    """docs/recipes/fastapi.md's `main` module."""
    with _doc.importable(_doc.RECIPES / "fastapi.md"):
        yield importlib.import_module("main")


@dataclass
class FastAPIWeb:
    app: Any  # fastapi.FastAPI
    http: Any  # fastapi.testclient.TestClient

    def post(self, path: str, payload: object) -> Answer:
        response = self.http.post(path, json=payload)
        return Answer(response.status_code, response.headers, response.content)

    def aigen_client(self) -> aigen.AsyncClient:
        client: aigen.AsyncClient = self.app.state.aigen
        return client


@pytest.fixture
def fastapi_web(fastapi_recipe: ModuleType, client_options: dict[str, Any]) -> Iterator[FastAPIWeb]:
    from fastapi.testclient import TestClient

    app = fastapi_recipe.create_app(**client_options)
    with TestClient(app) as http:  # runs the lifespan: startup here, shutdown on exit
        yield FastAPIWeb(app, http)


# -- all three --------------------------------------------------------------------------

FRAMEWORKS = ("flask", "django", "fastapi")


@pytest.fixture(params=FRAMEWORKS)
def web(request: pytest.FixtureRequest) -> Web:
    """Each recipe app in turn, started against `server`."""
    app: Web = request.getfixturevalue(f"{request.param}_web")
    return app
