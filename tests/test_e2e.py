"""End to end: both clients against each provider's fake on a real 127.0.0.1 socket, in real time.

No respx here: requests go through httpx's real transport and connection pool to the
fakes of `aigen.testing`, which record what arrived and when. Sleeps, timeouts and Retry-After
waits are real, so every scripted delay is small (tenths of a second).

Every behaviour that is not tied to one provider's wire runs for each provider with each
client (`[sync-gemini]`, `[async-openai]`, ...), scripted with provider-neutral outcomes
(`success()`, `overloaded()`, `rate_limited(0.25)`) that each fake says its own way. What
differs between the wires (where the key travels, what a request body holds) is read
through a small `Wire` per provider. Gemini-only and OpenAI-only tests are named so.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import aigen
from aigen.testing import (
    OPENAI_RATE_LIMIT_HEADERS,
    FakeGemini,
    FakeOpenAI,
    FakeServer,
    RecordedRequest,
    Reply,
    Situation,
    bad_key,
    bad_request,
    content_blocked,
    drop,
    error,
    fake_server,
    gemini_error,
    not_found,
    openai_error,
    overloaded,
    quota_exhausted,
    rate_limited,
    stall,
    success,
)

from . import gemini_bodies as gb
from .conftest import API_KEY
from .images import jpeg, png

# Every client here gets a short per-attempt timeout, so a broken test fails instead of
# hanging for aigen's default two minutes.
SAFE_TIMEOUT = 3.0
# Backoff short enough for real time, far shorter than any hint tested below.
FAST = aigen.RetryPolicy(initial_delay=0.05)
TEST_BUDGET = 5.0
PROVIDERS = ("gemini", "openai")


@pytest.fixture(autouse=True)
def time_budget() -> Iterator[None]:
    """Each test here must finish in TEST_BUDGET seconds (setup and teardown included)."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < TEST_BUDGET, f"test took {elapsed:.2f} s"


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(provider: str) -> Iterator[FakeServer]:
    with fake_server(provider) as fake:
        yield fake


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def connect(make_client: Any, server: FakeServer, **kwargs: Any) -> Any:
    """A client (sync or async, behind the facade) talking to `server` in real time."""
    kwargs.setdefault("timeout", SAFE_TIMEOUT)
    return make_client(real_time=True, provider=server.provider, base_url=server.base_url, **kwargs)


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Run `call`, returning (its result or the exception it raised, seconds taken)."""
    started = time.monotonic()
    try:
        result = call(*args, **kwargs)
    except Exception as exc:
        result = exc
    return result, time.monotonic() - started


def gaps(server: FakeServer) -> list[float]:
    arrivals = server.arrivals
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def exhausted(
    *details: dict[str, Any], message: str = "Resource has been exhausted.", **kwargs: Any
) -> Reply:
    return gemini_error(429, "RESOURCE_EXHAUSTED", message, *details, **kwargs)


def openai_rate_limit(message: str, **kwargs: Any) -> Reply:
    return openai_error(429, message, type="requests", code="rate_limit_exceeded", **kwargs)


# -- each provider's wire, as the tests read it ------------------------------------------


class GeminiWire:
    """Where Gemini's requests keep what the tests look at."""

    model = gb.MODEL
    bad_key_status = 400

    @staticmethod
    def key(seen: RecordedRequest) -> str | None:
        return seen.headers.get("x-goog-api-key")

    @staticmethod
    def check_generation(seen: RecordedRequest, prompt: str, *, seed: int) -> None:
        assert seen.path == gb.PATH
        assert seen.headers["content-type"] == "application/json"
        assert "key" not in seen.query  # the key travels in the header only
        body = seen.json
        assert set(body) == {"contents", "generationConfig"}
        (content,) = body["contents"]
        assert content["role"] == "user"
        assert prompt in content["parts"][0]["text"]
        config = body["generationConfig"]
        assert config["responseModalities"] == ["TEXT", "IMAGE"]
        assert config["imageConfig"]["aspectRatio"] == "1:1"
        assert config["seed"] == seed

    @staticmethod
    def check_answer(result: aigen.GenerationResponse, seen: RecordedRequest) -> None:
        assert result.seed == 7
        assert result.text == "Here is your image."
        assert result.thought_signature == b"sig-image"
        assert seen.request_id
        assert result.request_id == seen.request_id  # the body's responseId
        assert result.finish_reason == "STOP"

    @staticmethod
    def images_sent(seen: RecordedRequest, role: str) -> list[tuple[str, bytes]]:
        """(content type, bytes) of each image in `role`'s turns, in order."""
        return [
            (part["inlineData"]["mimeType"], base64.b64decode(part["inlineData"]["data"]))
            for content in seen.json["contents"]
            if content["role"] == role
            for part in content["parts"]
            if "inlineData" in part
        ]


class OpenAIWire:
    """Where OpenAI's requests keep what the tests look at."""

    model = "gpt-image-2"
    bad_key_status = 401

    @staticmethod
    def key(seen: RecordedRequest) -> str | None:
        scheme, _, key = seen.headers.get("authorization", "").partition(" ")
        return key if scheme == "Bearer" else None

    @staticmethod
    def check_generation(seen: RecordedRequest, prompt: str, *, seed: int) -> None:
        assert seen.path == "/v1/images/generations"
        assert seen.headers["content-type"] == "application/json"
        body = seen.json
        # gpt-image models take no seed and no response_format: neither is sent.
        assert set(body) == {"model", "prompt", "size"}
        assert body["model"] == "gpt-image-2"
        assert prompt in body["prompt"]
        assert body["size"] == "512x512"

    @staticmethod
    def check_answer(result: aigen.GenerationResponse, seen: RecordedRequest) -> None:
        assert result.seed is None  # OpenAI takes none
        assert result.text is None
        assert result.thought_signature is None
        assert seen.request_id is not None
        assert seen.request_id.startswith("req_")
        assert result.request_id == seen.request_id  # the x-request-id header
        assert result.finish_reason is None
        assert result.rate_limit is None  # no x-ratelimit-* headers were sent

    @staticmethod
    def images_sent(seen: RecordedRequest, role: str) -> list[tuple[str, bytes]]:
        """(content type, bytes) of each uploaded image (OpenAI has no roles: all of them)."""
        assert seen.path == "/v1/images/edits"
        return [(part.content_type or "", part.data) for part in seen.files]


WIRES: dict[str, type[GeminiWire] | type[OpenAIWire]] = {
    "gemini": GeminiWire,
    "openai": OpenAIWire,
}


@pytest.fixture
def wire(provider: str) -> type[GeminiWire] | type[OpenAIWire]:
    return WIRES[provider]


# -- success -----------------------------------------------------------------------------


def test_success_over_a_real_socket(
    make_client: Any, server: FakeServer, wire: type[GeminiWire] | type[OpenAIWire]
) -> None:
    image = png(48, 24)
    # Headers after 0.1 s, then the body trickles out over 0.3 s more.
    server.script(success(image, delay=0.1, body_duration=0.3))
    client = connect(make_client, server)

    result, elapsed = timed(client.generate, "A cute banana", width=512, height=512, seed=7)

    assert isinstance(result, aigen.GenerationResponse), result
    (seen,) = server.requests
    assert seen.method == "POST"
    assert seen.model == wire.model
    assert wire.key(seen) == API_KEY
    wire.check_generation(seen, "A cute banana", seed=7)

    assert result.image_data == image
    assert (result.mime_type, result.width, result.height) == ("image/png", 48, 24)
    assert uuid.UUID(result.generation_id).version == 4
    wire.check_answer(result, seen)
    assert result.model == wire.model
    assert result.provider == server.provider
    assert result.usage.total_tokens == 1302
    assert result.attempts == 1
    # The attempt is timed to the last byte of the body, not to the headers (0.1 s).
    assert result.inference_time_ms >= 400
    assert result.total_time_ms >= result.inference_time_ms
    assert elapsed >= 0.4


def test_input_image_arrives_with_its_real_content_type(
    make_client: Any, server: FakeServer, wire: type[GeminiWire] | type[OpenAIWire]
) -> None:
    photo = jpeg(40, 30)
    client = connect(make_client, server)

    client.generate("Make the sky purple", input_image=photo)

    (seen,) = server.requests
    assert wire.images_sent(seen, "user") == [("image/jpeg", photo)]


def test_conversation_sends_the_first_image_back(
    make_client: Any, server: FakeServer, wire: type[GeminiWire] | type[OpenAIWire]
) -> None:
    first_image, second_image = png(32, 32, (10, 200, 10)), png(32, 32, (10, 10, 200))
    server.script(success(first_image), success(second_image))
    chat = connect(make_client, server).conversation(width=256, height=256)

    first = chat.send("A green square")
    second = chat.send("Now make it blue")

    assert (first.image_data, second.image_data) == (first_image, second_image)
    opening, refinement = server.requests
    assert wire.key(refinement) == API_KEY
    assert "A green square" in str(opening.json)
    assert wire.images_sent(refinement, "model") == [("image/png", first_image)]
    assert [turn.role for turn in chat.history] == ["user", "model", "user", "model"]


def test_openai_conversation_generates_then_edits(make_client: Any, openai: FakeOpenAI) -> None:
    chat = connect(make_client, openai).conversation(width=256, height=256)

    first = chat.send("A green square")
    chat.send("Now make it blue")

    opening, refinement = openai.requests
    assert opening.path == "/v1/images/generations"
    assert opening.json["size"] == "256x256"
    assert refinement.path == "/v1/images/edits"
    assert refinement.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert refinement.json is None
    assert refinement.form["model"] == "gpt-image-2"
    assert refinement.form["size"] == "256x256"
    assert "Now make it blue" in refinement.form["prompt"]
    (part,) = refinement.files
    assert (part.name, part.content_type, part.data) == ("image", "image/png", first.image_data)
    assert (first.width, first.height) == (256, 256)  # the fake drew the size asked for


def test_openai_edit_is_multipart_with_the_real_content_type(
    make_client: Any, openai: FakeOpenAI
) -> None:
    photo = jpeg(40, 30)
    client = connect(make_client, openai)

    result = client.generate("Make the sky purple", input_image=photo)

    (seen,) = openai.requests
    assert seen.path == "/v1/images/edits"
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert set(seen.form) == {"model", "prompt"}
    assert "Make the sky purple" in seen.form["prompt"]
    (part,) = seen.files
    assert (part.name, part.filename, part.content_type) == ("image", "image-1.jpg", "image/jpeg")
    assert part.data == photo
    assert result.usage.total_tokens == 1302 + 323  # edits count the image's tokens


def test_openai_edit_is_sent_again_whole_after_a_503(make_client: Any, openai: FakeOpenAI) -> None:
    photo = jpeg(40, 30)
    openai.script(overloaded(), drop())
    client = connect(make_client, openai, retry=FAST)

    result = client.generate("Make the sky purple", input_image=photo)

    assert result.attempts == 3
    first, *again = openai.requests
    assert first.files[0].data == photo
    for seen in again:  # a fresh multipart body each time, with the same content
        assert (seen.path, seen.form, seen.files) == (first.path, first.form, first.files)


def test_openai_rate_limit_headers_are_read(make_client: Any) -> None:
    with FakeOpenAI(rate_limit_headers=OPENAI_RATE_LIMIT_HEADERS) as fake:
        fake.script(success(), rate_limited(30))
        client = connect(make_client, fake, retry=aigen.RetryPolicy(max_retry_after=1.0))

        result = client.generate("x")
        caught, _ = timed(client.generate, "y")

    assert result.rate_limit is not None
    assert (result.rate_limit.limit_requests, result.rate_limit.remaining_requests) == (60, 59)
    assert (result.rate_limit.reset_requests, result.rate_limit.reset_tokens) == (1.0, 360.0)
    assert type(caught) is aigen.RateLimitError
    assert caught.rate_limit is not None
    assert caught.rate_limit.remaining_requests == 0
    assert caught.retry_after == 30
    assert caught.request_id == fake.requests[-1].request_id


# -- retries -----------------------------------------------------------------------------


def test_503_then_success_takes_two_attempts(
    make_client: Any, server: FakeServer, wire: type[GeminiWire] | type[OpenAIWire]
) -> None:
    server.script(overloaded())
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    first, second = server.requests
    assert first.reply is not None
    assert first.reply.status == 503
    assert first.body == second.body  # the same request, sent again
    assert wire.key(second) == API_KEY
    assert server.pending == 0


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        # Gemini: RetryInfo in the body; OpenAI: retry-after-ms.
        pytest.param(rate_limited(0.25), 0.25, id="the-providers-own-hint"),
        # Any provider, or a proxy in front of it, may send the standard header.
        pytest.param(rate_limited(headers={"retry-after": "1"}), 1.0, id="retry-after-seconds"),
    ],
)
def test_server_hint_is_waited_for_in_real_time(
    make_client: Any, server: FakeServer, answer: Situation, hint: float
) -> None:
    server.script(answer)
    # Backoff alone would retry after ~0.05 s: a gap of `hint` can only come from the hint.
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    (gap,) = gaps(server)
    assert hint <= gap < hint + 0.7


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        pytest.param(
            exhausted(
                gb.quota_failure(), gb.retry_info("0.25s"), message="You exceeded your quota."
            ),
            0.25,
            id="retryinfo-in-the-body",
        ),
        pytest.param(
            exhausted(message="You exceeded your current quota. Please retry in 0.25s."),
            0.25,
            id="please-retry-in-message",
        ),
        pytest.param(
            exhausted(headers={"retry-after-ms": "250"}), 0.25, id="retry-after-ms-from-a-proxy"
        ),
    ],
)
def test_gemini_hint_is_waited_for_in_real_time(
    make_client: Any, gemini: FakeGemini, answer: Reply, hint: float
) -> None:
    gemini.script(answer)
    client = connect(make_client, gemini, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    (gap,) = gaps(gemini)
    assert hint <= gap < hint + 0.7


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        pytest.param(
            openai_rate_limit(
                "Rate limit reached for images per min (IPM).", headers={"retry-after-ms": "250"}
            ),
            0.25,
            id="retry-after-ms",
        ),
        pytest.param(
            openai_rate_limit("Rate limit reached for images per min. Please try again in 250ms."),
            0.25,
            id="try-again-in-message",
        ),
    ],
)
def test_openai_hint_is_waited_for_in_real_time(
    make_client: Any, openai: FakeOpenAI, answer: Reply, hint: float
) -> None:
    openai.script(answer)
    client = connect(make_client, openai, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    (gap,) = gaps(openai)
    assert hint <= gap < hint + 0.7


def test_rate_limit_error_carries_the_last_hint(make_client: Any, server: FakeServer) -> None:
    server.default = rate_limited(0.1)
    client = connect(make_client, server, retry=FAST.model_copy(update={"max_retries": 1}))

    caught, _ = timed(client.generate, "x")

    assert type(caught) is aigen.RateLimitError
    assert caught.retry_after == pytest.approx(0.1)
    assert caught.attempts == 2
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(aigen.RetryPolicy(max_retry_after=1.0), id="above-max-retry-after"),
        pytest.param(aigen.RetryPolicy(deadline=1.0), id="past-the-deadline"),
    ],
)
def test_long_hint_raises_at_once(
    make_client: Any, server: FakeServer, policy: aigen.RetryPolicy
) -> None:
    server.default = rate_limited(30)
    client = connect(make_client, server, retry=policy)

    caught, elapsed = timed(client.generate, "x")

    assert type(caught) is aigen.RateLimitError
    assert caught.retry_after == 30
    assert caught.attempts == 1
    assert len(server.requests) == 1
    assert elapsed < 0.5


def test_key_invalid_is_not_retried(
    make_client: Any, server: FakeServer, wire: type[GeminiWire] | type[OpenAIWire]
) -> None:
    server.api_key = "the-right-key"  # ours is another: the server refuses it its own way
    client = connect(make_client, server, retry=FAST)

    caught, _ = timed(client.generate, "x")

    assert type(caught) is aigen.AuthenticationError
    assert caught.status_code == wire.bad_key_status
    (seen,) = server.requests
    assert seen.outcome is None  # the fake's own key check answered, not the script
    assert seen.reply is not None
    assert caught.body == seen.reply.body
    if server.provider == "gemini":
        assert caught.body == gb.key_invalid()
    else:
        body: Any = caught.body
        assert body["error"]["code"] == "invalid_api_key"
    assert caught.attempts == 1
    assert API_KEY not in str(caught)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(quota_exhausted(), aigen.QuotaExceededError, id="quota"),
        pytest.param(content_blocked("prompt"), aigen.ContentPolicyError, id="prompt-blocked"),
        pytest.param(content_blocked("output"), aigen.ContentPolicyError, id="output-blocked"),
        pytest.param(bad_request(), aigen.BadRequestError, id="bad-request"),
        pytest.param(not_found(), aigen.NotFoundError, id="not-found"),
        pytest.param(bad_key(), aigen.AuthenticationError, id="key-revoked"),
    ],
)
def test_refusals_are_not_retried(
    make_client: Any, server: FakeServer, answer: Situation, expected: type[Exception]
) -> None:
    server.default = answer
    client = connect(make_client, server, retry=FAST)

    caught, _ = timed(client.generate, "x")

    assert type(caught) is expected
    assert isinstance(caught, (aigen.APIError, aigen.ContentPolicyError))
    assert caught.attempts == 1
    (seen,) = server.requests
    # OpenAI's x-request-id; Gemini's responseId where its answer has one (a 200 refusal).
    assert caught.request_id == seen.request_id
    if isinstance(caught, aigen.ContentPolicyError):
        assert caught.stage == answer.stage


def test_deadline_bounds_the_whole_call(make_client: Any, server: FakeServer) -> None:
    server.default = overloaded(headers={"retry-after": "0.4"})
    client = connect(make_client, server, retry=aigen.RetryPolicy(deadline=1.0, max_retries=10))

    caught, elapsed = timed(client.generate, "x")

    assert type(caught) is aigen.ServerError
    assert caught.status_code == 503
    # Arrivals at ~0, ~0.4, ~0.8 s; a third wait would end at ~1.2 s, past the deadline.
    assert caught.attempts == len(server.requests)
    assert 2 <= caught.attempts <= 3
    assert all(gap >= 0.4 for gap in gaps(server))
    assert elapsed < 1.2


def test_deadline_caps_a_stalled_attempt(make_client: Any, server: FakeServer) -> None:
    server.script(stall(3.0))
    policy = aigen.RetryPolicy(deadline=0.6, initial_delay=0.05)
    client = connect(make_client, server, timeout=SAFE_TIMEOUT, retry=policy)

    caught, elapsed = timed(client.generate, "x")

    # timeout= allows 3 s, but the attempt may not outlive the deadline, and no retry fits.
    assert type(caught) is aigen.APITimeoutError
    assert caught.attempts == 1
    assert len(server.requests) == 1
    assert 0.55 <= elapsed < 0.9


def test_deadline_bounds_a_slow_body(make_client: Any, server: FakeServer) -> None:
    # Headers at once, then a piece every 0.2 s for 1.6 s: no single read waits long.
    server.script(success(body_duration=1.6, chunks=8))
    policy = aigen.RetryPolicy(deadline=0.8, initial_delay=0.05)
    client = connect(make_client, server, timeout=SAFE_TIMEOUT, retry=policy)

    caught, elapsed = timed(client.generate, "x")

    assert elapsed < 1.1, f"the call ran {elapsed:.2f} s past a 0.8 s deadline"
    assert type(caught) is aigen.APITimeoutError
    assert len(server.requests) == 1


# -- transport failures ------------------------------------------------------------------


def test_timeout_is_retried_then_raised(make_client: Any, server: FakeServer) -> None:
    server.script(stall(1.5), stall(1.5))
    client = connect(
        make_client,
        server,
        timeout=0.3,
        retry=aigen.RetryPolicy(max_retries=1, initial_delay=0.05),
    )

    caught, elapsed = timed(client.generate, "x")

    assert type(caught) is aigen.APITimeoutError
    assert caught.attempts == 2
    assert uuid.UUID(caught.generation_id).version == 4
    assert len(server.requests) == 2
    (gap,) = gaps(server)
    assert gap >= 0.3 + 0.05
    assert 0.65 <= elapsed < 1.5


def test_dropped_connection_is_retried(make_client: Any, server: FakeServer) -> None:
    server.script(drop())
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    assert len(server.requests) == 2
    assert server.requests[0].reply is None  # nothing was answered the first time


def test_connection_dropped_every_time_is_connection_error(
    make_client: Any, server: FakeServer
) -> None:
    server.default = drop()
    client = connect(make_client, server, retry=FAST)

    caught, _ = timed(client.generate, "x")

    assert type(caught) is aigen.APIConnectionError
    assert caught.attempts == 3
    assert uuid.UUID(caught.generation_id).version == 4
    assert len(server.requests) == 3
    assert API_KEY not in str(caught)


def test_connection_refused_is_connection_error(make_client: Any, provider: str) -> None:
    # A bound socket that never listens: its port refuses, and no one else can take it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = make_client(
            real_time=True,
            provider=provider,
            base_url=f"http://127.0.0.1:{port}",
            timeout=SAFE_TIMEOUT,
            retry=FAST.model_copy(update={"max_retries": 1}),
        )
        caught, elapsed = timed(client.generate, "x")

    assert type(caught) is aigen.APIConnectionError
    assert caught.attempts == 2
    assert caught.generation_id is not None
    assert provider in caught.message
    assert elapsed < 1.0


def test_answer_cut_halfway_is_retried(make_client: Any, server: FakeServer) -> None:
    server.script(success(cut_after=40))  # headers and 40 bytes, then the line goes dead
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    assert len(server.requests) == 2


def test_undecodable_body_is_a_generation_error(make_client: Any, server: FakeServer) -> None:
    server.script(Reply(200, b"this is not gzip", {"content-encoding": "gzip"}))
    client = connect(make_client, server, retry=FAST)

    caught, _ = timed(client.generate, "x")

    assert type(caught) is aigen.GenerationError  # typed, not httpx.DecodingError
    assert "decode" in caught.message
    assert caught.generation_id is not None
    assert len(server.requests) == 1


# -- connections -------------------------------------------------------------------------


def test_close_leaves_no_connection_open(
    make_client: Any, client_kind: str, server: FakeServer
) -> None:
    client = connect(make_client, server)
    client.generate("x")
    client.generate("y")
    assert len(server.requests) == 2
    assert server.open_connections == 1  # kept alive in the pool, and reused

    client.close() if client_kind == "sync" else client.aclose()

    assert server.wait_until(lambda s: s.open_connections == 0, timeout=2.0)


def test_many_concurrent_calls_are_not_held_back(client_kind: str, server: FakeServer) -> None:
    # More calls than httpx's default pool of 100: all must be in flight at once.
    calls = 120
    # Long enough for all 120 to arrive on a loaded machine: the last starts well before
    # the first is answered.
    server.default = success(png(8, 8), delay=2.0)  # no drawing: 120 prompts, 120 images
    keywords: dict[str, Any] = {
        "provider": server.provider,
        "api_key": API_KEY,
        "base_url": server.base_url,
        "timeout": SAFE_TIMEOUT,
        "max_retries": 0,
    }
    if client_kind == "sync":
        with aigen.Client(**keywords) as client, ThreadPoolExecutor(calls) as pool:
            results = list(pool.map(lambda n: client.generate(f"image {n}"), range(calls)))
    else:

        async def run() -> list[aigen.GenerationResponse]:
            async with aigen.AsyncClient(**keywords) as client:
                return await asyncio.gather(*(client.generate(f"image {n}") for n in range(calls)))

        results = asyncio.run(run())

    assert len(results) == calls
    assert len({r.generation_id for r in results}) == calls
    assert all(r.provider == server.provider for r in results)
    assert server.peak_in_flight == calls  # a pool cap would hold some back for a round


# -- the fake servers themselves ---------------------------------------------------------


def test_fake_gemini_checks_path_key_and_body_before_the_script() -> None:
    with FakeGemini(api_key=API_KEY) as fake, httpx.Client(base_url=fake.base_url) as http:
        fake.script(error(500, b"scripted"))
        key = {"x-goog-api-key": API_KEY}
        assert http.post("/v1beta/models/m:predict", headers=key, json={}).status_code == 404
        assert http.post(gb.PATH, json={}).status_code == 401
        wrong = http.post(gb.PATH, headers={"x-goog-api-key": "nope"}, json={})
        assert (wrong.status_code, wrong.json()) == (400, gb.key_invalid())
        assert http.post(gb.PATH, headers=key, content=b"{not json").status_code == 400
        assert fake.pending == 1  # none of those reached the script
        scripted = http.post(f"{gb.PATH}?key={API_KEY}", json={"contents": []})
        assert (scripted.status_code, scripted.content) == (500, b"scripted")
        default = http.post(gb.PATH.replace("v1beta", "v1"), headers=key, json={})
        assert default.status_code == 200
        assert default.json()["candidates"][0]["finishReason"] == "STOP"
        assert [r.outcome is None for r in fake.requests] == [True] * 4 + [False] * 2
        assert fake.requests[-1].model == gb.MODEL
        assert "retry-after" not in default.headers


def test_fake_openai_checks_path_key_and_body_before_the_script() -> None:
    generations, edits = "/v1/images/generations", "/v1/images/edits"
    key = {"authorization": f"Bearer {API_KEY}"}
    image = {"image": ("in.png", png(8, 8), "image/png")}
    with FakeOpenAI(api_key=API_KEY) as fake, httpx.Client(base_url=fake.base_url) as http:
        fake.script(error(500, b"scripted"))
        refusals = [
            (http.post("/v1/images/variations", headers=key, json={}), 404, None),
            (http.get(generations, headers=key), 404, None),
            (http.post(generations, json={"prompt": "x"}), 401, None),
            (
                http.post(generations, headers={"authorization": "Bearer nope"}, json={}),
                401,
                "invalid_api_key",
            ),
            (http.post(generations, headers=key, content=b"{not json"), 400, None),
            (http.post(generations, headers=key, json={}), 400, "missing_required_parameter"),
            (
                http.post(generations, headers=key, json={"prompt": "x", "seed": 7}),
                400,
                "unknown_parameter",
            ),
            (
                http.post(
                    generations,
                    headers=key,
                    json={"model": "gpt-image-1", "prompt": "x", "response_format": "b64_json"},
                ),
                400,
                "unknown_parameter",
            ),
            (
                http.post(
                    generations,
                    headers=key,
                    json={"model": "gpt-image-2", "prompt": "x", "size": "500x500"},
                ),
                400,
                "invalid_value",
            ),
            (http.post(edits, headers=key, json={"prompt": "x"}), 400, None),
            (
                http.post(edits, headers=key, data={"prompt": "x"}, files={"mask": image["image"]}),
                400,
                "missing_required_parameter",
            ),
        ]
        for answer, status, code in refusals:
            assert answer.status_code == status, answer.text
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
            assert answer.json()["error"]["code"] == code
            assert answer.headers["x-request-id"].startswith("req_")
        assert "nope" not in refusals[3][0].text  # a wrong key is never echoed whole
        assert fake.pending == 1  # none of those reached the script

        scripted = http.post(generations, headers=key, json={"prompt": "x"})
        assert (scripted.status_code, scripted.content) == (500, b"scripted")
        assert scripted.headers["x-request-id"].startswith("req_")
        default = http.post(
            edits,
            headers=key,
            data={"model": "gpt-image-2", "prompt": "x", "size": "320x160"},
            files=[("image[]", image["image"]), ("image[]", ("b.jpg", jpeg(4, 4), "image/jpeg"))],
        )
        assert default.status_code == 200
        body = default.json()
        assert {"created", "data", "usage", "output_format", "size"} <= set(body)
        assert (body["size"], body["output_format"]) == ("320x160", "png")
        drawn = base64.b64decode(body["data"][0]["b64_json"])
        assert drawn == aigen.testing.render_image("x", 320, 160)  # the prompt, drawn

    seen = fake.requests
    assert [r.outcome is None for r in seen] == [True] * len(refusals) + [False] * 2
    edit = seen[-1]
    assert edit.form == {"model": "gpt-image-2", "prompt": "x", "size": "320x160"}
    assert [(p.name, p.filename, p.content_type) for p in edit.files] == [
        ("image[]", "in.png", "image/png"),
        ("image[]", "b.jpg", "image/jpeg"),
    ]
    assert edit.files[1].data == jpeg(4, 4)
    assert edit.model == "gpt-image-2"
    assert edit.request_id == default.headers["x-request-id"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fake_says_a_rate_limit_hint_the_providers_way(provider: str) -> None:
    with fake_server(provider, default=rate_limited(0.25)) as fake, httpx.Client() as http:
        path = gb.PATH if provider == "gemini" else "/v1/images/generations"
        key = {"x-goog-api-key": "k", "authorization": "Bearer k"}
        answer = http.post(f"{fake.base_url}{path}", headers=key, json={"prompt": "x"})

    assert answer.status_code == 429
    error_body = answer.json()["error"]
    if provider == "gemini":
        assert "retry-after" not in answer.headers
        assert "retry-after-ms" not in answer.headers
        assert gb.retry_info("0.25s") in error_body["details"]
    else:
        assert answer.headers["retry-after-ms"] == "250"
        assert error_body["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fake_server_stops_cleanly_with_connections_open(provider: str) -> None:
    outcome: list[object] = []
    path = gb.PATH if provider == "gemini" else "/v1/images/generations"
    key = {"x-goog-api-key": API_KEY, "authorization": f"Bearer {API_KEY}"}
    http = httpx.Client(timeout=SAFE_TIMEOUT)
    try:
        with fake_server(provider, default=stall(30)) as fake:
            url = f"{fake.base_url}{path}"
            fake.script(success())
            assert http.post(url, headers=key, json={"prompt": "x"}).status_code == 200

            def stalled() -> None:
                try:
                    outcome.append(
                        httpx.post(url, headers=key, json={"prompt": "y"}, timeout=SAFE_TIMEOUT)
                    )
                except httpx.HTTPError as exc:
                    outcome.append(exc)

            caller = threading.Thread(target=stalled)
            caller.start()
            assert fake.wait_until(lambda s: len(s.requests) == 2)
            assert fake.open_connections == 2
            started = time.monotonic()
        stopped_in = time.monotonic() - started
        caller.join(SAFE_TIMEOUT)
    finally:
        http.close()

    assert stopped_in < 1.0  # the 30 s stall was cut short
    assert isinstance(outcome[0], httpx.RemoteProtocolError)  # dropped, not answered
    left = [t.name for t in threading.enumerate() if t.name.startswith("aigen-fake-")]
    assert left == []
    assert fake.open_connections == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fake_server_reports_its_own_failures(provider: str) -> None:
    path = gb.PATH if provider == "gemini" else "/v1/images/generations"
    key = {"x-goog-api-key": "k", "authorization": "Bearer k"}
    # A body that is not JSON-able: a script bug, found while answering.
    fake = fake_server(provider, default=Reply(200, object())).start()
    try:
        with httpx.Client(timeout=SAFE_TIMEOUT) as http, pytest.raises(httpx.HTTPError):
            http.post(f"{fake.base_url}{path}", headers=key, json={"prompt": "x"})
    finally:
        with pytest.raises(RuntimeError, match="failed while answering"):
            fake.stop()
    assert len(fake.requests) == 1  # recorded all the same


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fake_refuses_a_detail_it_does_not_know_when_scripted(provider: str) -> None:
    fake = fake_server(provider)
    with pytest.raises(ValueError, match="no_such_detail"):
        fake.script(success(no_such_detail=1))
    with pytest.raises(ValueError, match="no_such_detail"):
        fake_server(provider, default=success(no_such_detail=1))
    assert fake.pending == 0
