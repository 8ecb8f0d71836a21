"""A real `redis-server` for the tests of aigen.redis, started and stopped by them.

`AIGEN_TEST_REDIS_URL` names a running server (what .ci/run exports); without it the tests
start their own from the `redis-server` on the PATH. With neither, they skip and say how
to install one, except under `CI=true`, where a missing Redis is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

INSTALL = "apt-get install -y redis-server (Debian, Ubuntu) or brew install redis (macOS)"


def missing(what: str) -> None:
    """Skip (a developer's machine) or fail (CI) for want of a Redis."""
    message = f"{what}; install one with: {INSTALL}, or set AIGEN_TEST_REDIS_URL"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the Redis tests: {message}")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One `redis-server` on 127.0.0.1, in memory only; `stop()` and `start()` again."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("no redis-server on the PATH")
        self.binary = str(binary)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []  # more redis-server options

    def command(self) -> list[str]:
        port = str(self.port)
        return [
            self.binary,
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False
