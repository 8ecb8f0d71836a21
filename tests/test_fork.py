"""A client used before `os.fork()` shares no kept-alive socket with the child (issue 11).

gunicorn `--preload` and Celery's prefork pool make the client in the parent and fork the
workers. A kept-alive connection inherited by a child is the parent's socket too: two
processes reading one socket get each other's answers. Each test forks for real: the
parent keeps a connection alive to a fake on 127.0.0.1, the child calls through the same
client object and, while it is still alive, the parent counts the fake's open connections
(two: the child opened its own). Then the parent's own connection still serves it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

import pytest

from aigen import AsyncClient, Client
from aigen.testing import FakeServer, fake_server

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not hasattr(os, "fork"), reason="os.fork on Linux"
)

KEY = "fork-test-key-0123456789"


def in_child(work: Callable[[], str], fake: FakeServer) -> tuple[str, int]:
    """Run `work` in a forked child; return what it reported and the fake's open connection
    count while the child was still alive (after its call, before it exits)."""
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, wait for the parent's word, leave without cleanup
        code = 0
        try:
            os.close(report_r)
            os.close(go_w)
            try:
                message = work()
            except BaseException as exc:
                message = f"error {type(exc).__name__}: {exc}"
            os.write(report_w, message.encode())
            os.close(report_w)
            os.read(go_r, 1)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(go_r)
    try:
        chunks = []
        while chunk := os.read(report_r, 65536):
            chunks.append(chunk)
        connections = fake.open_connections
    finally:
        os.write(go_w, b"x")
        os.close(go_w)
        os.close(report_r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode(), connections


def test_a_sync_client_used_before_a_fork_opens_its_own_connection_in_the_child() -> None:
    with fake_server("gemini") as fake, Client(api_key=KEY, base_url=fake.base_url) as client:
        client.generate("parent, before the fork", width=512, height=512)
        assert fake.open_connections == 1  # kept alive

        def child() -> str:
            image = client.generate("child", width=512, height=512)
            return f"ok {image.width}x{image.height}"

        report, connections = in_child(child, fake)
        assert report == "ok 1024x1024"
        assert connections == 2  # the child's own, beside the parent's kept-alive one
        assert fake.wait_until(lambda f: f.open_connections == 1)
        client.generate("parent, after the fork", width=512, height=512)
        assert len(fake.requests) == 3
        assert fake.open_connections == 1  # the parent's connection, untouched, reused


@pytest.mark.parametrize("child_loop", ["inherited loop", "new loop"])
def test_an_async_client_used_before_a_fork_opens_its_own_connection_in_the_child(
    child_loop: str,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        with fake_server("openai") as fake:
            client = AsyncClient(provider="openai", api_key=KEY, base_url=fake.base_url)
            loop.run_until_complete(client.generate("parent, before the fork"))
            assert fake.open_connections == 1

            def child() -> str:
                call = client.generate("child")
                if child_loop == "new loop":  # left open: the child's connection stays too
                    image = asyncio.new_event_loop().run_until_complete(call)
                else:
                    image = loop.run_until_complete(call)
                return f"ok {image.width}x{image.height}"

            report, connections = in_child(child, fake)
            assert report == "ok 1024x1024"
            assert connections == 2
            assert fake.wait_until(lambda f: f.open_connections == 1)
            loop.run_until_complete(client.generate("parent, after the fork"))
            assert len(fake.requests) == 3
            assert fake.open_connections == 1
            loop.run_until_complete(client.aclose())
    finally:
        loop.close()


def test_a_client_not_forked_keeps_its_pool() -> None:
    with fake_server("gemini") as fake, Client(api_key=KEY, base_url=fake.base_url) as client:
        pool = client._http
        client.generate("one")
        client.generate("two")
        assert client._http is pool
        assert fake.open_connections == 1
