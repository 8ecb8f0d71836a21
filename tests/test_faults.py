"""The fault matrix: each transport and body fault, for each provider and client, over 127.0.0.1.

One parametrized test runs each `Fault` against a real fake server (`aigen.testing`) with
`Client` and `AsyncClient` (`[sync-gemini-...]`, `[async-openai-...]`, ...), and checks
that the call ends as documented (a success, or the exact `GenerationError` subclass,
after the right number of attempts) and that nothing is left behind once the client is
closed: no new thread, no connection open on the server, no file descriptor more than
before the client was made. Every case uses a small `max_response_bytes` (1 MiB), a
short read timeout and retries with tiny waits, so the whole file runs in seconds.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import aigen
from aigen.testing import (
    ENDLESS_LIMIT,
    FakeServer,
    Outcome,
    Reply,
    drop,
    endless_body,
    fake_server,
    gzip_bomb,
    malformed,
    oversized,
    reset,
    stall,
    success,
)

from .images import png

CAP = 1024 * 1024  # max_response_bytes for every case
RETRIES = 1  # every retryable fault is retried once: 2 attempts
POLICY = aigen.RetryPolicy(max_retries=RETRIES, initial_delay=0.01, max_delay=0.02)
READ_TIMEOUT = 0.25
TIMEOUT = httpx.Timeout(2.0, read=READ_TIMEOUT)
IMAGE = png(16, 16)  # every success carries it: nothing is drawn
OVERSIZE = 2 * CAP
# The largest bomb whose gzipped body (about 1 KiB per MiB) still fits under CAP, so its
# content-length passes and only the count after decompression can stop it.
BOMB = 1000 * 1024 * 1024
LEAK_WAIT = 3.0  # how long a server connection or thread may take to wind down
PROVIDERS = ("gemini", "openai")

Check = Callable[[Any, FakeServer, float], None]


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: what the server plays, and how the call must end.

    `script` is played first, then `default` for every later request. `raises` is the
    exact error class, or `None` for a success; `attempts` how many HTTP attempts the
    call made (and the server saw). Each of `checks` looks further at the outcome, once
    the leak check has passed: `check(outcome, server, seconds the call took)`.
    """

    name: str
    script: tuple[Outcome, ...] = ()
    default: Outcome | None = None
    raises: type[aigen.GenerationError] | None = None
    attempts: int = 1
    checks: tuple[Check, ...] = ()
    refused: bool = False  # no server listens: the port refuses connections
    traced: bool = False  # measure the call's peak memory with tracemalloc


# -- extra checks ------------------------------------------------------------------------


def in_time(limit: float) -> Check:
    def check(outcome: Any, server: FakeServer, elapsed: float) -> None:
        assert elapsed < limit, f"took {elapsed:.2f} s, more than {limit} s"

    return check


def names(*words: str) -> Check:
    def check(outcome: Any, server: FakeServer, elapsed: float) -> None:
        for word in words:
            assert word in outcome.message

    return check


def reset_by_peer(outcome: Any, server: FakeServer, elapsed: float) -> None:
    # A RST, not a FIN: the client's socket saw ECONNRESET (the async stack's httpx.ReadError
    # has no text of its own, so the cause is found in the exception chain).
    causes = []
    cause: BaseException | None = outcome
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    assert any(isinstance(c, ConnectionResetError) for c in causes), causes


def refused_before_reading(outcome: Any, server: FakeServer, elapsed: float) -> None:
    # Refused on content-length: the size named is the one announced, not a running count.
    assert "max_response_bytes" in outcome.message
    assert f"({OVERSIZE:,} > {CAP:,} bytes)" in outcome.message


def refused_while_reading(outcome: Any, server: FakeServer, elapsed: float) -> None:
    # No content-length: the body was read until it passed the cap, not to its end.
    assert "max_response_bytes" in outcome.message
    read = int(outcome.message.split("(")[1].split(" >")[0].replace(",", ""))
    assert CAP < read < OVERSIZE


def endless_stopped(outcome: Any, server: FakeServer, elapsed: float) -> None:
    assert "max_response_bytes" in outcome.message
    assert elapsed < 1.0
    # Run after the leak check: the server's stream has ended and does not grow any more.
    sent = server.bytes_sent
    time.sleep(0.05)
    assert server.bytes_sent == sent
    assert CAP < sent < 32 * CAP < ENDLESS_LIMIT


def bomb_defused(outcome: Any, server: FakeServer, elapsed: float) -> None:
    assert "max_response_bytes" in outcome.message
    assert server.requests[0].reply is not None
    assert len(server.requests[0].reply.wire_body()) < CAP  # its content-length passed


def image_received(outcome: Any, server: FakeServer, elapsed: float) -> None:
    assert outcome.image_data == IMAGE
    assert (outcome.width, outcome.height) == (16, 16)


# -- the matrix --------------------------------------------------------------------------

ConnErr, Timeout, GenErr = aigen.APIConnectionError, aigen.APITimeoutError, aigen.GenerationError
FAULTS = [
    Fault("ok", script=(success(IMAGE),), checks=(image_received,)),
    Fault("ok-chunked", script=(success(IMAGE, chunked=True),), checks=(image_received,)),
    Fault("ok-gzip", script=(success(IMAGE, gzip=True),), checks=(image_received,)),
    Fault("refused", refused=True, raises=ConnErr, attempts=1 + RETRIES),
    Fault(
        "reset-before-answer",
        default=reset(),
        raises=ConnErr,
        attempts=1 + RETRIES,
        checks=(reset_by_peer,),
    ),
    Fault("reset-once-then-ok", script=(reset(),), attempts=2, checks=(image_received,)),
    Fault(
        "reset-mid-body",
        default=reset(after_bytes=100),
        raises=ConnErr,
        attempts=1 + RETRIES,
        checks=(reset_by_peer,),
    ),
    Fault("reset-mid-body-then-ok", script=(reset(after_bytes=100),), attempts=2),
    Fault("closed-before-answer", default=drop(), raises=ConnErr, attempts=1 + RETRIES),
    Fault("closed-mid-body", default=success(cut_after=100), raises=ConnErr, attempts=1 + RETRIES),
    Fault(
        "slow-headers",
        default=stall(0.5),
        raises=Timeout,
        attempts=1 + RETRIES,
        checks=(in_time(1.0),),
    ),
    Fault(
        # Headers at once, then 0.35 s of silence before each half of the body.
        "slow-body",
        default=success(IMAGE, body_duration=0.7, chunks=2),
        raises=Timeout,
        attempts=1 + RETRIES,
        checks=(in_time(1.0),),
    ),
    Fault("truncated-json", script=(malformed("truncated_json"),), raises=GenErr),
    Fault("not-json", script=(malformed("not_json"),), raises=GenErr, checks=(names("not JSON"),)),
    Fault(
        "invalid-base64",
        script=(malformed("bad_base64"),),
        raises=GenErr,
        checks=(names("base64"),),
    ),
    Fault("html-200", script=(malformed("html_200"),), raises=GenErr, checks=(names("not JSON"),)),
    Fault("not-an-image", script=(malformed("not_an_image"),), raises=GenErr),
    # aigen reads the body, whatever its label: valid JSON under a wrong type is a success.
    Fault("json-as-text-plain", script=(success(IMAGE, content_type="text/plain"),)),
    Fault("json-as-image-png", script=(success(IMAGE, content_type="image/png"),)),
    Fault(
        "oversized-declared",
        script=(oversized(OVERSIZE),),
        raises=GenErr,
        checks=(refused_before_reading,),
    ),
    Fault(
        "oversized-chunked",
        script=(oversized(OVERSIZE, declare_length=False),),
        raises=GenErr,
        checks=(refused_while_reading,),
    ),
    Fault("endless-body", default=endless_body(), raises=GenErr, checks=(endless_stopped,)),
    Fault("gzip-bomb", default=gzip_bomb(BOMB), raises=GenErr, checks=(bomb_defused,), traced=True),
]


# -- leaks -------------------------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """This process's open file descriptors, each with what it points at."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
    return found


class LeakCheck:
    """What was running and open before the client was made, to compare after `close()`."""

    def __init__(self) -> None:
        self.threads = set(threading.enumerate())
        self.fds = open_fds()
        self.verified = False

    def verify(self, server: FakeServer) -> None:
        """No new thread, no open server connection, no new descriptor (after a grace time)."""
        self.verified = True
        assert server.wait_until(lambda s: s.open_connections == 0, timeout=LEAK_WAIT), (
            f"{server.open_connections} connection(s) still open on the server"
        )
        deadline = time.monotonic() + LEAK_WAIT
        while True:
            threads = [t.name for t in set(threading.enumerate()) - self.threads if t.is_alive()]
            fds = {fd: what for fd, what in open_fds().items() if self.fds.get(fd) != what}
            if (not threads and not fds) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert threads == [], f"threads left behind: {threads}"
        assert fds == {}, f"file descriptors left open: {fds}"
        assert len(open_fds()) == len(self.fds)


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(provider: str) -> Iterator[FakeServer]:
    with fake_server(provider, default=success(IMAGE)) as fake:
        yield fake


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A URL whose port refuses connections: bound, never listening, so no one takes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{closed.getsockname()[1]}"


@pytest.fixture
def leaks(server: FakeServer, make_client: Any, refusing_url: str) -> Iterator[LeakCheck]:
    """The baseline, taken once the server listens and before any client exists.

    Every test using it must call `verify()` after closing its client.
    """
    check = LeakCheck()
    yield check
    assert check.verified, "the test did not run the leak check"


# -- the test ----------------------------------------------------------------------------


def run_once(
    client_kind: str, make_client: Any, *, traced: bool = False, **options: Any
) -> tuple[Any, float, int]:
    """One call in real time: (its response or error, seconds taken, peak traced bytes).

    The client is closed before returning. With `traced`, tracemalloc measures the call's
    peak memory (the call alone, not the client's construction); otherwise the peak is 0.
    """
    client = make_client(real_time=True, **options)
    if traced:
        tracemalloc.start()
    started = time.monotonic()
    try:
        outcome: Any = client.generate("a fox")
    except Exception as exc:  # kept, to look at
        outcome = exc
    elapsed = time.monotonic() - started
    peak = 0
    if traced:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    client.close() if client_kind == "sync" else client.aclose()
    return outcome, elapsed, peak


@pytest.mark.parametrize("fault", [pytest.param(f, id=f.name) for f in FAULTS])
def test_fault_ends_as_documented_and_leaves_nothing_behind(
    fault: Fault,
    client_kind: str,
    provider: str,
    server: FakeServer,
    make_client: Any,
    refusing_url: str,
    leaks: LeakCheck,
) -> None:
    server.script(*fault.script)
    if fault.default is not None:
        server.default = fault.default
    outcome, elapsed, peak = run_once(
        client_kind,
        make_client,
        traced=fault.traced,
        provider=provider,
        base_url=refusing_url if fault.refused else server.base_url,
        timeout=TIMEOUT,
        retry=POLICY,
        max_response_bytes=CAP,
    )

    if fault.raises is None:
        assert isinstance(outcome, aigen.GenerationResponse), repr(outcome)
        assert outcome.attempts == fault.attempts
    else:
        assert type(outcome) is fault.raises, repr(outcome)
        assert outcome.attempts == fault.attempts
        assert outcome.generation_id is not None
    assert len(server.requests) == (0 if fault.refused else fault.attempts)
    leaks.verify(server)
    for check in fault.checks:
        check(outcome, server, elapsed)
    if fault.traced:
        # Bounded by what one network read inflates to, far below the bomb's size.
        assert peak < BOMB / 4, f"peak traced memory {peak / 2**20:.0f} MiB"


# -- gzip bodies: the deadline and the memory cap hold (these once failed) ----------------


def symptom(holds: bool, message: str) -> None:
    assert holds, message


def test_a_gzipped_slow_body_is_stopped_by_the_deadline(
    client_kind: str, provider: str, server: FakeServer, make_client: Any, leaks: LeakCheck
) -> None:
    # A megabyte of text near the start, gzipped to a few hundred bytes: by the 2nd of 8
    # pieces (one every 0.15 s) more has been inflated than the whole wire length.
    text = "x" * 1_000_000
    filler = {"text": text} if provider == "gemini" else {"revised_prompt": text}
    server.default = success(IMAGE, gzip=True, body_duration=1.2, chunks=8, **filler)
    policy = aigen.RetryPolicy(deadline=0.5, initial_delay=0.01)

    outcome, elapsed, _ = run_once(
        client_kind, make_client, **server.client_options, timeout=2.0, retry=policy
    )
    leaks.verify(server)

    # Stopped by the 4th piece (0.6 s), as the same body without gzip is; not at 1.2 s.
    assert isinstance(outcome, (aigen.APITimeoutError, aigen.GenerationResponse)), repr(outcome)
    symptom(type(outcome) is aigen.APITimeoutError, f"{outcome!r} after {elapsed:.2f} s")
    assert elapsed < 0.85


def test_a_gzip_bomb_costs_memory_in_proportion_to_max_response_bytes(
    client_kind: str, provider: str, server: FakeServer, make_client: Any, leaks: LeakCheck
) -> None:
    server.default = gzip_bomb(BOMB)

    outcome, _, peak = run_once(
        client_kind,
        make_client,
        traced=True,
        **server.client_options,
        timeout=TIMEOUT,
        retry=POLICY,
        max_response_bytes=CAP,
    )
    leaks.verify(server)

    assert type(outcome) is aigen.GenerationError
    symptom(peak < 16 * CAP, f"peak traced memory {peak / 2**20:.0f} MiB for a 1 MiB cap")


# -- the faults themselves ---------------------------------------------------------------


def generation_request(server: FakeServer) -> tuple[str, dict[str, Any], dict[str, str]]:
    """A valid generation request for `server`'s provider: path, JSON body, headers."""
    if server.provider == "gemini":
        body: dict[str, Any] = {"contents": [{"parts": [{"text": "a fox"}]}]}
        return "/v1beta/models/m:generateContent", body, {"x-goog-api-key": "k"}
    return "/v1/images/generations", {"prompt": "a fox"}, {"authorization": "Bearer k"}


def raw_exchange(server: FakeServer) -> tuple[bytes, BaseException | None]:
    """Send one request on a plain socket; return what came back and how the stream ended."""
    import json

    path, fields, headers = generation_request(server)
    body = json.dumps(fields).encode()
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += f"content-length: {len(body)}\r\n\r\n"
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as sock:
        sock.sendall(head.encode() + body)
        try:
            while piece := sock.recv(65536):
                received += piece
        except OSError as exc:
            return received, exc
    return received, None


@pytest.mark.parametrize("after_bytes", [None, 0, 100])
def test_reset_sends_a_tcp_rst_not_a_fin(server: FakeServer, after_bytes: int | None) -> None:
    server.script(reset(after_bytes))

    received, ended = raw_exchange(server)

    assert isinstance(ended, ConnectionResetError)  # a FIN would end the stream quietly
    if after_bytes is None:
        assert received == b""
    else:  # what arrived before the RST is read first
        assert received.startswith(b"HTTP/1.1 200 ")
        assert len(received.partition(b"\r\n\r\n")[2]) == after_bytes
    assert server.wait_until(lambda s: s.open_connections == 0)


def test_drop_still_sends_a_fin(server: FakeServer) -> None:
    server.script(drop())

    assert raw_exchange(server) == (b"", None)


def test_an_endless_body_stops_at_its_safety_cap(server: FakeServer) -> None:
    limit = 300_000
    server.script(endless_body(limit=limit))
    path, fields, headers = generation_request(server)
    read, ended = 0, None
    with (
        httpx.Client(base_url=server.base_url, timeout=2.0) as http,
        http.stream("POST", path, json=fields, headers=headers) as response,
    ):
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        try:
            for piece in response.iter_raw():
                read += len(piece)
        except httpx.RemoteProtocolError as exc:
            ended = exc

    assert isinstance(ended, httpx.RemoteProtocolError)  # closed: the body never ended
    assert read == limit == server.bytes_sent


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024 - 1, 1024 * 1024, 3 * 1024 * 1024 + 12345])
def test_gzip_zeros_inflate_to_exactly_that_many_zeros(size: int) -> None:
    import gzip

    from aigen.testing._faults import gzip_zeros

    packed = gzip_zeros(size)
    assert gzip.decompress(packed) == bytes(size)  # the CRC and the length check too
    assert len(packed) < 64 + size // 1000


def test_fault_outcomes_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="after_bytes"):
        reset(after_bytes=-1)
    with pytest.raises(ValueError, match="size"):
        oversized(3)
    with pytest.raises(ValueError, match="limit"):
        endless_body(limit=0)
    with pytest.raises(ValueError, match="inflated_bytes"):
        gzip_bomb(-1)
    with pytest.raises(ValueError, match="endless"):
        Reply(200, b"", endless_limit=10, gzip=True)
    assert len(oversized(1000).encoded_body()) == 1000
    assert oversized(1000, declare_length=False).chunked


# -- the same faults without a socket ----------------------------------------------------

MOCKED = [f for f in FAULTS if not (f.refused or f.name.startswith(("slow-", "closed-")))]


@pytest.mark.parametrize("fault", [pytest.param(f, id=f.name) for f in MOCKED])
def test_a_mocked_fault_ends_as_over_a_socket(fault: Fault, provider: str) -> None:
    from aigen.testing.respx import mock_provider

    with mock_provider(provider, default=fault.default or success(IMAGE)) as fake:
        fake.script(*fault.script)
        with aigen.Client(
            provider=provider, api_key="k", retry=POLICY, max_response_bytes=CAP
        ) as client:
            try:
                outcome: Any = client.generate("a fox")
            except aigen.GenerationError as exc:
                outcome = exc

    if fault.raises is None:
        assert isinstance(outcome, aigen.GenerationResponse), repr(outcome)
    else:
        assert type(outcome) is fault.raises, repr(outcome)
    assert outcome.attempts == fault.attempts == len(fake.requests)
