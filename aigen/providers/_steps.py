"""The steps of a multi-step or streamed exchange, for providers that need more than one.

Most providers answer a generation with one HTTP exchange: they give `build_request` and
`parse_response`, and aigen does the rest. A provider whose service works otherwise (a
queue: submit, poll a status URL, download the result; or a stream of server-sent
events) also defines `exchange(request, context)`, a generator that yields these steps
and returns the `ProviderAnswer`::

    def exchange(self, request, context):
        job = yield Exchange(submit_request)                 # a 2xx HttpResponse back
        while not done(job):
            yield Wait(poll_interval)
            job = yield Exchange(poll_request, paid=False)   # a poll is not a new request
        image = yield Exchange(download_request, paid=False)
        return ProviderAnswer(image_data=image.content)

aigen carries out each `Exchange` with the call's retries, deadline and body limits (a
paid one also through the rate limiter), and throws the call's error into the generator
when it fails for good. `Stream` opens an exchange whose body is read with `NextChunk`,
as the bytes arrive; `Progress` hands an event to a streaming caller. None of it sends,
sleeps or reads a clock.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .._http import HttpRequest

__all__ = ["Exchange", "NextChunk", "Progress", "ProviderStep", "Stream", "Wait"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """Send `request` and get its 2xx `HttpResponse` back, body read to the end.

    `paid`: whether the request costs quota (it then waits for the rate limiter and is
    counted in the response's `attempts`); polls and downloads are not.
    """

    request: HttpRequest
    paid: bool = True


@dataclass(frozen=True, slots=True)
class Stream:
    """Send `request` and get its 2xx `StreamHead` back; read the body with `NextChunk`."""

    request: HttpRequest
    paid: bool = True


@dataclass(frozen=True, slots=True)
class NextChunk:
    """The open stream's next bytes (b"" at its end), within `max_response_bytes`."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait `seconds` before the next step (a poll interval)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Progress:
    """Hand `event` to a streaming caller (a partial image, a progress report)."""

    event: object


ProviderStep = Exchange | Stream | NextChunk | Wait | Progress
ProviderFlow = Generator[ProviderStep, Any, Any]
