"""What runs in each fresh process: one client, one provider, one task; JSON on stdout.

Tasks:

- `calls`: per-call time of sequential calls, sync then async, for each image size;
  then the wall time of `burst_tiny` calls in flight at once (async, tiny image, the
  server holding each answer `burst_delay_ms`).
- `burst`: the wall time of `burst_large` medium-image calls in flight at once (async),
  and how far the process's peak RSS rose over them. A process of its own, so the peak
  left by earlier large answers does not hide this one.

Every call's result is checked to be the served PNG (its length, and its signature once).
Results are kept until the burst ends, as `asyncio.gather` keeps them for a caller.
Before any of it, `prepare` sets the process up for its client (for aigen-core, pybase64
blocked) and checks which decoder aigen picked.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.clients import make_async, make_sync, prepare

__all__ = ["main", "peak_rss_bytes"]

_PNG = b"\x89PNG\r\n\x1a\n"


def peak_rss_bytes() -> int:
    """The process's peak resident set so far (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _check(image: bytes, expected: int) -> None:
    if len(image) != expected:
        raise AssertionError(f"got {len(image)} image bytes, the server sent {expected}")


def _base(spec: dict[str, Any], size: str, delay_ms: int = 0) -> str:
    prefix = f"{size}-d{delay_ms}" if delay_ms else size
    return f"{spec['server']}/{prefix}"


def _sequential_sync(spec: dict[str, Any], size: str) -> list[float]:
    warmup, count = spec["calls"][size]
    expected = spec["png_bytes"][size]
    call, close = make_sync(spec["client"], spec["provider"], _base(spec, size))
    try:
        for _ in range(warmup):
            image = call()
            assert image.startswith(_PNG), "the client did not return the PNG"
            _check(image, expected)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            image = call()
            samples.append((time.perf_counter() - start) * 1000)
            _check(image, expected)
        return samples
    finally:
        close()


async def _sequential_async(spec: dict[str, Any], size: str) -> list[float]:
    warmup, count = spec["calls"][size]
    expected = spec["png_bytes"][size]
    call, close = make_async(spec["client"], spec["provider"], _base(spec, size))
    try:
        for _ in range(warmup):
            image = await call()
            assert image.startswith(_PNG), "the client did not return the PNG"
            _check(image, expected)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            image = await call()
            samples.append((time.perf_counter() - start) * 1000)
            _check(image, expected)
        return samples
    finally:
        await close()


async def _in_flight(call: Callable[[], Awaitable[bytes]], count: int, expected: int) -> float:
    """Milliseconds from starting `count` calls at once to the last one's image."""
    start = time.perf_counter()
    images = await asyncio.gather(*(call() for _ in range(count)))
    wall = (time.perf_counter() - start) * 1000
    for image in images:
        _check(image, expected)
    return wall


async def _burst_tiny(spec: dict[str, Any]) -> list[float]:
    delay = spec["burst_delay_ms"]
    base = _base(spec, "tiny", delay)
    call, close = make_async(spec["client"], spec["provider"], base)
    expected = spec["png_bytes"]["tiny"]
    try:
        _check(await call(), expected)  # connect and warm up once
        return [
            await _in_flight(call, spec["burst_tiny"], expected)
            for _ in range(spec["burst_tiny_reps"])
        ]
    finally:
        await close()


async def _burst_large(spec: dict[str, Any]) -> dict[str, list[float]]:
    call, close = make_async(spec["client"], spec["provider"], _base(spec, "medium"))
    expected = spec["png_bytes"]["medium"]
    try:
        _check(await call(), expected)  # connect and warm up once
        before = peak_rss_bytes()
        wall = await _in_flight(call, spec["burst_large"], expected)
        growth = (peak_rss_bytes() - before) / 1e6
        return {"wall": [wall], "rss": [growth]}
    finally:
        await close()


def run(spec: dict[str, Any]) -> dict[str, list[float]]:
    """Samples per figure key, e.g. {"call.tiny.sync": [...ms]}."""
    samples: dict[str, list[float]] = {}
    if spec["task"] == "calls":
        for size in spec["sizes"]:
            samples[f"call.{size}.sync"] = _sequential_sync(spec, size)

        async def async_part() -> None:
            for size in spec["sizes"]:
                samples[f"call.{size}.async"] = await _sequential_async(spec, size)
            samples["burst_tiny"] = await _burst_tiny(spec)

        asyncio.run(async_part())
    elif spec["task"] == "burst":
        found = asyncio.run(_burst_large(spec))
        samples["burst_large"] = found["wall"]
        samples["rss_large"] = found["rss"]
    else:
        raise ValueError(f"unknown task {spec['task']!r}")
    return samples


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    prepare(spec["client"])  # before anything imports aigen: aigen-core blocks pybase64
    print(json.dumps({"samples": run(spec)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
