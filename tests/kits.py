"""Each provider's answers to the same situations, so one behavioural test runs on all.

A kit knows how its provider says "here is your image", "overloaded", "slow down, wait
N seconds", "out of quota", "refused on safety grounds" and so on, as respx responses.
Tests written against a kit never mention a provider.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import httpx
import pytest
import respx

from aigen import AsyncClient
from aigen.testing import MalformedKind

from . import gemini_bodies as gb
from .images import png


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class GeminiKit:
    name = "gemini"
    base_url = "https://generativelanguage.googleapis.com"
    blocked_reason = "PROHIBITED_CONTENT"
    output_blocked_reason = "IMAGE_SAFETY"
    # Gemini's image filter names no category; its prompt filter rates each one.
    blocked_categories: ClassVar[dict[str, list[str]]] = {
        "prompt": ["HARM_CATEGORY_DANGEROUS_CONTENT"],
        "output": [],
    }

    def route(self, router: respx.Router) -> respx.Route:
        return router.post(url__regex=r"/v1beta/models/[^/]+:generateContent$")

    def success(self, image: bytes | None = None, request_id: str = "resp-1") -> httpx.Response:
        return httpx.Response(
            200, json=gb.image_answer(image or png(64, 32), response_id=request_id)
        )

    def success_body(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=body)

    def image_payload(self, raw_base64: str) -> httpx.Response:
        body = gb.image_answer()
        body["candidates"][0]["content"]["parts"][1]["inlineData"]["data"] = raw_base64
        return httpx.Response(200, json=body)

    def server_error(
        self, status: int = 503, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.Response(
            status,
            json=gb.error(status, "UNAVAILABLE", "The model is overloaded."),
            headers=headers,
        )

    def rate_limited(
        self, hint: float | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """429 with the provider's own body hint (Gemini: RetryInfo), if any."""
        delay = None if hint is None else f"{hint}s"
        return httpx.Response(429, json=gb.rate_limited(delay), headers=headers)

    def quota_exhausted(self) -> httpx.Response:
        body = gb.rate_limited("30s", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier")
        return httpx.Response(429, json=body)

    def prompt_blocked(self) -> httpx.Response:
        return httpx.Response(200, json=gb.prompt_blocked(self.blocked_reason))

    def output_blocked(self) -> httpx.Response:
        return httpx.Response(200, json=gb.output_blocked(self.output_blocked_reason))

    def bad_key(self) -> httpx.Response:
        return httpx.Response(400, json=gb.key_invalid())

    def unauthenticated(self) -> httpx.Response:
        """401: credentials the server does not accept at all."""
        return httpx.Response(
            401,
            json=gb.error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            ),
        )

    def forbidden(self) -> httpx.Response:
        """403: a known caller that may not use this model or method."""
        return httpx.Response(
            403,
            json=gb.error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            ),
        )

    def no_image(self) -> httpx.Response:
        """A 200 in which the model said something but drew nothing."""
        return httpx.Response(200, json=gb.text_only())

    def not_found(self) -> httpx.Response:
        return httpx.Response(404, json=gb.error(404, "NOT_FOUND", "models/x is not found"))

    def bad_request(self) -> httpx.Response:
        return httpx.Response(
            400, json=gb.error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        )


class OpenAIKit:
    name = "openai"
    base_url = "https://api.openai.com"
    blocked_reason = "moderation_blocked"
    output_blocked_reason = "moderation_blocked"
    blocked_categories: ClassVar[dict[str, list[str]]] = {
        "prompt": ["violence"],
        "output": ["sexual"],
    }

    def route(self, router: respx.Router) -> respx.Route:
        return router.post(url__regex=r"/v1/images/(generations|edits)$")

    def success(self, image: bytes | None = None, request_id: str = "req_1") -> httpx.Response:
        body = {
            "created": 1767225600,
            "data": [{"b64_json": b64(image or png(64, 32))}],
            "output_format": "png",
            "usage": {"input_tokens": 12, "output_tokens": 1290, "total_tokens": 1302},
        }
        return httpx.Response(200, json=body, headers={"x-request-id": request_id})

    def image_payload(self, raw_base64: str) -> httpx.Response:
        return httpx.Response(200, json={"created": 1, "data": [{"b64_json": raw_base64}]})

    def _error(
        self,
        status: int,
        message: str,
        code: str | None,
        kind: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        error = {"message": message, "type": kind, "param": None, "code": code, **extra}
        return httpx.Response(
            status, json={"error": error}, headers={"x-request-id": "req_err", **(headers or {})}
        )

    def server_error(
        self, status: int = 503, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self._error(
            status,
            "The engine is currently overloaded, please try again later.",
            None,
            "server_error",
            headers,
        )

    def rate_limited(
        self, hint: float | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """429 with the provider's own hint (OpenAI: the retry-after-ms header), if any."""
        all_headers = dict(headers or {})
        if hint is not None:
            all_headers["retry-after-ms"] = str(int(hint * 1000))
        return self._error(
            429,
            "Rate limit reached for images per min (IPM).",
            "rate_limit_exceeded",
            "requests",
            all_headers,
        )

    def quota_exhausted(self) -> httpx.Response:
        return self._error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
            {"retry-after": "30"},
        )

    def prompt_blocked(self) -> httpx.Response:
        return self._error(
            400,
            "Your request was rejected by the safety system. safety_violations=[violence].",
            "moderation_blocked",
            "image_generation_user_error",
            moderation_details={"moderation_stage": "input", "categories": ["violence"]},
        )

    def output_blocked(self) -> httpx.Response:
        return self._error(
            400,
            "Your request was rejected by the safety system. safety_violations=[sexual].",
            "moderation_blocked",
            "image_generation_user_error",
            moderation_details={"moderation_stage": "output", "categories": ["sexual"]},
        )

    def bad_key(self) -> httpx.Response:
        return self._error(
            401,
            "Incorrect API key provided: sk-abc***wxyz.",
            "invalid_api_key",
            "invalid_request_error",
        )

    def unauthenticated(self) -> httpx.Response:
        """401: credentials the server does not accept at all."""
        return self._error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            None,
            "invalid_request_error",
        )

    def forbidden(self) -> httpx.Response:
        """403: a known caller that may not use this model or method."""
        return self._error(
            403,
            "Your organization must be verified to use the model `gpt-image-1`. Please go to: "
            "https://platform.openai.com/settings/organization/general and click on Verify "
            "Organization.",
            None,
            "invalid_request_error",
        )

    def no_image(self) -> httpx.Response:
        """OpenAI has no such answer: skip the test that asks for one."""
        pytest.skip(
            "the OpenAI Images API never answers with text instead of an image; a 200 "
            "without image data is a malformed answer (see test_openai_wire.py)"
        )

    def not_found(self) -> httpx.Response:
        return self._error(
            404,
            "The model `gpt-image-9` does not exist.",
            "model_not_found",
            "invalid_request_error",
        )

    def bad_request(self) -> httpx.Response:
        return self._error(400, "Invalid value: 'ultra'.", "invalid_value", "invalid_request_error")


# The malformed answers each fake can give (each provider has its own way to say "empty").
MALFORMED_KINDS: dict[str, tuple[MalformedKind, ...]] = {
    "gemini": (
        "not_json",
        "truncated_json",
        "html_200",
        "bad_base64",
        "not_an_image",
        "no_candidates",
    ),
    "openai": (
        "not_json",
        "truncated_json",
        "html_200",
        "bad_base64",
        "not_an_image",
        "empty_data",
    ),
}


Kit = GeminiKit | OpenAIKit
KITS: dict[str, Kit] = {"gemini": GeminiKit(), "openai": OpenAIKit()}


# -- helpers for the protection tests (rate limit, circuit breaker, concurrency) ------------


def with_headers(response: httpx.Response, headers: dict[str, str]) -> httpx.Response:
    """A copy of a kit's `response` with `headers` added (OpenAI's `x-ratelimit-*`, say)."""
    return httpx.Response(
        response.status_code, content=response.content, headers={**response.headers, **headers}
    )


def run_concurrently(made: Any, calls: Sequence[Callable[[Any], Any]]) -> list[Any]:
    """Run `call(client)` for every call at once; each result, or the exception it raised.

    `made` is a `make_client` facade. A `Client` runs each call on its own thread, all
    released together by a barrier; an `AsyncClient` runs them as tasks gathered on the
    facade's event loop (each `call` then returns a coroutine).
    """
    client = made.target
    if not isinstance(client, AsyncClient):
        barrier = threading.Barrier(len(calls))

        def run(call: Callable[[Any], Any]) -> Any:
            barrier.wait(timeout=5.0)
            try:
                return call(client)
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(run, calls))

    async def run_async(call: Callable[[Any], Any]) -> Any:
        try:
            return await call(client)
        except Exception as exc:
            return exc

    async def run_all() -> list[Any]:
        return list(await asyncio.gather(*(run_async(call) for call in calls)))

    return run_on_loop(made, run_all())


def run_on_loop(made: Any, coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run `coroutine` to completion on the event loop of a `make_client` facade."""
    return made._run(coroutine)


class Hold:
    """Holds requests sent through its transports until `release()` (or `limit` seconds).

    A call whose request is held is "in flight" for exactly as long as a test needs,
    without guessing how long that is. Only requests sent while the hold is engaged
    (`engaged=`, `engage()`) are held; `held` counts them. A hold never released lets its
    requests through after `limit` seconds, so a test that went wrong fails on its
    assertions instead of hanging. `client(...)` makes a `make_client` facade whose
    requests go through the hold; `close()` closes the httpx clients it made.
    """

    def __init__(self, *, engaged: bool = True, limit: float = 3.0) -> None:
        self.limit = limit
        self.engaged = engaged
        self.held = 0
        self._released = threading.Event()
        self._arrived = threading.Condition()
        self._cleanups: list[Callable[[], object]] = []

    def engage(self) -> None:
        self.engaged = True

    def release(self) -> None:
        self._released.set()

    def wait_held(self, count: int = 1, timeout: float = 3.0) -> bool:
        """Block until `count` requests reached the hold; whether they did in time."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.held >= count, timeout)

    async def await_held(self, count: int = 1, timeout: float = 3.0) -> bool:
        """`wait_held` for a coroutine: the event loop keeps running meanwhile."""
        return await asyncio.to_thread(self.wait_held, count, timeout)

    def arrive(self) -> bool:
        """Count a request that reached the hold; whether it is to be held."""
        if not self.engaged:
            return False
        with self._arrived:
            self.held += 1
            self._arrived.notify_all()
        return True

    def wait_released(self) -> None:
        self._released.wait(self.limit)

    def client(self, make_client: Callable[..., Any], client_kind: str, **kwargs: Any) -> Any:
        """`make_client(**kwargs)` with an `http_client` whose requests pass this hold."""
        if client_kind == "sync":
            http = httpx.Client(transport=_HeldTransport(self, httpx.HTTPTransport()))
            made = make_client(http_client=http, **kwargs)
            self._cleanups.append(http.close)
        else:
            async_http = httpx.AsyncClient(
                transport=_AsyncHeldTransport(self, httpx.AsyncHTTPTransport())
            )
            made = make_client(http_client=async_http, **kwargs)
            self._cleanups.append(lambda: run_on_loop(made, async_http.aclose()))
        return made

    def close(self) -> None:
        """Let every held request go, and close the httpx clients `client()` made."""
        self.release()
        for cleanup in self._cleanups:
            cleanup()


class _HeldTransport(httpx.BaseTransport):
    def __init__(self, hold: Hold, inner: httpx.BaseTransport) -> None:
        self._hold = hold
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._hold.arrive():
            self._hold.wait_released()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class _AsyncHeldTransport(httpx.AsyncBaseTransport):
    def __init__(self, hold: Hold, inner: httpx.AsyncBaseTransport) -> None:
        self._hold = hold
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._hold.arrive():
            await asyncio.to_thread(self._hold.wait_released)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
