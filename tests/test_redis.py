"""aigen.redis on a real redis-server (tests/redis_server.py): what the store suite
(tests/test_store.py) cannot show.

- Redis' own clock, atomic scripts under threads and tasks, a flushed script cache;
- two stores (two connection pools, as two processes have) share a bucket and a breaker:
  a hold, an open circuit, one probe in all;
- the default key (provider, model, a hash of the API key) and `key=`;
- no API key in Redis, a TTL on every key, no credentials in a repr, a log or an error;
- Redis stopped and started again under `Client` and `AsyncClient`: `"local"` goes on
  with one WARNING, `"raise"` sends nothing; both come back by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import aigen
from aigen import CircuitBreaker, RateLimit, StoreUnavailableError
from aigen._store import RateChange
from aigen.redis import RedisStore
from aigen.testing import fake_server, server_error, success

from .redis_server import RedisServer
from .slow_proxy import SlowProxy

API_KEY = "sk-test-not-a-real-key-0123456789"


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def close_on(client: Any, *stores: RedisStore) -> None:
    """Close the stores' connections, those of the client's event loop first."""
    for store in stores:
        client._run(store.aclose())  # the facade's loop (make_client)
        store.close()


def store_on(url: str, prefix: str, **kwargs: Any) -> RedisStore:
    kwargs.setdefault("timeout", 2.0)
    return RedisStore.from_url(url, prefix=prefix, **kwargs)


def test_import_aigen_never_imports_redis() -> None:
    code = "import sys, aigen; aigen.Client; aigen.RateLimit; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_scripts_read_redis_clock_not_the_callers(redis_url: str, prefix: str) -> None:
    store = store_on(redis_url, prefix)
    # Callers whose clocks disagree by years still queue one slot a second apart.
    waits = [store.reserve("k", now, 1, 60) for now in (0.0, 1e9, 5.0)]
    assert waits[0] == 0
    assert waits[1] == pytest.approx(1.0, abs=0.05)
    assert waits[2] == pytest.approx(2.0, abs=0.05)
    store.close()


def test_a_hold_is_a_length_added_to_redis_clock(redis_url: str, prefix: str) -> None:
    store = store_on(redis_url, prefix)
    store.hold_until("k", time.time() + 5.0, 600)
    assert store.reserve("k", 0.0, 1, 600) == pytest.approx(5.0, abs=0.1)
    store.close()


# -- atomic under concurrency, and a flushed script cache -----------------------------------


def test_threads_never_share_a_slot(redis_url: str, prefix: str) -> None:
    stores = [store_on(redis_url, prefix, time_source="caller") for _ in range(4)]
    waits: list[float] = []
    lock = threading.Lock()

    def hammer(store: RedisStore) -> None:
        for _ in range(50):
            wait = store.reserve("k", 0.0, 1, 6000)  # a slot every 10 ms
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in stores for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(w, 6) for w in waits) == [round(i * 0.01, 6) for i in range(400)]
    for store in stores:
        store.close()


def test_tasks_never_share_a_slot(redis_url: str, prefix: str) -> None:
    store = store_on(redis_url, prefix, time_source="caller")

    async def hammer() -> list[float]:
        waits = await asyncio.gather(*(store.areserve("k", 0.0, 1, 6000) for _ in range(300)))
        await store.aclose()
        return list(waits)

    waits = asyncio.run(hammer())
    assert sorted(round(w, 6) for w in waits) == [round(i * 0.01, 6) for i in range(300)]
    store.close()


def test_a_flushed_script_cache_is_loaded_again(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    store = store_on(redis_url, prefix, time_source="caller")
    assert store.reserve("k", 0.0, 1, 60) == 0
    raw.script_flush()
    assert store.reserve("k", 0.0, 1, 60) == pytest.approx(1.0)

    async def twice() -> list[float]:
        first = await store.areserve("k", 0.0, 1, 60)
        raw.script_flush()
        second = await store.areserve("k", 0.0, 1, 60)
        await store.aclose()
        return [first, second]

    assert asyncio.run(twice()) == pytest.approx([2.0, 3.0])
    assert store.change_rate("k", RateChange(factor=0.5), 60) == 30
    store.close()


# -- two stores, one state: what processes sharing a Redis see ------------------------------


def test_one_stores_hold_delays_the_other(redis_url: str, prefix: str) -> None:
    first, second = store_on(redis_url, prefix), store_on(redis_url, prefix)
    first.hold_until("k", time.time() + 3.0, 600)  # the first process met a 429
    assert second.reserve("k", time.time(), 5, 600) == pytest.approx(3.0, abs=0.1)
    assert second.change_rate("k", RateChange(factor=0.5), 600) == 300
    assert first.rate("k") == 300  # the adaptive rate is shared too
    first.close()
    second.close()


def test_a_breaker_opened_by_one_stops_the_other_and_one_probe_goes_in_all(
    redis_url: str, prefix: str
) -> None:
    stores = [store_on(redis_url, prefix, time_source="caller") for _ in range(3)]
    for _ in range(3):
        stores[0].record("c", 0.0, "failure", False, 3)
    assert stores[1].admit("c", 1.0, 10.0).decision == "open"
    verdicts = [store.admit("c", 10.0, 10.0).decision for store in stores * 2]
    assert verdicts.count("probe") == 1
    assert verdicts.count("probing") == 5
    stores[2].record("c", 10.5, "success", True, 3)
    assert [store.admit("c", 11.0, 10.0).decision for store in stores] == ["go"] * 3
    for store in stores:
        store.close()


def test_a_probe_that_never_reported_is_given_up_after_a_cool_down(
    redis_url: str, prefix: str
) -> None:
    store = store_on(redis_url, prefix, time_source="caller")
    store.record("c", 0.0, "failure", False, 1)
    assert store.admit("c", 10.0, 10.0).decision == "probe"  # its process then died
    assert store.admit("c", 15.0, 10.0).decision == "probing"
    assert store.admit("c", 20.0, 10.0).decision == "probe"
    store.close()


# -- through the clients: the default key, and what Redis holds after a run ---------------


def test_clients_with_one_provider_model_and_key_share_a_bucket(
    make_client: Any, redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    store = store_on(redis_url, prefix)
    limit = RateLimit(requests_per_minute=600, store=store)
    breaker = CircuitBreaker(store=store)
    with fake_server("gemini", api_key=API_KEY) as fake:
        options = {**fake.client_options, "api_key": API_KEY}
        one = make_client(**options, rate_limit=limit, circuit_breaker=breaker, real_time=True)
        two = make_client(**options, rate_limit=limit, circuit_breaker=breaker, real_time=True)
        other_model = make_client(**options, model="other", rate_limit=limit, real_time=True)
        for client in (one, two, other_model):
            client.generate("a fox")
        close_on(one, store)
    keys = sorted(k.decode() for k in raw.scan_iter(f"{prefix}:*"))
    assert len(keys) == 3, keys  # one bucket and one circuit shared, one other bucket
    assert any(":other:" in key and key.endswith(":rl") for key in keys)
    for key in keys:
        assert raw.pttl(key) > 0, key
        blob = repr(raw.hgetall(key)) + key
        assert API_KEY not in blob
        assert API_KEY[-12:] not in blob


def test_an_explicit_key_names_the_bucket(
    make_client: Any, redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    store = store_on(redis_url, prefix)
    with fake_server("openai") as fake:
        client = make_client(
            **fake.client_options,
            rate_limit=RateLimit(requests_per_minute=600, store=store, key="team-quota"),
            circuit_breaker=CircuitBreaker(store=store, key="team-breaker"),
            real_time=True,
        )
        client.generate("a fox")
    close_on(client, store)
    keys = sorted(k.decode() for k in raw.scan_iter(f"{prefix}:*"))
    assert keys == [f"{prefix}:{{team-breaker}}:cb", f"{prefix}:{{team-quota}}:rl"]


def test_credentials_in_the_url_are_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    from .redis_server import free_port

    url = f"redis://aigen:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens
    store = RedisStore.from_url(url, on_unavailable="raise", timeout=0.2)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreUnavailableError) as caught:
        store.reserve("k", 0.0, 1, 60)
    seen = repr(store) + str(caught.value) + repr(caught.value) + caplog.text
    assert "hunter2" not in seen
    assert "aigen:" not in repr(store)
    assert "127.0.0.1" in repr(store)
    assert caught.value.held_back
    store.close()


# -- faults: Redis stopped mid-run, then started again --------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def test_local_carries_on_with_one_warning_and_comes_back(
    make_client: Any, own_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_on(own_redis.url, prefix, timeout=0.2)
    caplog.set_level(logging.WARNING, logger="aigen")
    with fake_server("gemini") as fake:
        client = make_client(
            **fake.client_options,
            rate_limit=RateLimit(requests_per_minute=6000, store=store),
            circuit_breaker=CircuitBreaker(store=store),
            real_time=True,
        )
        client.generate("before")
        own_redis.stop()
        for _ in range(5):
            client.generate("during")  # nothing lost, nothing hung
        time.sleep(1.1)
        client.generate("still down")
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        own_redis.start()
        time.sleep(1.1)  # past the retry interval
        client.generate("after")
        assert len(fake.requests) == 8
    close_on(client, store)
    raw = redis.Redis.from_url(own_redis.url)
    assert list(raw.scan_iter(f"{prefix}:*"))  # used again: the fresh server has the keys
    raw.close()


def test_raise_sends_nothing_while_redis_is_down_and_comes_back(
    make_client: Any, own_redis: RedisServer, prefix: str
) -> None:
    store = store_on(own_redis.url, prefix, timeout=0.2, on_unavailable="raise")
    with fake_server("openai") as fake:
        client = make_client(
            **fake.client_options,
            rate_limit=RateLimit(requests_per_minute=6000, store=store),
            circuit_breaker=CircuitBreaker(store=store),
            real_time=True,
        )
        client.generate("before")
        own_redis.stop()
        for _ in range(3):
            with pytest.raises(StoreUnavailableError) as caught:
                client.generate("during")
            assert caught.value.generation_id is not None or caught.value.held_back
        assert len(fake.requests) == 1  # nothing was sent
        own_redis.start()
        time.sleep(1.1)
        client.generate("after")
        assert len(fake.requests) == 2
    close_on(client, store)


def test_a_breaker_through_redis_opens_for_every_client(
    make_client: Any, redis_url: str, prefix: str
) -> None:
    stores = [store_on(redis_url, prefix), store_on(redis_url, prefix)]
    with fake_server("gemini", default=server_error()) as fake:
        clients = [
            make_client(
                **fake.client_options,
                max_retries=0,
                circuit_breaker=CircuitBreaker(failure_threshold=2, reset_timeout=30, store=s),
                real_time=True,
            )
            for s in stores
        ]
        for _ in range(2):
            with pytest.raises(aigen.ServerError):
                clients[0].generate("a fox")
        fake.default = success()
        with pytest.raises(aigen.CircuitOpenError):
            clients[1].generate("a fox")  # the other "process" is stopped too
        assert len(fake.requests) == 2
    close_on(clients[0], *stores)


# -- a slow Redis: the store's own timeout, the event loop never blocked -------------------


@pytest.fixture
def slow_redis(redis_url: str) -> Iterator[SlowProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = SlowProxy(port, delay=1.0)
    yield proxy
    proxy.close()


async def _ticking(call: Any) -> tuple[Any, float]:
    """Await `call` while a ticker task sleeps 10 ms at a time; the longest gap seen."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        result: Any = await call
    except Exception as error:  # returned, for the test to look at
        result = error
    finally:
        done.set()
        await task
    return result, max(gaps, default=0.0)


@pytest.mark.parametrize("on_unavailable", ["local", "raise"])
def test_a_slow_redis_holds_no_call_past_its_deadline_nor_blocks_the_loop(
    make_client: Any,
    client_kind: str,
    slow_redis: SlowProxy,
    prefix: str,
    on_unavailable: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aigen")
    store = RedisStore.from_url(
        slow_redis.url,
        prefix=prefix,
        timeout=0.1,
        on_unavailable=on_unavailable,  # type: ignore[arg-type]
    )
    with fake_server("gemini") as fake:
        client = make_client(
            **fake.client_options,
            retry=aigen.RetryPolicy(deadline=1.0),
            rate_limit=RateLimit(requests_per_minute=600, store=store),
            circuit_breaker=CircuitBreaker(store=store),
            real_time=True,
        )
        started = time.monotonic()
        if client_kind == "async":
            result, gap = client._run(_ticking(client.target.generate("a fox")))
            assert gap < 0.1, f"the event loop stalled {gap * 1000:.0f} ms"
        else:
            try:
                result = client.generate("a fox")
            except StoreUnavailableError as error:
                result = error
        took = time.monotonic() - started
        assert took < 1.0, f"the call took {took:.2f} s, past its 1 s deadline"
        if on_unavailable == "local":
            assert isinstance(result, aigen.GenerationResponse)
            assert len(fake.requests) == 1
            assert "TimeoutError" in caplog.text  # Redis was asked, and too slow
        else:
            assert isinstance(result, StoreUnavailableError)
            assert fake.requests == []  # nothing was sent
    close_on(client, store)


# -- construction: the clients it takes, the settings it refuses, the default key ----------


def test_a_sync_client_alone_serves_async_calls_off_the_loop(redis_url: str, prefix: str) -> None:
    own = redis.Redis.from_url(redis_url)
    store = RedisStore(own, prefix=prefix, time_source="caller", timeout=2.0)

    async def twice() -> list[float]:
        return [await store.areserve("k", 0.0, 1, 60) for _ in range(2)]

    assert asyncio.run(twice()) == [0.0, 1.0]
    store.close()  # the client is the caller's: still open
    assert own.ping()
    own.close()


def test_an_async_client_of_ones_own_serves_async_calls(redis_url: str, prefix: str) -> None:
    import redis.asyncio as redis_async

    async def main() -> list[float]:
        own = redis_async.Redis.from_url(redis_url)
        store = RedisStore(async_client=own, prefix=prefix, time_source="caller")
        waits = [await store.areserve("k", 0.0, 1, 60) for _ in range(2)]
        verdict = await store.aadmit("c", 0.0, 10.0)
        assert verdict.decision == "go"
        await store.aclose()  # aigen made no client: nothing to close
        assert await own.ping()
        await own.aclose()
        return waits

    assert asyncio.run(main()) == [0.0, 1.0]


@pytest.mark.parametrize(
    "keywords",
    [{"on_unavailable": "ignore"}, {"time_source": "local"}],
)
def test_bad_settings_are_refused_at_construction(redis_url: str, keywords: Any) -> None:
    with pytest.raises(aigen.ConfigurationError):
        RedisStore.from_url(redis_url, **keywords)


def test_a_store_needs_a_client() -> None:
    with pytest.raises(aigen.ConfigurationError):
        RedisStore()


def test_a_url_that_is_no_redis_url_is_refused_without_its_password() -> None:
    with pytest.raises(aigen.ConfigurationError) as caught:
        RedisStore.from_url("http://user:hunter2@example.com/")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://u:pw@host:6380/2?x=pw", "redis://host:6380/2"),
        ("rediss://:pw@cache.example.com/0", "rediss://cache.example.com/0"),
        ("unix://:pw@/run/redis.sock?db=1", "unix:///run/redis.sock"),
    ],
)
def test_a_location_is_shown_without_credentials(url: str, shown: str) -> None:
    from aigen._redis_runner import safe_location

    assert safe_location(url) == shown


def test_a_unix_socket_url_works(tmp_path: Any, prefix: str) -> None:
    server = RedisServer()
    socket_path = tmp_path / "redis.sock"
    server.extra = ["--unixsocket", str(socket_path)]
    server.start()
    try:
        store = RedisStore.from_url(f"unix://{socket_path}", prefix=prefix, timeout=2.0)
        assert store.reserve("k", 0.0, 1, 60) == 0
        assert "redis.sock" in repr(store)
        store.close()
    finally:
        server.stop()


def test_the_key_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="key"):
        RateLimit(requests_per_minute=60, key="")
    with pytest.raises(ValueError, match="key"):
        CircuitBreaker(key="")


def test_the_default_key_names_provider_model_and_a_hash_of_the_key() -> None:
    def keys(**keywords: Any) -> tuple[str, str]:
        with aigen.Client(
            provider="gemini",
            rate_limit=RateLimit(requests_per_minute=60),
            circuit_breaker=CircuitBreaker(),
            **{"api_key": API_KEY, **keywords},
        ) as client:
            engine = client._engine
            assert engine.limiter is not None
            assert engine.breaker is not None
            return engine.limiter.key, engine.breaker.key

    limiter_key, breaker_key = keys()
    assert limiter_key == breaker_key
    assert limiter_key.startswith("gemini:gemini-2.5-flash-image:key-")
    assert API_KEY not in limiter_key
    assert API_KEY[:8] not in limiter_key
    assert keys() == (limiter_key, breaker_key)  # the same in every process
    assert keys(api_key="another-key")[0] != limiter_key
    assert keys(model="gemini-3-pro-image-preview")[0] != limiter_key


def test_under_raise_only_the_steps_before_sending_raise(own_redis: RedisServer) -> None:
    store = store_on(own_redis.url, "gate", timeout=0.2, on_unavailable="raise")
    own_redis.stop()
    with pytest.raises(StoreUnavailableError):
        store.reserve("k", 0.0, 1, 60)
    with pytest.raises(StoreUnavailableError):
        store.admit("k", 0.0, 10.0)
    # After an answer, or giving back: never an error that would lose a paid image or hide
    # a cancellation.
    store.refund("k", 0.0, 60)
    store.hold_until("k", time.time() + 1, 60)
    assert store.change_rate("k", RateChange(factor=0.5), 60) == 30
    store.record("k", 0.0, "success", True, 3)

    async def the_same() -> None:
        with pytest.raises(StoreUnavailableError):
            await store.areserve("k", 0.0, 1, 60)
        with pytest.raises(StoreUnavailableError):
            await store.aadmit("k", 0.0, 10.0)
        await store.arefund("k", 0.0, 60)
        await store.arecord("k", 0.0, "failure", False, 3)
        await store.aclose()

    asyncio.run(the_same())
    store.close()
