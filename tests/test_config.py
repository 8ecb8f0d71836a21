"""Constructing a client (SPEC "Constructing a client"): keywords, environment, safety checks."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
import respx

import aigen

from . import gemini_bodies as gb
from .conftest import API_KEY

BASE = "https://generativelanguage.googleapis.com"
PROXY = "https://proxy.example.com"


def client_class(kind: str) -> type[aigen.Client] | type[aigen.AsyncClient]:
    return aigen.Client if kind == "sync" else aigen.AsyncClient


@pytest.fixture
def router() -> Any:
    """A respx router answering Gemini's default-model route on any host."""
    with respx.mock(assert_all_called=False) as mock:
        mock.post(url__regex=r"^https?://[^/]+(/[^:]*)?:generateContent$").mock(
            return_value=httpx.Response(200, json=gb.image_answer())
        )
        yield mock


def last_request(router: Any) -> httpx.Request:
    request: httpx.Request = router.calls.last.request
    return request


# -- the API key -----------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_api_key_from_the_environment(
    make_client: Any, router: Any, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "env-key-123")
    client = make_client(api_key=None)
    assert client.provider.name == "gemini"
    client.generate("A fox")
    assert last_request(router).headers["x-goog-api-key"] == "env-key-123"


def test_gemini_api_key_is_read_before_google_api_key(
    make_client: Any, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    make_client(api_key=None).generate("A fox")
    assert last_request(router).headers["x-goog-api-key"] == "gemini-key"


def test_empty_variable_falls_through_to_the_next(
    make_client: Any, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "  ")
    monkeypatch.setenv("GOOGLE_API_KEY", " google-key\n")
    make_client(api_key=None).generate("A fox")
    assert last_request(router).headers["x-goog-api-key"] == "google-key"


def test_explicit_api_key_wins_over_the_environment(
    make_client: Any, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "env-key")
    make_client(api_key="explicit-key").generate("A fox")
    assert last_request(router).headers["x-goog-api-key"] == "explicit-key"


def test_missing_key_names_both_variables(client_kind: str) -> None:
    with pytest.raises(aigen.ConfigurationError) as caught:
        client_class(client_kind)()
    message = str(caught.value)
    assert "GEMINI_API_KEY" in message
    assert "GOOGLE_API_KEY" in message
    assert "api_key=" in message


def test_blank_api_key_keyword_is_refused(client_kind: str) -> None:
    with pytest.raises(aigen.ConfigurationError, match="api_key"):
        client_class(client_kind)(api_key="   ")


# -- the provider ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["gemini", "Gemini", " GEMINI "])
def test_provider_from_aigen_provider(
    client_kind: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AIGEN_PROVIDER", value)
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    assert client_class(client_kind)().provider.name == "gemini"


def test_aigen_provider_openai(client_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGEN_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    client = client_class(client_kind)()
    assert client.provider.name == "openai"
    assert client.model == "gpt-image-2"


def test_provider_is_inferred_from_the_key_variable(
    client_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert client_class(client_kind)().provider.name == "openai"


def test_aigen_provider_wins_when_both_keys_are_set(
    client_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GEMINI_API_KEY", "g-test")
    monkeypatch.setenv("AIGEN_PROVIDER", "openai")
    assert client_class(client_kind)().provider.name == "openai"
    monkeypatch.setenv("AIGEN_PROVIDER", "gemini")
    assert client_class(client_kind)().provider.name == "gemini"


def test_provider_keyword_wins_over_aigen_provider(
    client_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGEN_PROVIDER", "no-such-provider")
    client = client_class(client_kind)(provider="gemini", api_key=API_KEY)
    assert client.provider.name == "gemini"


@pytest.mark.parametrize("source", ["keyword", "environment"])
def test_unknown_provider_lists_the_known_ones(
    client_kind: str, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    if source == "environment":
        monkeypatch.setenv("AIGEN_PROVIDER", "dalle")
        keywords: dict[str, Any] = {"api_key": API_KEY}
    else:
        keywords = {"api_key": API_KEY, "provider": "dalle"}
    with pytest.raises(aigen.ConfigurationError) as caught:
        client_class(client_kind)(**keywords)
    message = str(caught.value)
    assert "dalle" in message
    assert "'gemini'" in message
    assert "'openai'" in message


def test_provider_that_is_not_a_provider_is_refused(client_kind: str) -> None:
    with pytest.raises(aigen.ConfigurationError):
        client_class(client_kind)(provider=object(), api_key=API_KEY)  # type: ignore[arg-type]


# -- the base URL ----------------------------------------------------------------------


def test_default_base_url(make_client: Any, router: Any) -> None:
    make_client().generate("A fox")
    assert str(last_request(router).url).startswith(f"{BASE}/v1beta/models/")


@pytest.mark.parametrize("value", [PROXY, f"{PROXY}/"])
def test_base_url_from_aigen_base_url(
    make_client: Any, router: Any, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AIGEN_BASE_URL", value)
    make_client().generate("A fox")
    assert str(last_request(router).url) == (
        f"{PROXY}/v1beta/models/gemini-2.5-flash-image:generateContent"
    )


def test_base_url_with_a_path_prefix(make_client: Any, router: Any) -> None:
    make_client(base_url="https://gateway.example.com/google/").generate("A fox")
    assert str(last_request(router).url) == (
        "https://gateway.example.com/google/v1beta/models/gemini-2.5-flash-image:generateContent"
    )


def test_base_url_keyword_wins_over_the_environment(
    make_client: Any, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGEN_BASE_URL", "https://env.example.com")
    make_client(base_url=PROXY).generate("A fox")
    assert last_request(router).url.host == "proxy.example.com"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://proxy.example.com",
        "file:///etc/passwd",
        "ws://127.0.0.1:8080",
        "generativelanguage.googleapis.com",
        "https://",
        "localhost:8080",
    ],
)
def test_base_url_that_is_not_http_is_refused(client_kind: str, url: str) -> None:
    with pytest.raises(aigen.ConfigurationError, match="base_url"):
        client_class(client_kind)(api_key=API_KEY, base_url=url)


def test_aigen_base_url_that_is_not_http_is_refused(
    client_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGEN_BASE_URL", "ftp://proxy.example.com")
    with pytest.raises(aigen.ConfigurationError, match=re.escape("ftp://proxy.example.com")):
        client_class(client_kind)(api_key=API_KEY)


@pytest.mark.parametrize(
    "url", ["http://proxy.example.com", "http://10.0.0.5:8080", "http://localhost.example.com"]
)
def test_plain_http_to_another_host_is_refused(client_kind: str, url: str) -> None:
    with pytest.raises(aigen.ConfigurationError) as caught:
        client_class(client_kind)(api_key=API_KEY, base_url=url)
    message = str(caught.value)
    assert "allow_insecure_http=True" in message
    assert API_KEY not in message


def test_plain_http_from_the_environment_is_refused(
    client_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGEN_BASE_URL", "http://proxy.example.com")
    with pytest.raises(aigen.ConfigurationError, match="allow_insecure_http"):
        client_class(client_kind)(api_key=API_KEY)


def test_plain_http_allowed_when_asked(make_client: Any, router: Any) -> None:
    client = make_client(base_url="http://proxy.internal:8080", allow_insecure_http=True)
    client.generate("A fox")
    assert str(last_request(router).url).startswith("http://proxy.internal:8080/v1beta/")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:9000", "http://LOCALHOST", "http://[::1]:8080"],
)
def test_plain_http_to_loopback_is_allowed(make_client: Any, router: Any, url: str) -> None:
    make_client(base_url=url).generate("A fox")
    sent = last_request(router)
    assert sent.url.scheme == "http"
    assert sent.headers["x-goog-api-key"] == API_KEY


# -- repr ------------------------------------------------------------------------------


def test_repr_shows_the_settings_and_never_the_key(make_client: Any) -> None:
    client = make_client(base_url=PROXY, model="gemini-3-pro-image-preview")
    text = repr(client.target)
    assert text.startswith(type(client.target).__name__ + "(")
    assert "gemini" in text
    assert PROXY in text
    assert "gemini-3-pro-image-preview" in text
    assert API_KEY not in text
    assert API_KEY not in str(vars(client.target))  # nor in any attribute's repr


def test_repr_without_the_key_from_the_environment(
    client_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "env-secret-key-42")
    assert "env-secret-key-42" not in repr(client_class(client_kind)())


# -- the HTTP client and closing -------------------------------------------------------


def test_users_http_client_is_used_and_not_closed(client_kind: str, router: Any) -> None:
    headers = {"x-team": "imaging"}
    if client_kind == "sync":
        http = httpx.Client(headers=headers)
        client = aigen.Client(api_key=API_KEY, http_client=http)
        client.generate("A fox")
        client.close()
        with aigen.Client(api_key=API_KEY, http_client=http) as other:
            other.generate("A fox")
        assert not http.is_closed
        http.close()
    else:

        async def main() -> None:
            http = httpx.AsyncClient(headers=headers)
            client = aigen.AsyncClient(api_key=API_KEY, http_client=http)
            await client.generate("A fox")
            await client.aclose()
            async with aigen.AsyncClient(api_key=API_KEY, http_client=http) as other:
                await other.generate("A fox")
            assert not http.is_closed
            await http.aclose()

        asyncio.run(main())
    # respx saw the calls, sent through the user's client (its default header is on them).
    assert router.calls.call_count == 2
    assert all(call.request.headers["x-team"] == "imaging" for call in router.calls)


def test_own_http_client_is_closed(client_kind: str, router: Any) -> None:
    if client_kind == "sync":
        client = aigen.Client(api_key=API_KEY)
        client.generate("A fox")
        client.close()
        assert client._http.is_closed
    else:

        async def main() -> None:
            client = aigen.AsyncClient(api_key=API_KEY)
            await client.generate("A fox")
            await client.aclose()
            assert client._http.is_closed

        asyncio.run(main())


def test_context_managers(client_kind: str, router: Any) -> None:
    if client_kind == "sync":
        with aigen.Client(api_key=API_KEY) as client:
            assert isinstance(client, aigen.Client)
            assert client.generate("A fox").image_data
        assert client._http.is_closed
    else:

        async def main() -> None:
            async with aigen.AsyncClient(api_key=API_KEY) as client:
                assert isinstance(client, aigen.AsyncClient)
                assert (await client.generate("A fox")).image_data
            assert client._http.is_closed

        asyncio.run(main())
    assert router.calls.call_count == 1


def test_context_manager_closes_on_error(client_kind: str, router: Any) -> None:
    router.routes[0].mock(return_value=httpx.Response(400, json=gb.key_invalid()))
    if client_kind == "sync":
        with pytest.raises(aigen.AuthenticationError), aigen.Client(api_key=API_KEY) as client:
            client.generate("A fox")
        assert client._http.is_closed
    else:
        made: list[aigen.AsyncClient] = []

        async def main() -> None:
            async with aigen.AsyncClient(api_key=API_KEY) as client:
                made.append(client)
                await client.generate("A fox")

        with pytest.raises(aigen.AuthenticationError):
            asyncio.run(main())
        assert made[0]._http.is_closed


# -- keywords of the wrong type (issue 11) --------------------------------------------------

WRONG_TYPES = [
    ("circuit_breaker", False, "CircuitBreaker"),
    ("circuit_breaker", {"failure_threshold": 3}, "CircuitBreaker"),
    ("rate_limit", 60, "RateLimit"),
    ("retry", 2, "RetryPolicy"),
    ("max_retries", "3", "whole number"),
    ("max_retries", True, "whole number"),
    ("max_retries", 2.0, "whole number"),
    ("max_concurrency", "4", "whole number"),
    ("max_concurrency", True, "whole number"),
    ("max_response_bytes", "64MB", "number of bytes"),
    ("max_response_bytes", True, "number of bytes"),
    ("max_response_bytes", 1e6, "number of bytes"),
    ("allow_insecure_http", "yes", "True or False"),
    ("allow_insecure_http", 1, "True or False"),
    ("model", 3, "string"),
    ("base_url", b"https://gw", "string"),
]


@pytest.mark.parametrize(("keyword", "value", "wanted"), WRONG_TYPES)
def test_a_keyword_of_the_wrong_type_is_refused_at_construction(
    client_kind: str, keyword: str, value: object, wanted: str
) -> None:
    with pytest.raises(aigen.ConfigurationError) as caught:
        client_class(client_kind)(api_key=API_KEY, **{keyword: value})
    message = str(caught.value)
    assert f"{keyword}=" in message
    assert wanted in message


def test_an_api_key_of_the_wrong_type_is_refused_without_showing_it(client_kind: str) -> None:
    with pytest.raises(aigen.ConfigurationError, match="api_key") as caught:
        client_class(client_kind)(api_key=b"sk-secret-bytes-key-1234")  # type: ignore[arg-type]
    assert "secret" not in str(caught.value)


BAD_TIMEOUTS = [
    0,
    0.0,
    -1,
    float("nan"),
    float("inf"),
    "30",
    True,
    httpx.Timeout(0),
    httpx.Timeout(10.0, read=-1.0),
    httpx.Timeout(10.0, connect=float("nan")),
    httpx.Timeout(10.0, pool=float("inf")),
]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
def test_an_unusable_timeout_is_refused_at_construction(client_kind: str, timeout: object) -> None:
    with pytest.raises(aigen.ConfigurationError, match="timeout") as caught:
        client_class(client_kind)(api_key=API_KEY, timeout=timeout)  # type: ignore[arg-type]
    assert "positive, finite number" in str(caught.value)


@pytest.mark.parametrize(
    "timeout", [5, 0.5, httpx.Timeout(10.0, read=None), httpx.Timeout(None), None], ids=repr
)
def test_a_usable_timeout_is_taken(make_client: Any, router: Any, timeout: object) -> None:
    make_client(timeout=timeout).generate("A fox")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: aigen.RetryPolicy(max_retries=True), "max_retries"),
        (lambda: aigen.RetryPolicy(max_retries="3"), "max_retries"),
        (lambda: aigen.RetryPolicy(initial_delay="1"), "initial_delay"),
        (lambda: aigen.RetryPolicy(deadline=float("nan")), "deadline"),
        (lambda: aigen.RetryPolicy(max_delay=float("inf")), "max_delay"),
        (lambda: aigen.RateLimit(requests_per_minute="60"), "requests_per_minute"),
        (lambda: aigen.RateLimit(requests_per_minute=60, burst=True), "burst"),
        (lambda: aigen.CircuitBreaker(failure_threshold=True), "failure_threshold"),
        (lambda: aigen.CircuitBreaker(reset_timeout="30"), "reset_timeout"),
    ],
)
def test_protection_settings_take_no_bools_or_text(build: Any, field: str) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match=field):
        build()


def test_protection_settings_still_take_ints_for_floats() -> None:
    assert aigen.RetryPolicy(initial_delay=1, deadline=30).deadline == 30
    assert aigen.RateLimit(requests_per_minute=60).requests_per_minute == 60


@pytest.mark.parametrize(
    "fields",
    [
        {"width": True, "height": True},
        {"width": "512", "height": 512},
        {"seed": True},
        {"width": 512.5, "height": 512},
    ],
    ids=repr,
)
def test_generate_refuses_bools_and_text_for_numbers_before_sending(
    make_client: Any, router: Any, fields: dict[str, object]
) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="whole number"):
        make_client().generate("A fox", **fields)
    assert not router.calls


# -- a model name never moves the request (issue 11) ----------------------------------------

GATEWAY = "https://gw/tenant-a/gemini"
HOSTILE_MODELS = [
    "../../../../tenant-b/admin?drop=1#",
    "gemini-2.5-flash-image/../../admin",
    "gemini?x=1",
    "gemini#frag",
    "gemini%2F..%2Fadmin",
    "gemini image",
    "gemini\n",
    "..",
    "models/gemini-2.5-flash-image",
]


@pytest.fixture
def gateway() -> Any:
    """Anything sent to the gateway host, answered 200 with an image (Gemini's or OpenAI's)."""
    from .kits import KITS

    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="gw").mock(
            side_effect=lambda request: (
                KITS["openai"] if "/images/" in request.url.path else KITS["gemini"]
            ).success()
        )
        yield mock


@pytest.mark.parametrize("provider", ["gemini", "openai"])
@pytest.mark.parametrize("model", HOSTILE_MODELS, ids=repr)
def test_a_hostile_client_model_is_refused_naming_the_allowed_characters(
    client_kind: str, gateway: Any, provider: str, model: str
) -> None:
    with pytest.raises(aigen.ConfigurationError, match="letters, digits") as caught:
        client_class(client_kind)(provider=provider, api_key=API_KEY, base_url=GATEWAY, model=model)
    assert "model=" in str(caught.value)
    assert not gateway.calls


@pytest.mark.parametrize("provider", ["gemini", "openai"])
@pytest.mark.parametrize("model", HOSTILE_MODELS, ids=repr)
def test_a_hostile_request_model_is_refused_before_sending(
    make_client: Any, gateway: Any, provider: str, model: str
) -> None:
    client = make_client(provider=provider, base_url=GATEWAY, max_retries=0)
    with pytest.raises(aigen.ConfigurationError, match="letters, digits"):
        client.generate("A fox", model=model)
    with pytest.raises(aigen.ConfigurationError, match="letters, digits"):
        client.conversation(model=model).send("A fox")
    assert not gateway.calls


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_every_request_stays_under_the_gateway_path(
    make_client: Any, gateway: Any, provider: str
) -> None:
    models = {"gemini": "gemini-3-pro-image-preview", "openai": "ft:gpt-image-1:acme:v2@1"}
    client = make_client(provider=provider, base_url=GATEWAY)
    client.generate("A fox", model=models[provider])
    url = gateway.calls.last.request.url
    assert url.path.startswith("/tenant-a/gemini/")
    assert (url.query, url.fragment) == (b"", "")


@pytest.mark.parametrize("url", ["https://gw/tenant-a?x=1", "https://gw/tenant-a#top"])
def test_a_base_url_with_a_query_or_fragment_is_refused(client_kind: str, url: str) -> None:
    with pytest.raises(aigen.ConfigurationError, match="query or fragment"):
        client_class(client_kind)(api_key=API_KEY, base_url=url)


def test_the_gemini_provider_escapes_a_model_it_is_handed_directly() -> None:
    """The clients refuse such names; a provider called on its own still keeps the path."""
    from aigen.providers import RequestContext
    from aigen.providers.gemini import GeminiProvider

    context = RequestContext(
        model="../../../../tenant-b/admin?drop=1#", seed=1, base_url=GATEWAY, api_key=API_KEY
    )
    built = GeminiProvider().build_request(aigen.GenerationRequest(prompt="x"), context)
    url = httpx.URL(built.url)
    assert url.path.startswith("/tenant-a/gemini/v1beta/models/")
    assert url.path.endswith(":generateContent")
    assert (url.query, url.fragment) == (b"", "")


@pytest.mark.parametrize("concurrency", ["4", True, 2.0])
def test_generate_many_refuses_a_concurrency_that_is_not_an_int(
    make_client: Any, router: Any, concurrency: object
) -> None:
    with pytest.raises(aigen.ConfigurationError, match=r"concurrency=.*whole number"):
        make_client().generate_many(["A fox"], concurrency=concurrency)
    assert not router.calls
