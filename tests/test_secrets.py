"""The key stays secret and prompts stay out of ordinary logs, on every path a call can take.

Every outcome `aigen.testing` offers (success, 5xx, 429 in every hint style, exhausted
quota, content blocks at both stages, refused key, 404, 400, text without an image, every
malformed body, a dropped connection, a stall past the timeout, a body cut short, a body
too large, and the transport faults where this version has them: resets, endless,
inflating and oversized bodies), gateways that echo the key back, a fake that expects
another key, and a connection refused: each is played to `Client` and `AsyncClient` for
Gemini and OpenAI, through `generate()` and a two-send conversation, with every logger
captured at DEBUG (the root handler at NOTSET, so httpx's and httpcore's records are in).
Then the key (long and distinctive) must appear in no log record (message, arguments,
extras, exception text), in no repr or str of the client, the responses, the errors
(their `body`, `details` and chained causes included) or the conversation, and not in
the conversation's JSON. The prompt (distinctive too) must appear in no record at INFO
or above.

Last, `allow_insecure_http`: a key is not sent over plain http to a host other than
loopback unless the user opts in (checked with an `httpx.MockTransport` behind
`http_client=`, so nothing leaves the machine).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest

import aigen
import aigen.testing
from aigen import (
    AsyncClient,
    AsyncConversation,
    Client,
    ConfigurationError,
    Conversation,
    GenerationError,
    GenerationResponse,
    RetryPolicy,
)
from aigen.testing import (
    FakeServer,
    Outcome,
    Reply,
    RetryHintStyle,
    bad_key,
    bad_request,
    content_blocked,
    drop,
    error,
    fake_server,
    malformed,
    not_found,
    overloaded,
    quota_exhausted,
    rate_limited,
    server_error,
    stall,
    success,
    text_only,
)

from .kits import MALFORMED_KINDS

KEY = "sk-aigen-SECRET-7d1f9a3c5e0b2d4f6a8c1e3b5d7f9a2c4e6b8d0f"
PROMPT = "PROMPT-MARKER-4417 a violet giraffe reading a newspaper"
OTHER_KEY = "sk-aigen-the-fake-expects-this-one-instead-0000"
POLICY = RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.002, max_retry_after=0.5)
TIMEOUT = 0.15  # per attempt: the stall outlasts it
PROVIDERS = ("gemini", "openai")

# -- log capture ----------------------------------------------------------------------------


class Records(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger, at every level, while the test runs."""
    handler = Records()
    root = logging.getLogger()
    for name in ("aigen", "httpx", "httpcore", "hpack", "asyncio"):
        logging.getLogger(name)  # make sure they exist, so they are reset below
    loggers = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled, logger.propagate) for logger in loggers]
    saved_root_level, saved_disable = root.level, logging.root.manager.disable
    logging.disable(logging.NOTSET)
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
        logger.disabled = False
        logger.propagate = True
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root_level)
        logging.disable(saved_disable)
        for logger, level, disabled, propagate in saved:
            logger.setLevel(level)
            logger.disabled = disabled
            logger.propagate = propagate


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler or formatter could write out for `record`."""
    texts = [record.getMessage(), repr(record.msg), repr(record.args), repr(vars(record))]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append("".join(traceback.format_exception(record.exc_info[1])))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    return texts


def assert_clean_logs(records: list[logging.LogRecord]) -> None:
    assert any(record.name == "aigen" for record in records), "aigen logged nothing"
    assert any(record.name.startswith("httpcore") for record in records), "no httpcore records"
    for record in records:
        for text in record_texts(record):
            assert KEY not in text, f"the key is in a {record.levelname} record of {record.name}"
        if record.levelno >= logging.INFO:
            message = record.getMessage() + repr(record.args)
            assert PROMPT not in message, f"the prompt is in {record.levelname} {message!r}"


def chain_of(error: BaseException) -> list[BaseException]:
    """`error` and every exception reachable from it through `__cause__` and `__context__`
    (shown or not), and through exceptions held in their args or attributes."""
    found: list[BaseException] = []
    pending = [error]
    while pending:
        exc = pending.pop()
        if any(exc is seen for seen in found):
            continue
        found.append(exc)
        held = [*exc.args, *vars(exc).values(), exc.__cause__, exc.__context__]
        pending += [item for item in held if isinstance(item, BaseException)]
    return found


def carried_texts(exc: BaseException) -> list[str]:
    """What an exception holds beyond its message: every attribute, and the headers, URL
    and content of a request or response it carries (httpx's errors hold the request)."""
    texts = [repr(exc.args), repr(vars(exc))]
    for value in [*vars(exc).values(), *exc.args]:
        texts.append(repr(value))
        for name in ("headers", "url", "content"):
            try:
                part = getattr(value, name, None)
            except Exception:  # a response body not read, say
                continue
            if part is not None:
                texts.append(repr(part))
                if name == "headers" and hasattr(part, "raw"):
                    texts.append(repr(part.raw))
                if hasattr(part, "items"):
                    texts.append(repr(list(part.items())))
    request = getattr(exc, "_request", None)
    if request is not None:
        texts.append(repr(list(request.headers.raw)))
    return texts


def object_texts(thing: object) -> list[str]:
    """The ways an object may be printed, logged or stored."""
    texts = [repr(thing), str(thing)]
    if isinstance(thing, BaseException):
        texts.append("".join(traceback.format_exception(thing)))  # causes included
        texts.append(repr(vars(thing)))  # body, details, request_id, rate_limit, ...
        for name in ("body", "details", "message", "request_id", "text"):
            texts.append(repr(getattr(thing, name, None)))
        for linked in chain_of(thing):  # shown or not: `__context__` of a `from None` too
            texts += [repr(linked), str(linked), *carried_texts(linked)]
    if isinstance(thing, GenerationResponse):
        texts.append(thing.model_dump_json())
        texts.append(repr(thing.as_turn()))
    if isinstance(thing, (Conversation, AsyncConversation)):
        texts.append(thing.model_dump_json())  # what a web app stores between requests
        texts.append(repr(thing.history))
    return texts


def assert_no_key_in(things: list[object]) -> None:
    for thing in things:
        for text in object_texts(thing):
            assert KEY not in text, f"the key is in {type(thing).__name__}: {text[:300]!r}"


# -- the paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One way a call can go: what the fake plays (to every request), and client settings."""

    name: str
    outcome: Callable[[], Outcome] | None  # None: nothing listens
    providers: tuple[str, ...] = PROVIDERS
    client: dict[str, Any] = field(default_factory=dict)
    fake_key: str | None = None  # the one key the fake accepts (None: any)


HINT_STYLES: tuple[RetryHintStyle, ...] = (
    "native",
    "retry_info",
    "retry_after",
    "http_date",
    "retry_after_ms",
    "message",
)

PATHS = [
    Scenario("success", success),
    Scenario("overloaded", overloaded),
    *(
        Scenario(f"server_error_{status}", partial(server_error, status))
        for status in (500, 502, 504)
    ),
    Scenario("rate_limited_no_hint", rate_limited),
    *(
        Scenario(
            f"rate_limited_{style}",
            partial(rate_limited, 0.01, style=style),
            providers=("gemini",) if style == "retry_info" else PROVIDERS,
        )
        for style in HINT_STYLES
    ),
    Scenario("rate_limited_past_max_retry_after", lambda: rate_limited(30)),
    Scenario("quota_exhausted", quota_exhausted),
    Scenario("content_blocked_prompt", lambda: content_blocked("prompt")),
    Scenario("content_blocked_output", lambda: content_blocked("output")),
    Scenario("bad_key", bad_key),
    Scenario("key_not_the_expected_one", success, fake_key=OTHER_KEY),
    Scenario("not_found", not_found),
    Scenario("bad_request", bad_request),
    Scenario("text_only", text_only, providers=("gemini",)),
    *(
        Scenario(
            f"malformed_{kind}",
            partial(malformed, kind),
            providers=tuple(p for p in PROVIDERS if kind in MALFORMED_KINDS[p]),
        )
        for kind in sorted({*MALFORMED_KINDS["gemini"], *MALFORMED_KINDS["openai"]})
    ),
    Scenario("drop", drop),
    Scenario("stall_past_the_timeout", lambda: stall(1.0)),
    Scenario("cut_short", lambda: success(cut_after=200)),
    Scenario("too_large", success, client={"max_response_bytes": 2000}),  # a 512x512 image
    # Gateways that echo the request back, key included.
    Scenario(
        "echo_in_json_error",
        lambda: error(
            502,
            {
                "error": {
                    "message": f"upstream refused key {KEY}",
                    "code": 502,
                    "request": {
                        "headers": {"authorization": f"Bearer {KEY}", "x-goog-api-key": KEY}
                    },
                }
            },
        ),
    ),
    Scenario("echo_in_html_error", lambda: error(401, f"<html>bad key {KEY}</html>".encode())),
    Scenario("echo_in_429", lambda: error(429, {"error": {"message": f"slow down, {KEY}"}})),
    Scenario("echo_in_200_not_json", lambda: Reply(200, f"<html>hello {KEY}</html>".encode())),
    Scenario(
        "echo_in_200_not_json_large",
        lambda: Reply(200, (f"<html>{KEY}" + "x" * 100_000 + "</html>").encode()),
    ),
    Scenario("echo_in_200_header", lambda: success(headers={"x-echo-key": KEY})),
    Scenario(
        "echo_in_503_header",
        lambda: Reply(503, {"error": {"code": 503}}, headers={"x-upstream-auth": f"Bearer {KEY}"}),
    ),
    Scenario("echo_in_429_header", lambda: Reply(429, {}, headers={"x-goog-api-key": KEY})),
    Scenario("connection_refused", None),
]


def transport_faults() -> list[Scenario]:
    """The transport faults `aigen.testing` offers (resets, endless, inflating and oversized
    bodies), those of them this version has."""
    offered = vars(aigen.testing)
    wanted: list[tuple[str, str, Callable[[Any], Outcome]]] = [
        ("reset_before_answering", "reset", lambda reset: reset()),
        ("reset_mid_body", "reset", lambda reset: reset(100)),
        ("endless_body", "endless_body", lambda endless: endless(limit=1_000_000)),
        ("gzip_bomb", "gzip_bomb", lambda bomb: bomb(8 * 1024 * 1024)),
        ("oversized_declared", "oversized", lambda oversized: oversized(200_000)),
        ("oversized_chunked", "oversized", lambda oversized: oversized(200_000, False)),
    ]
    return [
        Scenario(name, partial(make, offered[fault]), client=SMALL_BODIES)
        for name, fault, make in wanted
        if fault in offered
    ]


SMALL_BODIES = {"max_response_bytes": 100_000}
PATHS += transport_faults()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def target(provider: str, path: Scenario) -> Iterator[tuple[FakeServer | None, dict[str, Any]]]:
    """The fake playing `path` (none for a refused connection), and the client's keywords."""
    options: dict[str, Any] = {
        "provider": provider,
        "api_key": KEY,
        "retry": POLICY,
        "timeout": TIMEOUT,
        **path.client,
    }
    if path.outcome is None:
        yield None, {**options, "base_url": f"http://127.0.0.1:{closed_port()}"}
        return
    with fake_server(provider, api_key=path.fake_key, default=path.outcome()) as fake:
        yield fake, {**options, "base_url": fake.base_url}


SECOND_PROMPT = f"{PROMPT}, now in the rain"


def settle(action: Callable[[], GenerationResponse]) -> GenerationResponse | GenerationError:
    try:
        return action()
    except GenerationError as failure:
        return failure


async def asettle(action: Callable[[], Any]) -> GenerationResponse | GenerationError:
    try:
        result: GenerationResponse = await action()
    except GenerationError as failure:
        return failure
    return result


def exercise_sync(fake: FakeServer | None, options: dict[str, Any]) -> list[object]:
    """`generate()`, then a conversation whose first send succeeds and second meets the path."""
    with Client(**options) as client:
        seen: list[object] = [
            client,
            settle(lambda: client.generate(PROMPT, width=512, height=512)),
        ]
        chat = client.conversation(width=512, height=512)
        if fake is not None:
            fake.script(success())
        seen += [settle(lambda: chat.send(PROMPT)), settle(lambda: chat.send(SECOND_PROMPT))]
        return [*seen, chat]


async def exercise_async(fake: FakeServer | None, options: dict[str, Any]) -> list[object]:
    """The same as `exercise_sync`, with `AsyncClient`."""
    async with AsyncClient(**options) as client:
        seen: list[object] = [
            client,
            await asettle(lambda: client.generate(PROMPT, width=512, height=512)),
        ]
        chat = client.conversation(width=512, height=512)
        if fake is not None:
            fake.script(success())
        seen += [
            await asettle(lambda: chat.send(PROMPT)),
            await asettle(lambda: chat.send(SECOND_PROMPT)),
        ]
        return [*seen, chat]


CASES = [
    pytest.param(path, provider, id=f"{provider}-{path.name}")
    for path in PATHS
    for provider in path.providers
]


@pytest.mark.parametrize("client_kind", ["sync", "async"])
@pytest.mark.parametrize(("path", "provider"), CASES)
def test_the_key_stays_secret_on_every_path(
    path: Scenario, provider: str, client_kind: str, logs: list[logging.LogRecord]
) -> None:
    with target(provider, path) as (fake, options):
        if client_kind == "sync":
            seen = exercise_sync(fake, options)
        else:
            seen = asyncio.run(exercise_async(fake, options))
    if fake is not None:  # the key really was sent, on each request
        assert fake.requests
        assert all(KEY in repr(dict(request.headers)) for request in fake.requests)
    generated = seen[1]
    if path.name in ("success", "echo_in_200_header"):
        assert all(isinstance(result, GenerationResponse) for result in seen[1:4])
    else:
        assert isinstance(generated, GenerationError), f"{path.name} did not fail: {generated!r}"
    assert_no_key_in(seen)
    assert_clean_logs(logs)


# -- plain http ------------------------------------------------------------------------------

REFUSED = [
    "http://example.com",
    "http://example.com:8080/proxy",
    "http://10.0.0.5:8080",
    "http://0.0.0.0:8080",
    "http://localhost.example.com",
    "http://127.0.0.1.nip.io",
    "http://[2001:db8::1]:8080",
]
LOOPBACK = [
    "http://127.0.0.1:8080",
    "http://127.0.0.2",
    "http://localhost:1234",
    "http://LOCALHOST:1234",
    "http://[::1]:8080",
]
CLIENTS = [Client, AsyncClient]


def sent_to(requests: list[httpx.Request]) -> httpx.MockTransport:
    """A transport that records each request and answers 503 (its body still to be read,
    as from a network transport)."""

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(503, stream=httpx.ByteStream(b"{}"))

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("url", REFUSED)
def test_plain_http_to_another_host_is_refused(
    cls: type[Client | AsyncClient], provider: str, url: str
) -> None:
    requests: list[httpx.Request] = []
    http_client: Any = (httpx.Client if cls is Client else httpx.AsyncClient)(
        transport=sent_to(requests)
    )
    with pytest.raises(ConfigurationError, match="allow_insecure_http") as refused:
        cls(provider=provider, api_key=KEY, base_url=url, http_client=http_client)
    assert KEY not in str(refused.value)
    assert KEY not in repr(refused.value)
    assert requests == []


@pytest.mark.parametrize("cls", CLIENTS)
def test_plain_http_from_the_environment_is_refused_too(
    cls: type[Client | AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("AIGEN_BASE_URL", "http://gateway.example.com")
    with pytest.raises(ConfigurationError, match="allow_insecure_http") as refused:
        cls()
    assert KEY not in str(refused.value)


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("url", [*LOOPBACK, "https://example.com", "https://10.0.0.5:8443"])
def test_loopback_and_https_need_no_opt_in(cls: type[Client | AsyncClient], url: str) -> None:
    client = cls(provider="gemini", api_key=KEY, base_url=url)
    try:
        assert KEY not in repr(client)
    finally:
        if isinstance(client, Client):
            client.close()
        else:
            asyncio.run(client.aclose())


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "url", ["http://example.com", "http://10.0.0.5:8080", "http://[2001:db8::1]"]
)
def test_plain_http_is_sent_after_the_opt_in(provider: str, url: str) -> None:
    requests: list[httpx.Request] = []
    with (
        Client(
            provider=provider,
            api_key=KEY,
            base_url=url,
            allow_insecure_http=True,
            max_retries=0,
            http_client=httpx.Client(transport=sent_to(requests)),
        ) as client,
        pytest.raises(GenerationError),
    ):
        client.generate(PROMPT)
    assert [request.url.scheme for request in requests] == ["http"]
    assert KEY in str(requests[0].headers.get("x-goog-api-key", "")) + str(
        requests[0].headers.get("authorization", "")
    )


def test_plain_http_is_sent_after_the_opt_in_async() -> None:
    requests: list[httpx.Request] = []

    async def run() -> None:
        async with AsyncClient(
            provider="openai",
            api_key=KEY,
            base_url="http://gateway.example.com",
            allow_insecure_http=True,
            max_retries=0,
            http_client=httpx.AsyncClient(transport=sent_to(requests)),
        ) as client:
            with pytest.raises(GenerationError):
                await client.generate(PROMPT)

    asyncio.run(run())
    assert [str(request.url.copy_with(path="/")) for request in requests] == [
        "http://gateway.example.com/"
    ]


@pytest.mark.parametrize("cls", CLIENTS)
def test_a_mock_transport_answer_is_read(cls: type[Client | AsyncClient]) -> None:
    """SPEC: `http_client=` takes your own client, "a mock transport" among its uses."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": 503, "message": "overloaded"}})

    transport = httpx.MockTransport(answer)
    options: dict[str, Any] = {"provider": "gemini", "api_key": KEY, "max_retries": 0}
    if cls is Client:
        with (
            Client(**options, http_client=httpx.Client(transport=transport)) as client,
            pytest.raises(GenerationError),
        ):
            client.generate(PROMPT)
    else:

        async def run() -> None:
            http_client = httpx.AsyncClient(transport=transport)
            async with AsyncClient(**options, http_client=http_client) as client:
                with pytest.raises(GenerationError):
                    await client.generate(PROMPT)

        asyncio.run(run())


# -- the chain an error keeps, directly (issue 11) ------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_cause_of_a_failed_exchange_holds_no_key(make_client: Any, provider: str) -> None:
    """`err.__cause__.request.headers` is httpx's request as sent: its key header scrubbed."""
    import respx

    with respx.mock(assert_all_called=False) as router:
        route = router.route().mock(side_effect=httpx.ConnectError("refused"))
        client = make_client(provider=provider, api_key=KEY, max_retries=0)
        with pytest.raises(aigen.APIConnectionError) as caught:
            client.generate(PROMPT)
    sent = route.calls.last.request
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert KEY not in repr(cause.request.headers)
    assert KEY not in repr(list(cause.request.headers.raw))
    assert KEY in repr(list(sent.headers.raw))  # it was sent with the key all the same
    headers = cause.request.headers
    assert "[redacted]" in headers.get("x-goog-api-key", "") + headers.get("authorization", "")


def test_a_body_that_is_not_json_is_not_kept_in_the_chain(make_client: Any) -> None:
    import respx

    body = f"<html>{KEY}</html>".encode()
    with respx.mock(assert_all_called=False) as router:
        router.route().mock(return_value=httpx.Response(200, content=body))
        client = make_client(provider="gemini", api_key=KEY, max_retries=0)
        with pytest.raises(GenerationError) as caught:
            client.generate(PROMPT)
    assert caught.value.__context__ is None  # raised `from None`: cut, not only hidden
    assert all(KEY not in text for text in object_texts(caught.value))


def test_a_key_in_httpcores_debug_record_is_scrubbed(logs: list[logging.LogRecord]) -> None:
    with (
        fake_server("gemini", default=success(headers={"x-echo": KEY})) as fake,
        Client(api_key=KEY, base_url=fake.base_url) as client,
    ):
        client.generate(PROMPT)
    headers_records = [r for r in logs if "receive_response_headers.complete" in r.getMessage()]
    assert headers_records
    assert all("[redacted]" in record.getMessage() for record in headers_records)
    assert_clean_logs(logs)
