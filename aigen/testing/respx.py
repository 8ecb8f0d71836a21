"""The fakes without a socket: a provider's endpoints routed through respx.

Needs respx, which comes with the test extra: `pip install aigen[test]`.

```python
from aigen import Client
from aigen.testing import rate_limited
from aigen.testing.respx import mock_provider

with mock_provider("gemini") as fake:
    fake.script(rate_limited(2.0))
    with Client(**fake.client_options) as client:
        image = client.generate("a fox")  # waits 2 s as told, then gets a drawn fox
    assert len(fake.requests) == 2
```

The same dialects answer as on a `FakeServer`, from the same script, and every request
is recorded the same way. `base_url` is the provider's public endpoint unless you pass
another, so code that builds its own `Client()` is caught too. Without a socket nothing
times out: `delay` and `body_duration` are slept while the body is read (the thread
sleeps in sync code, `asyncio.sleep` in async code), a `Drop` raises
`httpx.RemoteProtocolError` at once, and `cut_after` raises it after that many bytes; a
reset (`reset()`, `reset_after`) raises `httpx.ReadError` instead, as a real RST does. An
endless body yields filler until the client stops reading or its `endless_limit`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from ._dialect import Dialect
from ._gemini import GeminiDialect
from ._openai import OpenAIDialect
from ._outcomes import Drop, Outcome, Reply
from ._recording import read_request
from ._script import ScriptedAPI

if TYPE_CHECKING:
    import respx

__all__ = ["MockProvider", "mock_provider"]

# A socket hands a client at most this much at a time; the mock's body comes in the same
# pieces, so a gzip bomb inflates here as it would over a socket. An endless body repeats it.
_READ_SIZE = 65536
_FILLER = b"A" * _READ_SIZE


class MockProvider(ScriptedAPI):
    """A scripted fake provider behind respx routes: `script()`, `requests`, `base_url`, ..."""

    def __init__(
        self,
        dialect: Dialect,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        default: Outcome | None = None,
        mime_type: str = "image/png",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            dialect, api_key=api_key, default=default, mime_type=mime_type, wall_clock=wall_clock
        )
        self._base_url = (base_url or dialect.default_base_url).rstrip("/")

    @property
    def base_url(self) -> str:
        """The URL whose requests are answered (the provider's public endpoint by default)."""
        return self._base_url

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one httpx request as the fake would (the respx side effect)."""
        target = request.url.raw_path.decode("ascii")
        seen = read_request(request.method, target, dict(request.headers), request.read())
        outcome, reply = self.respond(seen)
        if reply is None:
            if isinstance(outcome, Drop) and outcome.reset:
                raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        payload = reply.wire_body()
        headers = {"content-type": "application/json; charset=UTF-8"}
        if reply.gzip:
            headers["content-encoding"] = "gzip"
        if not (reply.chunked or reply.endless_limit is not None):
            headers["content-length"] = str(len(payload))
        headers.update({name.lower(): value for name, value in reply.headers.items()})
        if reply.content_type is not None:
            headers["content-type"] = reply.content_type
        stream = _Body(payload, reply, wait=outcome.delay)
        return httpx.Response(reply.status, headers=headers, stream=stream, request=request)


@contextmanager
def mock_provider(
    provider: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    default: Outcome | None = None,
    mime_type: str = "image/png",
    wall_clock: Callable[[], float] = time.time,
    router: respx.MockRouter | None = None,
) -> Iterator[MockProvider]:
    """Route `provider`'s endpoints under `base_url` to a scripted fake, for the `with` block.

    Every request whose URL starts with `base_url` is answered by the fake (its own checks
    first: a wrong path is the provider's 404, a missing key its 401). Pass your own
    `router` (a `respx.mock` you already use) to add the route to it; otherwise a new
    `respx.mock` is started, which lets no other request through. The other keywords
    are those of `FakeServer`.
    """
    try:
        import respx
    except ImportError as exc:  # pragma: no cover - respx is in the test extra
        raise ImportError("aigen.testing.respx needs respx: pip install aigen[test]") from exc
    dialects: dict[str, Callable[[], Dialect]] = {"gemini": GeminiDialect, "openai": OpenAIDialect}
    if provider not in dialects:
        raise ValueError(f"no fake for provider {provider!r}; known: {sorted(dialects)}")
    fake = MockProvider(
        dialects[provider](),
        base_url=base_url,
        api_key=api_key,
        default=default,
        mime_type=mime_type,
        wall_clock=wall_clock,
    )
    prefix = f"{fake.base_url}/"
    if router is not None:
        name = f"aigen-fake-{provider}-{id(fake)}"
        router.route(url__startswith=prefix, name=name).mock(side_effect=fake.handle)
        try:
            yield fake
        finally:
            router.routes.pop(name, None)  # type: ignore[no-untyped-call]
        return
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=prefix).mock(side_effect=fake.handle)
        yield fake


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that waits as scripted and may break off, in sync and async code alike."""

    def __init__(self, payload: bytes, reply: Reply, *, wait: float) -> None:
        self._payload = payload
        self._reply = reply
        self._wait = wait

    def _pieces(self) -> Iterator[tuple[float, bytes]]:
        """(seconds to wait first, bytes) for each piece; the last may be cut short."""
        reply, payload = self._reply, self._payload
        lost_at = [n for n in (reply.cut_after, reply.reset_after) if n is not None]
        if lost_at:
            payload = payload[: min(lost_at)]
        count = max(1, min(reply.chunks, len(payload))) if reply.body_duration > 0 else 1
        step = max(1, -(-len(payload) // count))
        pause = reply.body_duration / count if reply.body_duration > 0 else 0.0
        yield self._wait, b""
        for start in range(0, max(1, len(payload)), step):
            piece = payload[start : start + step]
            yield pause, piece[:_READ_SIZE]
            for rest in range(_READ_SIZE, len(piece), _READ_SIZE):
                yield 0.0, piece[rest : rest + _READ_SIZE]
        if reply.endless_limit is not None and not lost_at:
            budget = reply.endless_limit - len(payload)
            while budget > 0:
                piece = _FILLER[:budget]
                budget -= len(piece)
                yield 0.0, piece

    def _cut(self) -> None:
        reply = self._reply
        if reply.reset_after is not None:
            raise httpx.ReadError("[Errno 104] Connection reset by peer")
        if reply.cut_after is not None or reply.endless_limit is not None:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )

    def __iter__(self) -> Iterator[bytes]:
        for pause, piece in self._pieces():
            if pause > 0:
                time.sleep(pause)
            if piece:
                yield piece
        self._cut()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for pause, piece in self._pieces():
            if pause > 0:
                await asyncio.sleep(pause)
            if piece:
                yield piece
        self._cut()
