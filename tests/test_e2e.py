"""End to end: both clients against a fake Gemini on a real 127.0.0.1 socket, in real time.

No respx here: requests go through httpx's real transport and connection pool to
`tests/server.py`, which records what arrived and when. Sleeps, timeouts and Retry-After
waits are real, so every scripted delay is small (tenths of a second).
"""

from __future__ import annotations

import asyncio
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

from . import gemini_bodies as gb
from .conftest import API_KEY
from .images import png
from .server import FakeGemini, Reply, drop, error, gemini_error, stall, success

# Every client here gets a short per-attempt timeout, so a broken test fails instead of
# hanging for aigen's default two minutes.
SAFE_TIMEOUT = 3.0
# Backoff short enough for real time, far shorter than any hint tested below.
FAST = aigen.RetryPolicy(initial_delay=0.05)
TEST_BUDGET = 5.0


@pytest.fixture(autouse=True)
def time_budget() -> Iterator[None]:
    """Each test here must finish in TEST_BUDGET seconds (setup and teardown included)."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < TEST_BUDGET, f"test took {elapsed:.2f} s"


@pytest.fixture
def server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


def connect(make_client: Any, server: FakeGemini, **kwargs: Any) -> Any:
    """A client (sync or async, behind the facade) talking to `server` in real time."""
    kwargs.setdefault("timeout", SAFE_TIMEOUT)
    return make_client(real_time=True, base_url=server.base_url, **kwargs)


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Run `call`, returning (its result or the exception it raised, seconds taken)."""
    started = time.monotonic()
    try:
        result = call(*args, **kwargs)
    except Exception as exc:
        result = exc
    return result, time.monotonic() - started


def gaps(server: FakeGemini) -> list[float]:
    arrivals = server.arrivals
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def overloaded(**kwargs: Any) -> Any:
    return gemini_error(
        503, "UNAVAILABLE", "The model is overloaded. Please try again later.", **kwargs
    )


def exhausted(
    *details: dict[str, Any], message: str = "Resource has been exhausted.", **kwargs: Any
) -> Any:
    return gemini_error(429, "RESOURCE_EXHAUSTED", message, *details, **kwargs)


# -- success -----------------------------------------------------------------------------


def test_success_over_a_real_socket(make_client: Any, server: FakeGemini) -> None:
    image = png(48, 24)
    # Headers after 0.1 s, then the body trickles out over 0.3 s more.
    server.script(success(image, delay=0.1, body_duration=0.3))
    client = connect(make_client, server)

    result, elapsed = timed(client.generate, "A cute banana", width=512, height=512, seed=7)

    assert isinstance(result, aigen.GenerationResponse), result
    (seen,) = server.requests
    assert seen.method == "POST"
    assert seen.path == gb.PATH
    assert seen.model == gb.MODEL
    assert seen.headers["x-goog-api-key"] == API_KEY
    assert seen.headers["content-type"] == "application/json"
    assert "key" not in seen.query  # the key travels in the header only
    body = seen.json
    assert set(body) == {"contents", "generationConfig"}
    (content,) = body["contents"]
    assert content["role"] == "user"
    assert "A cute banana" in content["parts"][0]["text"]
    config = body["generationConfig"]
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert config["imageConfig"]["aspectRatio"] == "1:1"
    assert config["seed"] == 7

    assert result.image_data == image
    assert (result.mime_type, result.width, result.height) == ("image/png", 48, 24)
    assert uuid.UUID(result.generation_id).version == 4
    assert result.seed == 7
    assert result.text == "Here is your image."
    assert result.thought_signature == b"sig-image"
    assert result.model == gb.MODEL
    assert result.provider == "gemini"
    assert result.request_id == "resp-123"
    assert result.usage.total_tokens == 1302
    assert result.finish_reason == "STOP"
    assert result.attempts == 1
    # The attempt is timed to the last byte of the body, not to the headers (0.1 s).
    assert result.inference_time_ms >= 400
    assert result.total_time_ms >= result.inference_time_ms
    assert elapsed >= 0.4


# -- retries -----------------------------------------------------------------------------


def test_503_then_success_takes_two_attempts(make_client: Any, server: FakeGemini) -> None:
    server.script(overloaded())
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    first, second = server.requests
    assert first.body == second.body  # the same request, sent again
    assert second.headers["x-goog-api-key"] == API_KEY
    assert server.pending == 0


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        pytest.param(exhausted(headers={"retry-after-ms": "300"}), 0.3, id="retry-after-ms"),
        pytest.param(exhausted(headers={"retry-after": "1"}), 1.0, id="retry-after-seconds"),
        pytest.param(
            exhausted(
                gb.quota_failure(), gb.retry_info("0.3s"), message="You exceeded your quota."
            ),
            0.3,
            id="gemini-retryinfo",
        ),
        pytest.param(
            exhausted(message="You exceeded your current quota. Please retry in 0.3s."),
            0.3,
            id="gemini-message",
        ),
    ],
)
def test_server_hint_is_waited_for_in_real_time(
    make_client: Any, server: FakeGemini, answer: Any, hint: float
) -> None:
    server.script(answer)
    # Backoff alone would retry after ~0.05 s: a gap of `hint` can only come from the hint.
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    (gap,) = gaps(server)
    assert hint <= gap < hint + 0.7


def test_rate_limit_error_carries_the_last_hint(make_client: Any, server: FakeGemini) -> None:
    server.default = exhausted(headers={"retry-after-ms": "100"})
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
    make_client: Any, server: FakeGemini, policy: aigen.RetryPolicy
) -> None:
    server.default = exhausted(gb.quota_failure(), gb.retry_info("30s"))
    client = connect(make_client, server, retry=policy)

    caught, elapsed = timed(client.generate, "x")

    assert type(caught) is aigen.RateLimitError
    assert caught.retry_after == 30
    assert caught.attempts == 1
    assert len(server.requests) == 1
    assert elapsed < 0.5


def test_key_invalid_is_not_retried(make_client: Any, server: FakeGemini) -> None:
    server.api_key = "the-right-key"  # ours is another: the server answers API_KEY_INVALID
    client = connect(make_client, server, retry=FAST)

    caught, _ = timed(client.generate, "x")

    assert type(caught) is aigen.AuthenticationError
    assert caught.status_code == 400
    assert caught.body == gb.key_invalid()
    assert caught.attempts == 1
    assert len(server.requests) == 1


def test_deadline_bounds_the_whole_call(make_client: Any, server: FakeGemini) -> None:
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


def test_deadline_caps_a_stalled_attempt(make_client: Any, server: FakeGemini) -> None:
    server.script(stall(3.0))
    policy = aigen.RetryPolicy(deadline=0.6, initial_delay=0.05)
    client = connect(make_client, server, timeout=SAFE_TIMEOUT, retry=policy)

    caught, elapsed = timed(client.generate, "x")

    # timeout= allows 3 s, but the attempt may not outlive the deadline, and no retry fits.
    assert type(caught) is aigen.APITimeoutError
    assert caught.attempts == 1
    assert len(server.requests) == 1
    assert 0.55 <= elapsed < 0.9


def test_deadline_bounds_a_slow_body(make_client: Any, server: FakeGemini) -> None:
    # Headers at once, then a piece every 0.2 s for 1.6 s: no single read waits long.
    server.script(success(body_duration=1.6, chunks=8))
    policy = aigen.RetryPolicy(deadline=0.8, initial_delay=0.05)
    client = connect(make_client, server, timeout=SAFE_TIMEOUT, retry=policy)

    caught, elapsed = timed(client.generate, "x")

    assert elapsed < 1.1, f"the call ran {elapsed:.2f} s past a 0.8 s deadline"
    assert type(caught) is aigen.APITimeoutError


# -- transport failures ------------------------------------------------------------------


def test_timeout_is_retried_then_raised(make_client: Any, server: FakeGemini) -> None:
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


def test_dropped_connection_is_retried(make_client: Any, server: FakeGemini) -> None:
    server.script(drop())
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    assert len(server.requests) == 2


def test_connection_dropped_every_time_is_connection_error(
    make_client: Any, server: FakeGemini
) -> None:
    server.default = drop()
    client = connect(make_client, server, retry=FAST)

    caught, _ = timed(client.generate, "x")

    assert type(caught) is aigen.APIConnectionError
    assert caught.attempts == 3
    assert uuid.UUID(caught.generation_id).version == 4
    assert len(server.requests) == 3
    assert API_KEY not in str(caught)


def test_connection_refused_is_connection_error(make_client: Any) -> None:
    # A bound socket that never listens: its port refuses, and no one else can take it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = make_client(
            real_time=True,
            base_url=f"http://127.0.0.1:{port}",
            timeout=SAFE_TIMEOUT,
            retry=FAST.model_copy(update={"max_retries": 1}),
        )
        caught, elapsed = timed(client.generate, "x")

    assert type(caught) is aigen.APIConnectionError
    assert caught.attempts == 2
    assert caught.generation_id is not None
    assert elapsed < 1.0


def test_answer_cut_halfway_is_retried(make_client: Any, server: FakeGemini) -> None:
    server.script(success(cut_after=40))  # headers and 40 bytes, then the line goes dead
    client = connect(make_client, server, retry=FAST)

    result = client.generate("x")

    assert result.attempts == 2
    assert len(server.requests) == 2


def test_undecodable_body_is_a_generation_error(make_client: Any, server: FakeGemini) -> None:
    server.script(Reply(200, b"this is not gzip", {"content-encoding": "gzip"}))
    client = connect(make_client, server, retry=FAST)

    caught, _ = timed(client.generate, "x")

    assert type(caught) is aigen.GenerationError  # typed, not httpx.DecodingError
    assert "decode" in caught.message
    assert caught.generation_id is not None
    assert len(server.requests) == 1


# -- connections -------------------------------------------------------------------------


def test_close_leaves_no_connection_open(
    make_client: Any, client_kind: str, server: FakeGemini
) -> None:
    client = connect(make_client, server)
    client.generate("x")
    client.generate("y")
    assert server.open_connections == 1  # kept alive in the pool, and reused

    client.close() if client_kind == "sync" else client.aclose()

    assert server.wait_until(lambda s: s.open_connections == 0, timeout=2.0)


def test_many_concurrent_calls_are_not_held_back(client_kind: str, server: FakeGemini) -> None:
    # More calls than httpx's default pool of 100: all must be in flight at once.
    calls = 120
    server.default = success(delay=0.6)
    keywords: dict[str, Any] = {
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
    assert server.peak_in_flight == calls  # a pool cap would hold some back for a round


# -- the fake server itself --------------------------------------------------------------


def test_fake_server_checks_path_key_and_body_before_the_script() -> None:
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


def test_fake_server_stops_cleanly_with_connections_open() -> None:
    outcome: list[object] = []
    http = httpx.Client(timeout=SAFE_TIMEOUT)
    try:
        with FakeGemini(default=stall(30)) as fake:
            url = f"{fake.base_url}{gb.PATH}"
            key = {"x-goog-api-key": API_KEY}
            fake.script(success())
            assert http.post(url, headers=key, json={}).status_code == 200  # kept alive

            def stalled() -> None:
                try:
                    outcome.append(httpx.post(url, headers=key, json={}, timeout=SAFE_TIMEOUT))
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
    left = [t.name for t in threading.enumerate() if t.name.startswith("fake-gemini")]
    assert left == []
    assert fake.open_connections == 0


def test_fake_server_reports_its_own_failures() -> None:
    fake = FakeGemini(default=Reply(200, object())).start()  # not JSON-able: a script bug
    try:
        with httpx.Client(timeout=SAFE_TIMEOUT) as http, pytest.raises(httpx.HTTPError):
            http.post(f"{fake.base_url}{gb.PATH}", headers={"x-goog-api-key": "k"}, json={})
    finally:
        with pytest.raises(RuntimeError, match="failed while answering"):
            fake.stop()
