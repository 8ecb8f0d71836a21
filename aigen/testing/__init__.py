"""Fake Gemini and OpenAI servers for testing code that uses aigen, offline.

A fake speaks the provider's real wire format on `127.0.0.1` (a real HTTP server in a
background thread), records every request, and plays scripted outcomes, one per request,
falling back to `default` (a success) when the script is empty::

    from aigen import Client, RateLimitError
    from aigen.testing import FakeGemini, rate_limited, success

    with FakeGemini() as fake:
        fake.script(rate_limited(30), success())
        with Client(**fake.client_options, max_retries=0) as client:
            try:
                client.generate("a fox")
            except RateLimitError as error:
                assert error.retry_after == 30
            image = client.generate("a fox")  # a real PNG with "a fox" written on it
        assert len(fake.requests) == 2

Outcomes (each provider says them its own way): `success()`, `stall()`, `overloaded()`,
`server_error()`, `rate_limited()`, `quota_exhausted()`, `content_blocked()`,
`text_only()`, `malformed()`, `bad_request()`, `not_found()`, `bad_key()`, `drop()`,
transport faults: `reset()`, `endless_body()`, `gzip_bomb()`, `oversized()`, and raw
answers: `error()`, `gemini_error()`, `openai_error()`, `Reply(...)`.

`FakeClock` and `use_clock(client, clock)` put a client on a clock that only moves when
it sleeps, so waits and deadlines are tested without waiting. Also here:
`aigen.testing.pytest_plugin` (opt-in fixtures `fake_gemini`, `fake_openai`,
`aigen_client`) and `aigen.testing.respx` (the same fakes without a socket). See
docs/testing.md.
"""

from ._clock import FakeClock, use_clock
from ._faults import ENDLESS_LIMIT, GZIP_BOMB_SIZE, endless_body, gzip_bomb, oversized, reset
from ._gemini import gemini_error
from ._openai import OPENAI_RATE_LIMIT_HEADERS, openai_error, openai_error_body
from ._outcomes import (
    Drop,
    MalformedKind,
    Outcome,
    Reply,
    RetryHintStyle,
    Situation,
    bad_key,
    bad_request,
    content_blocked,
    drop,
    error,
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
from ._recording import FilePart, RecordedRequest
from ._render import render_image
from ._script import TEST_API_KEY, ClientOptions, ScriptedAPI
from ._server import FakeGemini, FakeOpenAI, FakeServer, fake_server

__all__ = [
    "ENDLESS_LIMIT",
    "GZIP_BOMB_SIZE",
    "OPENAI_RATE_LIMIT_HEADERS",
    "TEST_API_KEY",
    "ClientOptions",
    "Drop",
    "FakeClock",
    "FakeGemini",
    "FakeOpenAI",
    "FakeServer",
    "FilePart",
    "MalformedKind",
    "Outcome",
    "RecordedRequest",
    "Reply",
    "RetryHintStyle",
    "ScriptedAPI",
    "Situation",
    "bad_key",
    "bad_request",
    "content_blocked",
    "drop",
    "endless_body",
    "error",
    "fake_server",
    "gemini_error",
    "gzip_bomb",
    "malformed",
    "not_found",
    "openai_error",
    "openai_error_body",
    "overloaded",
    "oversized",
    "quota_exhausted",
    "rate_limited",
    "render_image",
    "reset",
    "server_error",
    "stall",
    "success",
    "text_only",
    "use_clock",
]
