"""Providers that take more than one exchange: a queue (submit, poll, download) and a stream.

The queue provider is the second code block of docs/custom-provider.md, executed as it is;
the streaming one is a small server-sent-events reader written here. Both run through
`Client` and `AsyncClient` against respx, on a fake clock: the steps are carried out by
the same flow as a single exchange, with its retries, rate limiter and body limit.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen import GenerationRequest, RateLimit
from aigen._actions import Done
from aigen._flow import generation_flow
from aigen.providers import (
    ErrorContext,
    HttpRequest,
    HttpResponse,
    MultiStepProvider,
    NextChunk,
    Progress,
    ProviderAnswer,
    ProviderFlow,
    RequestContext,
    Stream,
    api_error_class,
)
from aigen.testing import FakeClock

from .images import png

DOC = Path(__file__).parent.parent / "docs" / "custom-provider.md"
BASE = "https://queue.example.com"
IMAGE = png(24, 16)


@pytest.fixture(scope="module")
def queue_provider_class() -> Any:
    """Exactly the second python block of docs/custom-provider.md, executed."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    source = next(block for block in blocks if "class QueueProvider" in block)
    namespace: dict[str, Any] = {"__name__": "queue_provider_doc"}
    exec(compile(source, str(DOC), "exec"), namespace)
    return namespace["QueueProvider"]


@pytest.fixture
def queue() -> Iterator[respx.Router]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def script_queue(router: respx.Router, *polls: httpx.Response) -> dict[str, respx.Route]:
    """Routes for one job: its submit, its polls in turn, and the signed result URL."""
    return {
        "submit": router.post(f"{BASE}/v1/queue-diffusion-1").mock(
            return_value=httpx.Response(
                200, json={"id": "job-1", "polling_url": f"{BASE}/v1/get_result?id=job-1"}
            )
        ),
        "poll": router.get(f"{BASE}/v1/get_result").mock(side_effect=list(polls)),
        "download": router.get("https://delivery.example.com/job-1.png").mock(
            return_value=httpx.Response(200, content=IMAGE)
        ),
    }


PENDING = httpx.Response(200, json={"status": "Pending"})
READY = httpx.Response(
    200,
    json={"status": "Ready", "result": {"url": "https://delivery.example.com/job-1.png"}},
)


def test_the_documented_queue_provider_follows_the_protocol(queue_provider_class: Any) -> None:
    assert isinstance(queue_provider_class(), MultiStepProvider)


def test_a_queued_job_is_submitted_polled_and_downloaded(
    make_client: Any, queue_provider_class: Any, queue: respx.Router, fake_time: FakeClock
) -> None:
    routes = script_queue(queue, PENDING, PENDING, READY)
    made = make_client(provider=queue_provider_class(), api_key="queue-key-123456")
    result = made.generate("A lighthouse at dusk")
    assert result.image_data == IMAGE
    assert (result.width, result.height, result.request_id) == (24, 16, "job-1")
    assert routes["submit"].call_count == 1
    assert routes["poll"].call_count == 3
    assert routes["download"].call_count == 1
    assert result.attempts == 1  # polls and downloads are not paid requests
    assert fake_time.sleeps == [0.5, 0.5, 0.5]
    assert routes["poll"].calls[0].request.headers["x-key"] == "queue-key-123456"
    assert "x-key" not in routes["download"].calls[0].request.headers


def test_a_failed_poll_is_retried_without_a_new_submit(
    make_client: Any, queue_provider_class: Any, queue: respx.Router, fake_time: FakeClock
) -> None:
    routes = script_queue(queue, httpx.Response(503, text="busy"), PENDING, READY)
    made = make_client(provider=queue_provider_class(), api_key="queue-key-123456")
    result = made.generate("A lighthouse at dusk")
    assert routes["submit"].call_count == 1
    assert routes["poll"].call_count == 3
    assert result.attempts == 1
    # The poll interval, the 503's backoff (1 s plus jitter), then the next interval.
    assert fake_time.sleeps[0] == 0.5
    assert 1.0 <= fake_time.sleeps[1] <= 1.25
    assert fake_time.sleeps[2:] == [0.5]


def test_the_rate_limiter_counts_only_the_submits(
    make_client: Any, queue_provider_class: Any, queue: respx.Router, fake_time: FakeClock
) -> None:
    script_queue(queue, PENDING, READY, PENDING, READY)
    made = make_client(
        provider=queue_provider_class(),
        api_key="queue-key-123456",
        rate_limit=RateLimit(requests_per_minute=6, adaptive=False),  # a submit per 10 s
    )
    made.generate("first")
    made.generate("second")
    # Polls never wait for a slot; the second submit waits for its own: 10 s - 1 s of polls.
    assert fake_time.sleeps == [0.5, 0.5, pytest.approx(9.0), 0.5, 0.5]


def test_a_moderated_job_is_a_content_policy_error_and_is_not_retried(
    make_client: Any, queue_provider_class: Any, queue: respx.Router
) -> None:
    routes = script_queue(queue, httpx.Response(200, json={"status": "Content Moderated"}))
    made = make_client(provider=queue_provider_class(), api_key="queue-key-123456")
    with pytest.raises(aigen.ContentPolicyError) as caught:
        made.generate("something refused")
    assert caught.value.stage == "output"
    assert caught.value.generation_id is not None  # stamped like any other error
    assert routes["submit"].call_count == 1
    assert routes["download"].call_count == 0


def test_a_submit_that_fails_for_good_raises_at_once(
    make_client: Any, queue_provider_class: Any, queue: respx.Router
) -> None:
    queue.post(f"{BASE}/v1/queue-diffusion-1").mock(
        return_value=httpx.Response(401, text="bad key")
    )
    made = make_client(provider=queue_provider_class(), api_key="queue-key-123456")
    with pytest.raises(aigen.AuthenticationError, match="bad key"):
        made.generate("x")


# -- a streamed exchange -------------------------------------------------------------------


class EventStreamProvider:
    """A toy streaming service: `data: <kind> <base64>` lines, partials then a final one."""

    name = "events"
    default_model = "stream-1"
    default_base_url = "https://stream.example.com"
    api_key_env_vars = ("EVENTS_KEY",)
    takes_seed = False

    def exchange(self, request: GenerationRequest, context: RequestContext) -> ProviderFlow:
        url = f"{context.base_url}/v1/draw"
        yield Stream(HttpRequest("POST", url, {"x-key": context.api_key}, request.prompt.encode()))
        pending = b""
        while chunk := (yield NextChunk()):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                kind, data = line.removeprefix(b"data: ").split(b" ")
                image = base64.b64decode(data)
                if kind == b"final":
                    return ProviderAnswer(image_data=image)
                yield Progress(("partial", image))
        raise aigen.GenerationError("the stream ended before its final image")

    def parse_error(self, response: HttpResponse, context: ErrorContext) -> aigen.GenerationError:
        return api_error_class(response.status_code)(
            response.content.decode(), status_code=response.status_code, provider=self.name
        )


def event_stream(*images: tuple[str, bytes]) -> bytes:
    return b"".join(b"data: %s %s\n" % (k.encode(), base64.b64encode(i)) for k, i in images)


PARTIALS = [png(4, 4), png(8, 8)]


def streamed(body: bytes) -> httpx.Response:
    # Sent in small pieces, as a slow model's events arrive.
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    return httpx.Response(200, stream=httpx.ByteStream(b"".join(pieces)))


def test_a_streamed_answer_gives_the_final_image(make_client: Any) -> None:
    body = event_stream(("partial", PARTIALS[0]), ("partial", PARTIALS[1]), ("final", IMAGE))
    with respx.mock() as router:
        route = router.post("https://stream.example.com/v1/draw").mock(return_value=streamed(body))
        made = make_client(provider=EventStreamProvider(), api_key="events-key-123456")
        result = made.generate("a lighthouse")
    assert result.image_data == IMAGE
    assert route.calls[0].request.headers["accept-encoding"] == "identity"


def test_a_streamed_answer_hands_each_event_over_in_order(
    make_client: Any, client_kind: str
) -> None:
    """The driver yields each Progress event as it is read, then the response."""
    body = event_stream(("partial", PARTIALS[0]), ("partial", PARTIALS[1]), ("final", IMAGE))
    with respx.mock() as router:
        router.post("https://stream.example.com/v1/draw").mock(return_value=streamed(body))
        made = make_client(provider=EventStreamProvider(), api_key="events-key-123456")
        client = made.target
        flow = generation_flow(client._engine.start("a lighthouse", {}))
        if client_kind == "sync":
            items = list(client._drive(flow))
        else:

            async def collect() -> list[object]:
                return [item async for item in client._drive(flow, client._loop_part())]

            from .kits import run_on_loop

            items = run_on_loop(made, collect())
    assert items[:2] == [("partial", PARTIALS[0]), ("partial", PARTIALS[1])]
    assert isinstance(items[2], Done)
    assert items[2].value.image_data == IMAGE


def test_a_stream_longer_than_max_response_bytes_is_cut(make_client: Any) -> None:
    body = event_stream(*[("partial", png(64, 64))] * 20, ("final", IMAGE))
    with respx.mock() as router:
        router.post("https://stream.example.com/v1/draw").mock(return_value=streamed(body))
        made = make_client(
            provider=EventStreamProvider(), api_key="events-key-123456", max_response_bytes=2000
        )
        with pytest.raises(aigen.GenerationError, match="max_response_bytes"):
            made.generate("a lighthouse")


def test_a_stream_refused_before_its_first_event_is_retried(
    make_client: Any, fake_time: FakeClock
) -> None:
    body = event_stream(("final", IMAGE))
    with respx.mock() as router:
        route = router.post("https://stream.example.com/v1/draw").mock(
            side_effect=[httpx.Response(503, text="overloaded"), streamed(body)]
        )
        made = make_client(provider=EventStreamProvider(), api_key="events-key-123456")
        result = made.generate("a lighthouse")
    assert route.call_count == 2
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1


# -- what the review found -----------------------------------------------------------------


def test_a_poll_that_would_end_past_the_deadline_is_not_waited_for(
    make_client: Any, queue_provider_class: Any, queue: respx.Router, fake_time: FakeClock
) -> None:
    routes = script_queue(queue, *[PENDING] * 10)
    made = make_client(
        provider=queue_provider_class(),
        api_key="queue-key-123456",
        retry=aigen.RetryPolicy(deadline=1.2),
    )
    with pytest.raises(aigen.APITimeoutError, match="not done before the deadline"):
        made.generate("a slow job")
    assert fake_time.sleeps == [0.5, 0.5]  # a third wait would end at 1.5 s
    assert routes["poll"].call_count == 2


def test_a_streamed_success_raises_the_rate_back_like_any_other(
    make_client: Any, fake_time: FakeClock
) -> None:
    body = event_stream(("final", IMAGE))
    with respx.mock() as router:
        router.post("https://stream.example.com/v1/draw").mock(
            side_effect=[httpx.Response(429, text="slow down"), streamed(body)]
        )
        made = make_client(
            provider=EventStreamProvider(),
            api_key="events-key-123456",
            rate_limit=RateLimit(requests_per_minute=600),
        )
        made.generate("a lighthouse")
    limiter = made.target._engine.limiter
    # Halved by the 429 (300), then a twentieth of 600 back for the streamed success.
    assert limiter.store.rate(limiter.key) == pytest.approx(330)


class CleaningQueue:
    """A queue provider that cancels its remote job when the call is abandoned."""

    name = "cleaning"
    default_model = "m"
    default_base_url = BASE
    api_key_env_vars = ("CLEANING_KEY",)
    takes_seed = False

    def __init__(self) -> None:
        self.cleaned = False

    def exchange(self, request: GenerationRequest, context: RequestContext) -> ProviderFlow:
        try:
            yield Stream(HttpRequest("POST", f"{BASE}/v1/queue-diffusion-1", {}))
            yield Progress("submitted")
            raise aigen.GenerationError("never reached in this test")
        finally:
            self.cleaned = True

    def parse_error(self, response: HttpResponse, context: ErrorContext) -> aigen.GenerationError:
        return aigen.GenerationError(response.content.decode())


def test_an_abandoned_call_lets_the_provider_clean_up(make_client: Any, client_kind: str) -> None:
    provider = CleaningQueue()
    with respx.mock() as router:
        router.post(f"{BASE}/v1/queue-diffusion-1").mock(return_value=httpx.Response(200))
        made = make_client(provider=provider, api_key="cleaning-key-123456")
        client = made.target
        flow = generation_flow(client._engine.start("x", {}))
        if client_kind == "sync":
            events = client._drive(flow)
            assert next(events) == "submitted"
            events.close()
        else:
            from .kits import run_on_loop

            async def leave_early() -> None:
                events = client._drive(flow, client._loop_part())
                assert await events.__anext__() == "submitted"
                await events.aclose()

            run_on_loop(made, leave_early())
    assert provider.cleaned
