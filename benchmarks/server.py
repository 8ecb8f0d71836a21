"""The benchmarks' fake server: raw asyncio, HTTP/1.1 keep-alive, precomputed answers.

Not `aigen.testing`'s scripted server: its per-request Python (routing, validation,
scripting) would dominate a sub-millisecond call. This one parses the request line and
`Content-Length`, skips the body, and writes one precomputed bytes object per
(provider, size), after an optional delay.

The first path segment picks the answer, so each client only needs a base URL:
`/{size}[-d{ms}]/...`, e.g. `http://127.0.0.1:PORT/tiny-d50` for a tiny image after
50 ms. The rest of the path picks the provider: `...:generateContent` is Gemini,
`.../images/generations` is OpenAI. Run as `python -m benchmarks.server [--quick]`: it
prints one JSON line (port, image and body sizes), then serves until its standard input
closes or `--max-seconds` pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading

from benchmarks.payloads import PROVIDERS, answer_body, http_answer, random_png, sides

__all__ = ["build_answers", "main"]

_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n"
    b'{"error":"not found"}'
)
_UNSUPPORTED = b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_MAX_HEAD = 64 * 1024


def build_answers(*, quick: bool) -> tuple[dict[tuple[str, str], bytes], dict[str, object]]:
    """The full HTTP answer per (provider, size), and what the run should know of them."""
    answers: dict[tuple[str, str], bytes] = {}
    info: dict[str, dict[str, int]] = {"png_bytes": {}, "body_bytes": {}, "side_px": {}}
    for seed, (size, side) in enumerate(sides(quick=quick).items()):
        png = random_png(side, seed)
        info["png_bytes"][size] = len(png)
        info["side_px"][size] = side
        for provider in PROVIDERS:
            body = answer_body(provider, png)
            info["body_bytes"][f"{provider}.{size}"] = len(body)
            answers[(provider, size)] = http_answer(provider, body)
    return answers, dict(info)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: read a request, answer it, repeat."""

    def __init__(self, answers: dict[tuple[str, str], bytes]) -> None:
        self._answers = answers
        self._buffer = bytearray()
        self._target: bytes | None = None
        self._body_left = 0
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._target is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > _MAX_HEAD:
                        self._close_with(_UNSUPPORTED)
                    return
                head = bytes(self._buffer[:end])
                del self._buffer[: end + 4]
                if not self._start(head):
                    return
            if len(self._buffer) < self._body_left:
                self._body_left -= len(self._buffer)
                self._buffer.clear()
                return
            del self._buffer[: self._body_left]
            self._body_left = 0
            target, self._target = self._target, None
            assert target is not None
            self._answer(target)

    def _start(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self._close_with(_UNSUPPORTED)
            return False
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                self._close_with(_UNSUPPORTED)  # no benchmarked client sends chunked bodies
                return False
        self._target = parts[1]
        self._body_left = length
        return True

    def _answer(self, target: bytes) -> None:
        prefix, _, rest = target.lstrip(b"/").partition(b"/")
        size, _, delay_text = prefix.decode("ascii", "replace").partition("-d")
        if rest.endswith(b":generateContent"):
            provider = "gemini"
        elif rest.endswith(b"images/generations"):
            provider = "openai"
        else:
            provider = ""
        answer = self._answers.get((provider, size), _NOT_FOUND)
        delay = int(delay_text) / 1000 if delay_text.isdigit() else 0.0
        if delay:
            self._loop.call_later(delay, self._write, answer)
        else:
            self._write(answer)

    def _write(self, answer: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(answer)

    def _close_with(self, answer: bytes) -> None:
        self._write(answer)
        if self._transport is not None:
            self._transport.close()


async def _serve(host: str, port: int, quick: bool, max_seconds: float) -> None:
    answers, info = build_answers(quick=quick)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(answers), host, port, backlog=2048, reuse_address=True
    )
    bound = server.sockets[0].getsockname()
    print(json.dumps({"host": host, "port": bound[1], **info}), flush=True)
    stop = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    async with server:
        try:
            await asyncio.wait_for(stop.wait(), max_seconds)
        except asyncio.TimeoutError:
            print("benchmarks.server: --max-seconds passed, stopping", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small images (CI)")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.quick, args.max_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
