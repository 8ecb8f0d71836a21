"""Gemini's answers as the real API shapes them (WIRE.md A.3, A.4, B), for the fake."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from ._dialect import b64, seconds_text
from ._outcomes import Reply, error

__all__ = [
    "EXHAUSTED",
    "PER_DAY",
    "PER_MINUTE",
    "SERVER_ERRORS",
    "candidate",
    "gemini_error",
    "key_invalid",
    "prompt_blocked",
    "quota_failure",
    "response_id",
    "retry_info",
    "sign",
]

SERVER_ERRORS = {
    500: ("INTERNAL", "An internal error has occurred. Please retry or report it."),
    502: ("UNAVAILABLE", "Bad gateway."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
EXHAUSTED = "You exceeded your current quota, please check your plan and billing details."


def rpc_error(code: int, status: str, message: str, *details: object) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = list(details)
    return {"error": body}


def gemini_error(
    status: int,
    grpc_status: str,
    message: str,
    *details: Mapping[str, object],
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """An error with Gemini's `google.rpc.Status` body (WIRE.md B.1), e.g. with a `RetryInfo`.

    `details` are the `google.rpc` detail objects, each with its `@type`.
    """
    body = rpc_error(status, grpc_status, message, *(dict(d) for d in details))
    return error(status, body, headers=headers, delay=delay)


def quota_failure(quota_id: str, value: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": (
                    "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                ),
                "quotaId": quota_id,
                "quotaValue": value,
            }
        ],
    }


def retry_info(seconds: float) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": f"{seconds_text(seconds)}s",
    }


def key_invalid() -> dict[str, Any]:
    return rpc_error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
        },
    )


def response_id() -> str:
    """An opaque id shaped like Gemini's `responseId` (23 URL-safe characters)."""
    return base64.urlsafe_b64encode(os.urandom(17)).decode().rstrip("=")


def sign(part: dict[str, Any], signature: object) -> None:
    if isinstance(signature, bytes):
        part["thoughtSignature"] = b64(signature)


def candidate(
    parts: list[dict[str, Any]] | None, reason: str, model: str, response_id: str, *, tokens: int
) -> dict[str, Any]:
    content: dict[str, Any] = {} if parts is None else {"role": "model", "parts": parts}
    return {
        "candidates": [{"content": content, "finishReason": reason, "index": 0}],
        "usageMetadata": {
            "promptTokenCount": 12,
            "candidatesTokenCount": tokens,
            "totalTokenCount": 12 + tokens,
        },
        "modelVersion": model,
        "responseId": response_id,
    }


def prompt_blocked(model: str, response_id: str) -> dict[str, Any]:
    return {
        "promptFeedback": {
            "blockReason": "PROHIBITED_CONTENT",
            "safetyRatings": [
                {
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                    "probability": "HIGH",
                    "blocked": True,
                },
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            ],
        },
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": model,
        "responseId": response_id,
    }
