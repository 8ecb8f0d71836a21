"""`aigen.testing` itself: drawn images, the outcomes users script, the plugin, the respx helper.

The fakes answer over a real socket in real time; the clients here get fake time
(`make_client`'s default), so a scripted 30 s hint costs nothing: `fake_time.sleeps`
shows what aigen waited. test_e2e.py covers the fakes' wire in depth.
"""

from __future__ import annotations

import inspect
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen._images import image_size
from aigen._prompt import compose_prompt
from aigen.providers.openai import OpenAIOptions
from aigen.testing import (
    TEST_API_KEY,
    FakeGemini,
    FakeServer,
    RetryHintStyle,
    bad_key,
    content_blocked,
    drop,
    fake_server,
    malformed,
    overloaded,
    rate_limited,
    render_image,
    success,
    text_only,
)
from aigen.testing._dialect import shown_prompt
from aigen.testing.respx import mock_provider

from .conftest import API_KEY, FakeTime
from .images import jpeg, png

pytest_plugins = ["pytester"]

PROVIDERS = ("gemini", "openai")
GEMINI_PATH = "/v1beta/models/gemini-2.5-flash-image:generateContent"
OPENAI_PATH = "/v1/images/generations"


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(provider: str, fake_time: FakeTime) -> Iterator[FakeServer]:
    # The fake's wall clock is the clients' fake one, so HTTP-date hints line up.
    with fake_server(provider, wall_clock=fake_time.time) as fake:
        yield fake


def connect(make_client: Any, fake: Any, **kwargs: Any) -> Any:
    """A client (sync or async, with fake time) pointed at `fake`."""
    kwargs.setdefault("timeout", 5.0)
    return make_client(provider=fake.provider, base_url=fake.base_url, **kwargs)


def raised(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        call(*args, **kwargs)
    except aigen.AigenError as exc:
        return exc
    raise AssertionError("no error was raised")


# -- the package -------------------------------------------------------------------------


def test_importing_aigen_or_aigen_testing_pulls_in_no_test_tool() -> None:
    code = (
        "import sys, aigen\n"
        "assert not [m for m in sys.modules if m.startswith('aigen.testing')], 'testing'\n"
        "import aigen.testing\n"
        "assert 'respx' not in sys.modules and 'pytest' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_the_public_names_exist_and_are_documented() -> None:
    import aigen.testing as testing

    assert len(testing.__all__) == len(set(testing.__all__))
    for name in testing.__all__:
        obj = getattr(testing, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):  # not constants nor type aliases
            own_doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            assert (own_doc or "").strip(), name


# -- images that show their prompt -------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        pytest.param({}, (1024, 1024), id="no-size"),
        pytest.param({"width": 1280, "height": 720}, (1344, 768), id="16:9"),
        pytest.param({"width": 1000, "height": 1500}, (832, 1248), id="2:3"),
    ],
)
def test_gemini_draws_the_prompt_at_the_size_of_its_aspect_ratio(
    make_client: Any, size: dict[str, int], expected: tuple[int, int]
) -> None:
    with FakeGemini() as fake:
        result = connect(make_client, fake).generate("A watercolor fox", **size)

    assert (result.mime_type, result.width, result.height) == ("image/png", *expected)
    assert image_size(result.image_data) == expected
    # The rules preamble and size line aigen adds are not drawn: the user's words are.
    assert result.image_data == render_image("A watercolor fox", *expected)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        pytest.param({"width": 320, "height": 160}, (320, 160), id="320x160"),
        pytest.param({}, (1024, 1024), id="auto"),
    ],
)
def test_openai_draws_the_prompt_at_the_requested_size(
    make_client: Any, size: dict[str, int], expected: tuple[int, int]
) -> None:
    with fake_server("openai") as fake:
        result = connect(make_client, fake).generate("A watercolor fox", **size)

    assert image_size(result.image_data) == expected
    assert result.image_data == render_image("A watercolor fox", *expected)
    assert fake.requests[0].reply is not None
    assert fake.requests[0].reply.body["size"] == "{}x{}".format(*expected)


def test_two_prompts_make_two_images(make_client: Any, server: FakeServer) -> None:
    client = connect(make_client, server)

    fox = client.generate("A fox", width=256, height=256)
    owl = client.generate("An owl", width=256, height=256)
    fox_again = client.generate("A fox", width=256, height=256)

    assert fox.image_data != owl.image_data
    assert fox.image_data == fox_again.image_data
    assert (fox.width, fox.height) == (owl.width, owl.height)


def test_jpeg_on_request_and_as_the_fake_default(make_client: Any, server: FakeServer) -> None:
    server.script(success(mime_type="image/jpeg"))
    client = connect(make_client, server)

    scripted = client.generate("A jpeg fox", width=1280, height=720)
    server.mime_type = "image/jpeg"
    by_default = client.generate("A jpeg fox", width=1280, height=720)

    expected = (1344, 768) if server.provider == "gemini" else (1280, 720)
    for result in (scripted, by_default):
        assert result.image_data.startswith(b"\xff\xd8\xff")
        assert (result.mime_type, result.width, result.height) == ("image/jpeg", *expected)
        assert image_size(result.image_data) == expected
    assert scripted.image_data == by_default.image_data  # the same prompt, drawn once


def test_openai_draws_the_output_format_asked_for(make_client: Any) -> None:
    with fake_server("openai") as fake:
        client = connect(make_client, fake)
        result = client.generate(
            "A fox", width=256, height=256, options=OpenAIOptions(output_format="jpeg")
        )

    assert result.mime_type == "image/jpeg"
    assert fake.requests[0].reply is not None
    assert fake.requests[0].reply.body["output_format"] == "jpeg"


@pytest.mark.parametrize("rules", [True, False])
@pytest.mark.parametrize("size", [(None, None), (640, 480)])
def test_the_drawn_prompt_is_the_users_own(rules: bool, size: tuple[Any, Any]) -> None:
    prompt = "A banana saying 'Image request: hi'"
    composed = compose_prompt(prompt, width=size[0], height=size[1], rules=rules)
    assert shown_prompt(composed) == prompt


def test_a_type_the_fakes_cannot_draw_is_refused_when_scripted(server: FakeServer) -> None:
    with pytest.raises(ValueError, match="image/webp"):
        server.script(success(mime_type="image/webp"))
    server.script(success(png(4, 4), mime_type="image/webp"))  # a label on your own bytes
    with pytest.raises(ValueError, match="image/gif"):
        FakeGemini(mime_type="image/gif")


# -- the outcomes, through both clients ----------------------------------------------------


def test_gemini_text_only_is_no_image_error(make_client: Any) -> None:
    with FakeGemini() as fake:
        fake.script(text_only("I would rather write a poem."))
        caught = raised(connect(make_client, fake).generate, "x")

    assert type(caught) is aigen.NoImageError
    assert caught.text == "I would rather write a poem."
    assert caught.attempts == 1


def test_openai_refuses_to_script_text_only() -> None:
    fake = fake_server("openai")
    with pytest.raises(ValueError, match="never answers with text"):
        fake.script(text_only())
    with pytest.raises(ValueError, match="empty_data"):
        fake.default = malformed("no_candidates")
    with pytest.raises(ValueError, match="no_candidates"):
        fake_server("gemini").script(malformed("empty_data"))


MALFORMED = {
    "not_json": "not JSON",
    "truncated_json": "not JSON",
    "html_200": "not JSON",
    "bad_base64": "not valid base64",
    "not_an_image": "not a readable PNG, JPEG or WebP",
    "no_candidates": "without candidates",
    "empty_data": "without any image",
}


MALFORMED_CASES = [
    (provider, kind)
    for provider in PROVIDERS
    for kind in sorted(MALFORMED)
    if (provider, kind) not in (("gemini", "empty_data"), ("openai", "no_candidates"))
]


@pytest.mark.parametrize(("provider", "kind"), MALFORMED_CASES)
def test_malformed_answers_are_generation_errors(
    make_client: Any, server: FakeServer, kind: Any
) -> None:
    server.script(malformed(kind))

    caught = raised(connect(make_client, server).generate, "x")

    assert type(caught) is aigen.GenerationError  # typed, never a KeyError or a decode error
    assert MALFORMED[kind] in caught.message
    assert caught.attempts == 1
    (seen,) = server.requests
    assert seen.reply is not None
    assert seen.reply.status == 200


def test_html_200_is_an_html_page(server: FakeServer) -> None:
    server.default = malformed("html_200")
    path = GEMINI_PATH if server.provider == "gemini" else OPENAI_PATH
    headers = {"x-goog-api-key": "k", "authorization": "Bearer k"}
    answer = httpx.post(f"{server.base_url}{path}", headers=headers, json={"prompt": "x"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("stage", ["prompt", "output"])
def test_content_blocked_names_its_stage(make_client: Any, server: FakeServer, stage: Any) -> None:
    server.script(content_blocked(stage))
    caught = raised(connect(make_client, server).generate, "x")
    assert type(caught) is aigen.ContentPolicyError
    assert caught.stage == stage


HINT_STYLES: list[tuple[str, RetryHintStyle]] = [
    *(("gemini", style) for style in ("native", "retry_info")),
    *(
        (provider, style)
        for provider in PROVIDERS
        for style in ("retry_after", "http_date", "retry_after_ms", "message")
    ),
    ("openai", "native"),
]


@pytest.mark.parametrize(("provider", "style"), HINT_STYLES)
def test_each_rate_limit_hint_is_waited_for(
    make_client: Any, server: FakeServer, fake_time: FakeTime, style: RetryHintStyle
) -> None:
    server.script(rate_limited(7, style=style))

    result = connect(make_client, server).generate("x")

    assert result.attempts == 2
    assert fake_time.sleeps == [7.0]


@pytest.mark.parametrize(("provider", "style"), HINT_STYLES)
def test_a_hint_too_long_is_raised_with_its_value(
    make_client: Any, server: FakeServer, fake_time: FakeTime, style: RetryHintStyle
) -> None:
    server.script(rate_limited(120, style=style))

    caught = raised(connect(make_client, server).generate, "x")

    assert type(caught) is aigen.RateLimitError
    assert caught.retry_after == 120
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    ("provider", "style", "header", "in_body"),
    [
        ("gemini", "native", None, '"retryDelay": "2.5s"'),
        ("gemini", "retry_after", ("retry-after", "2.5"), None),
        ("gemini", "http_date", ("retry-after", "Sun, 15 Jun 2025 15:06:43 GMT"), None),
        ("gemini", "retry_after_ms", ("retry-after-ms", "2500"), None),
        ("gemini", "message", None, "Please retry in 2.5s."),
        ("openai", "native", ("retry-after-ms", "2500"), None),
        ("openai", "http_date", ("retry-after", "Sun, 15 Jun 2025 15:06:43 GMT"), None),
        ("openai", "message", None, "Please try again in 2.5s."),
    ],
)
def test_hint_styles_on_the_wire(
    server: FakeServer, style: Any, header: tuple[str, str] | None, in_body: str | None
) -> None:
    server.default = rate_limited(2.5, style=style)
    path = GEMINI_PATH if server.provider == "gemini" else OPENAI_PATH
    headers = {"x-goog-api-key": "k", "authorization": "Bearer k"}
    answer = httpx.post(f"{server.base_url}{path}", headers=headers, json={"prompt": "x"})

    assert answer.status_code == 429
    hint_headers = {k: v for k, v in answer.headers.items() if k.startswith("retry-after")}
    assert hint_headers == (dict([header]) if header else {})
    text = json.dumps(answer.json())
    if in_body:
        assert in_body in text
    assert ("retryDelay" in text) == (style == "native" and server.provider == "gemini")


def test_rate_limited_without_a_hint_uses_backoff(make_client: Any, server: FakeServer) -> None:
    server.script(rate_limited())
    client = connect(make_client, server, retry=aigen.RetryPolicy(initial_delay=0.5))
    result = client.generate("x")
    assert result.attempts == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: rate_limited(1, style="retry-after"),
        lambda: malformed("json"),
        lambda: content_blocked("input"),
    ],
    ids=["style", "kind", "stage"],
)
def test_a_misspelt_choice_is_refused_at_once(make: Any) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        make()


def test_retry_info_is_gemini_only() -> None:
    with pytest.raises(ValueError, match="RetryInfo is Gemini's"):
        fake_server("openai").script(rate_limited(1, style="retry_info"))


def test_a_chosen_port_is_used() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FakeGemini(port=port) as fake:
        assert fake.base_url == f"http://127.0.0.1:{port}"


def test_client_options_and_environ_point_a_client_at_the_fake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeGemini(api_key=TEST_API_KEY) as fake:
        with aigen.Client(**fake.client_options) as client:
            assert client.generate("x").provider == "gemini"
        for name, value in fake.environ.items():
            monkeypatch.setenv(name, value)
        with aigen.Client() as client:  # as an app that reads its settings from the env
            assert client.generate("y").width == 1024
        assert [seen.headers["x-goog-api-key"] for seen in fake.requests] == [TEST_API_KEY] * 2


# -- the respx helper --------------------------------------------------------------------


def test_respx_helper_plays_a_script_without_a_socket(
    make_client: Any, provider: str, fake_time: FakeTime
) -> None:
    with mock_provider(provider) as fake:
        fake.script(overloaded(), rate_limited(3))
        # No base_url: the provider's public endpoint is what is routed.
        client = make_client(provider=provider)
        result = client.generate("A fox", width=512, height=512)

    assert result.attempts == 3
    assert fake_time.sleeps[-1] == 3.0
    assert len(fake.requests) == 3
    first = fake.requests[0]
    assert first.model == client.model
    assert "A fox" in json.dumps(first.json)
    assert [seen.reply.status for seen in fake.requests if seen.reply] == [503, 429, 200]
    expected = (1024, 1024) if provider == "gemini" else (512, 512)
    assert result.image_data == render_image("A fox", *expected)


def test_respx_helper_records_multipart_edits(make_client: Any) -> None:
    photo = jpeg(40, 30)
    with mock_provider("openai") as fake:
        client = make_client(provider="openai")
        client.generate("Make the sky purple", input_image=photo)

    (seen,) = fake.requests
    assert seen.path == "/v1/images/edits"
    assert "Make the sky purple" in seen.form["prompt"]
    assert [(part.name, part.content_type, part.data) for part in seen.files] == [
        ("image", "image/jpeg", photo)
    ]


def test_respx_helper_drops_and_cuts(make_client: Any, provider: str) -> None:
    with mock_provider(provider) as fake:
        fake.script(drop(), success(cut_after=20))
        result = make_client(provider=provider).generate("x")
        fake.default = drop()
        caught = raised(make_client(provider=provider, max_retries=0).generate, "x")

    assert result.attempts == 3
    assert type(caught) is aigen.APIConnectionError


def test_respx_helper_checks_keys_and_paths_as_the_fake_does(make_client: Any) -> None:
    with mock_provider("openai", api_key="the-right-key") as fake:
        caught = raised(make_client(provider="openai").generate, "x")
        wrong_path = httpx.post(f"{fake.base_url}/v1/images/variations", json={})

    assert type(caught) is aigen.AuthenticationError
    assert API_KEY not in str(caught)
    assert wrong_path.status_code == 404
    assert fake.requests[0].outcome is None  # the key check answered, not the script


def test_respx_helper_joins_your_own_router() -> None:
    with respx.mock(assert_all_called=False) as router:
        other = router.get("https://example.com/health").respond(204)
        with mock_provider("gemini", router=router) as fake:
            assert httpx.get("https://example.com/health").status_code == 204
            with aigen.Client(**fake.client_options, max_retries=0) as client:
                client.generate("x")
        assert len(router.routes) == 1  # the fake's route left with the block
    assert other.called
    assert len(fake.requests) == 1


def test_respx_helper_waits_in_async_code_without_blocking_the_loop() -> None:
    import asyncio

    async def main() -> tuple[float, int]:
        with mock_provider("openai") as fake:
            fake.default = success(delay=0.2)
            async with aigen.AsyncClient(**fake.client_options) as client:
                loop = asyncio.get_running_loop()
                started = loop.time()
                await asyncio.gather(*(client.generate(f"image {n}") for n in range(5)))
                return loop.time() - started, len(fake.requests)

    elapsed, count = asyncio.run(main())
    assert count == 5
    assert 0.2 <= elapsed < 0.6  # five waits of 0.2 s, side by side


# -- the opt-in pytest plugin ------------------------------------------------------------

USER_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
USER_SUITE = """
import aigen
import pytest
from aigen.testing import TEST_API_KEY, content_blocked, overloaded

def test_gemini(fake_gemini, aigen_client):
    assert fake_gemini.api_key == TEST_API_KEY
    fake_gemini.script(content_blocked("output"))
    client = aigen_client(fake_gemini)
    with pytest.raises(aigen.ContentPolicyError):
        client.generate("a fox")
    assert client.generate("a fox").width == 1024
    assert len(fake_gemini.requests) == 2

def test_openai(fake_openai, aigen_client):
    fake_openai.script(overloaded())
    client = aigen_client(fake_openai, retry=aigen.RetryPolicy(initial_delay=0.01))
    assert client.generate("a fox", width=256, height=256).attempts == 2
    assert fake_openai.requests[0].headers["authorization"] == "Bearer " + TEST_API_KEY

def test_a_wrong_key_is_refused(fake_openai):
    options = {**fake_openai.client_options, "api_key": "sk-wrong-key-1234"}
    with aigen.Client(**options) as client, pytest.raises(aigen.AuthenticationError):
        client.generate("a fox")
"""


def test_the_plugin_serves_a_suite_that_opts_in(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makeconftest('pytest_plugins = ["aigen.testing.pytest_plugin"]\n')
    pytester.makepyfile(test_user=USER_SUITE)

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
    left = [t.name for t in threading.enumerate() if t.name.startswith("aigen-fake-")]
    assert left == []  # every fake was stopped after its test


def test_the_plugin_is_not_there_without_opting_in(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_user="def test_x(fake_gemini):\n    pass\n")

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_gemini' not found*"])


def test_the_plugin_is_not_an_entry_point() -> None:
    from importlib.metadata import entry_points

    assert not [e for e in entry_points(group="pytest11") if e.value.startswith("aigen")]


def test_bad_key_is_scriptable_on_both(make_client: Any, server: FakeServer) -> None:
    server.script(bad_key())
    caught = raised(connect(make_client, server).generate, "x")
    assert type(caught) is aigen.AuthenticationError
