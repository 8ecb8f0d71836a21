"""Soak: thousands of calls at high concurrency against fakes that fail about 40% of the time.

Both clients, against `FakeGemini` and `FakeOpenAI` on 127.0.0.1: `AsyncClient` runs
`ASYNC_CALLS` calls (half through `generate_many` at concurrency 100, half as waves of 100
`generate()` tasks gathered), `Client` runs `SYNC_CALLS` through `generate_many` on 32
threads. Each fake plays a long script drawn from a seeded RNG: successes, 503s, 429s
with tiny hints (every hint style), dropped connections, content blocks at both stages,
400s, exhausted quotas and malformed bodies of every kind. The script is longer than the
most requests the calls could make, so every request plays a drawn outcome.

Every prompt carries its call's number, so each request the fake recorded is matched to
its call, and the audit checks, call by call, that

- every call is accounted for: one result each, a `GenerationResponse` or a
  `GenerationError` (nothing else escapes `generate()` either);
- the call's `attempts` is the number of requests the fake saw from it, so the sum of
  `attempts` is the fake's request count;
- no call went past `max_retries + 1` attempts, every attempt but the last was answered
  with a retryable fault, and a call whose last answer was still a retryable fault used
  all its attempts;
- the result is what the last answer means (a 503 a `ServerError`, a drop an
  `APIConnectionError`, a content block a `ContentPolicyError` of the same stage, ...);
- a content block was seen once and ended its call: nothing was sent after it;
- generation ids are unique.

The run is bounded by count (calls and script length), not by time; tiny backoff
(1-5 ms), tiny hints and a generous deadline keep waits short. On two cores an async run
takes about 11 s (at 100 connections httpcore's pool bookkeeping is most of the CPU) and
a sync run about 1.5 s. `AIGEN_SOAK_SCALE` multiplies the number of calls.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import pytest

import aigen
from aigen import (
    APIConnectionError,
    BadRequestError,
    ContentPolicyError,
    GenerationError,
    GenerationResponse,
    QuotaExceededError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from aigen.testing import (
    Drop,
    FakeGemini,
    FakeOpenAI,
    FakeServer,
    Outcome,
    RecordedRequest,
    RetryHintStyle,
    Situation,
    bad_request,
    content_blocked,
    drop,
    malformed,
    overloaded,
    quota_exhausted,
    rate_limited,
    success,
)

from .images import png
from .kits import MALFORMED_KINDS

SEED = 20_240_611
# AIGEN_SOAK_SCALE=10 runs ten times as many calls (a longer soak, by hand or nightly).
SCALE = float(os.environ.get("AIGEN_SOAK_SCALE", "1"))
ASYNC_CALLS = round(1600 * SCALE)
ASYNC_CONCURRENCY = 100
SYNC_CALLS = round(600 * SCALE)
SYNC_THREADS = 32
MAX_RETRIES = 3
OUTAGE = 2  # the opening outage, in rounds of every in-flight call's attempts
POLICY = RetryPolicy(
    max_retries=MAX_RETRIES,
    initial_delay=0.001,
    max_delay=0.005,
    max_retry_after=1.0,
    deadline=60.0,  # far above what a call takes here: no call may end early
)
TIMEOUT = 20.0  # per attempt; nothing here stalls
IMAGE = png(16, 16)  # successes carry it, so the fakes draw nothing
TOKEN = re.compile(rb"soak-(\d+)-end")
FAKES: dict[str, Callable[..., FakeServer]] = {"gemini": FakeGemini, "openai": FakeOpenAI}
HINT_STYLES: dict[str, tuple[RetryHintStyle, ...]] = {
    "gemini": ("native", "retry_info", "retry_after", "retry_after_ms", "message"),
    "openai": ("native", "retry_after", "retry_after_ms", "message"),
}


def draw_outcome(rng: random.Random, provider: str) -> Outcome:
    """One answer: a success 60% of the time, else one of the faults."""
    roll = rng.random()
    if roll < 0.60:
        return success(IMAGE)
    if roll < 0.70:
        return overloaded()
    if roll < 0.79:
        return rate_limited(rng.choice([0.001, 0.002]), style=rng.choice(HINT_STYLES[provider]))
    if roll < 0.86:
        return drop()
    if roll < 0.91:
        return content_blocked(rng.choice(["prompt", "output"]))
    if roll < 0.94:
        return bad_request()
    if roll < 0.96:
        return quota_exhausted()
    return malformed(rng.choice(MALFORMED_KINDS[provider]))


def draw_retryable_fault(rng: random.Random, provider: str) -> Outcome:
    while not retryable(outcome := draw_outcome(rng, provider)):
        pass
    return outcome


def scripted_fake(provider: str, calls: int, concurrency: int) -> FakeServer:
    """A fake whose script outlasts the most requests `calls` calls can make.

    It opens with an outage of `OUTAGE * concurrency * (MAX_RETRIES + 1)` retryable
    faults. Every call that meets the outage retries until it ends; when the outage is
    over, at most `concurrency` calls are still on their way, each having taken at most
    `MAX_RETRIES` of its faults, so at least `(OUTAGE - 1) * concurrency` calls ran out of
    retries, whatever the order in which requests arrived.
    """
    rng = random.Random(f"{SEED}-{provider}-{calls}")
    attempts = MAX_RETRIES + 1
    fake = FAKES[provider](default=success(IMAGE))
    outage = OUTAGE * concurrency * attempts
    fake.script(*(draw_retryable_fault(rng, provider) for _ in range(outage)))
    fake.script(*(draw_outcome(rng, provider) for _ in range(calls * attempts)))
    return fake


def prompts(calls: int) -> list[str]:
    return [f"A banana mascot, soak-{i}-end" for i in range(calls)]


# -- the audit ---------------------------------------------------------------------------


def retryable(outcome: Outcome | None) -> bool:
    return isinstance(outcome, Drop) or (
        isinstance(outcome, Situation) and outcome.kind in ("overloaded", "rate_limited")
    )


def expected_class(outcome: Outcome | None) -> type[GenerationResponse | GenerationError]:
    """The exact class of the result of a call whose last answer was `outcome`."""
    if isinstance(outcome, Drop):
        return APIConnectionError
    assert isinstance(outcome, Situation), f"unexpected outcome {outcome!r}"
    return {
        "success": GenerationResponse,
        "overloaded": ServerError,
        "rate_limited": RateLimitError,
        "content_blocked": ContentPolicyError,
        "bad_request": BadRequestError,
        "quota_exhausted": QuotaExceededError,
        "malformed": GenerationError,
    }[outcome.kind]


def kind_of(outcome: Outcome | None) -> str:
    return "drop" if isinstance(outcome, Drop) else getattr(outcome, "kind", repr(outcome))


def audit(
    fake: FakeServer,
    results: Sequence[object],
    calls: int,
) -> Counter[str]:
    """Check every call against what the fake saw from it; return the results' classes."""
    assert len(results) == calls
    seen: defaultdict[int, list[RecordedRequest]] = defaultdict(list)
    requests = fake.requests
    for request in requests:
        found = TOKEN.search(request.body)
        assert found is not None, f"a request without a call number: {request!r}"
        seen[int(found[1])].append(request)
    assert set(seen) <= set(range(calls))

    attempts_total = 0
    ids: list[str | None] = []
    classes: Counter[str] = Counter()
    for number, result in enumerate(results):
        assert isinstance(result, (GenerationResponse, GenerationError)), repr(result)
        classes[type(result).__name__] += 1
        ids.append(result.generation_id)
        answers = [request.outcome for request in seen[number]]
        where = f"call {number}: answers {[kind_of(a) for a in answers]}, result {result!r}"
        assert result.attempts == len(answers), where
        assert 1 <= result.attempts <= MAX_RETRIES + 1, where
        attempts_total += result.attempts
        # Only retryable faults are retried: nothing follows a success, a block, a 400, ...
        assert all(retryable(answer) for answer in answers[:-1]), where
        last = answers[-1]
        assert type(result) is expected_class(last), where
        if retryable(last):
            assert result.attempts == MAX_RETRIES + 1, where  # retries ran out, none skipped
        if isinstance(result, ContentPolicyError):
            assert isinstance(last, Situation)
            assert result.stage == last.stage, where
            blocks = [a for a in answers if kind_of(a) == "content_blocked"]
            assert len(blocks) == 1, where  # seen once, never retried
        if isinstance(result, RateLimitError) and not isinstance(result, QuotaExceededError):
            assert result.retry_after is not None, where
            assert result.retry_after <= 0.002, where

    assert attempts_total == len(requests)
    assert None not in ids
    assert len(set(ids)) == len(ids), "generation ids repeat"
    answered = Counter(kind_of(request.outcome) for request in requests)
    # Every content block, 400, exhausted quota and malformed body ended exactly one call.
    assert answered["content_blocked"] == classes["ContentPolicyError"]
    assert answered["bad_request"] == classes["BadRequestError"]
    assert answered["quota_exhausted"] == classes["QuotaExceededError"]
    assert answered["malformed"] == classes["GenerationError"]
    assert answered["success"] == classes["GenerationResponse"]
    return classes


def assert_mixed(classes: Counter[str], calls: int, concurrency: int) -> None:
    """The run was a soak, not a sunny day: faults ended a good share of the calls."""
    assert classes["GenerationResponse"] > calls // 2, classes
    for name in ("ContentPolicyError", "BadRequestError", "GenerationError"):
        assert classes[name] > 0, f"no call ended with {name}: {classes}"
    # The opening outage exhausts the retries of `(OUTAGE - 1) * concurrency` calls at least.
    exhausted = ("ServerError", "RateLimitError", "APIConnectionError")
    assert sum(classes[name] for name in exhausted) >= (OUTAGE - 1) * concurrency, classes


# -- the runs ----------------------------------------------------------------------------

providers = pytest.mark.parametrize("provider", sorted(FAKES))


@providers
def test_async_client_soak(provider: str) -> None:
    calls = ASYNC_CALLS
    batch, waves = prompts(calls)[: calls // 2], prompts(calls)[calls // 2 :]

    async def run(fake: FakeServer) -> list[object]:
        async with aigen.AsyncClient(**fake.client_options, retry=POLICY, timeout=TIMEOUT) as c:
            results: list[object] = list(
                await c.generate_many(batch, concurrency=ASYNC_CONCURRENCY)
            )
            for start in range(0, len(waves), ASYNC_CONCURRENCY):
                wave = waves[start : start + ASYNC_CONCURRENCY]
                results.extend(
                    await asyncio.gather(*(c.generate(p) for p in wave), return_exceptions=True)
                )
            return results

    with scripted_fake(provider, calls, ASYNC_CONCURRENCY) as fake:
        results = asyncio.run(run(fake))
    assert_mixed(audit(fake, results, calls), calls, ASYNC_CONCURRENCY)


@providers
def test_sync_client_soak(provider: str) -> None:
    calls = SYNC_CALLS
    done: list[int] = []
    with (
        scripted_fake(provider, calls, SYNC_THREADS) as fake,
        aigen.Client(**fake.client_options, retry=POLICY, timeout=TIMEOUT) as client,
    ):
        results = client.generate_many(
            prompts(calls), concurrency=SYNC_THREADS, on_progress=lambda n, _: done.append(n)
        )
    assert done == list(range(1, calls + 1))
    assert_mixed(audit(fake, results, calls), calls, SYNC_THREADS)
