"""The answers the fake server sends: random-pixel PNGs inside Gemini- and OpenAI-shaped JSON.

Random pixels do not compress, so a PNG of `side` x `side` RGB pixels is about
`3 * side**2` bytes: 707 px gives ~1.5 MB and 1414 px ~6 MB. The pixels come from a
seeded generator, so every run serves the same bytes. The JSON is indented as the real
APIs send it (WIRE.md A.3 and D.4), so whitespace around the base64 is what a client meets.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import zlib

__all__ = [
    "PROVIDERS",
    "SIZES",
    "answer_body",
    "http_answer",
    "random_png",
    "sides",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROVIDERS = ("gemini", "openai")
SIZES = ("tiny", "medium", "large")

# Side in pixels per size: the full run's targets name ~1.5 MB and ~6 MB images; the
# quick mode (CI) only proves the harness runs, so it keeps the transfers small.
_FULL_SIDES = {"tiny": 16, "medium": 707, "large": 1414}
_QUICK_SIDES = {"tiny": 16, "medium": 148, "large": 296}


def sides(*, quick: bool) -> dict[str, int]:
    """Image side in pixels for each size name."""
    return dict(_QUICK_SIDES if quick else _FULL_SIDES)


def random_png(side: int, seed: int) -> bytes:
    """A valid `side` x `side` 8-bit RGB PNG of random pixels (stdlib only)."""
    rng = random.Random(seed)
    row = 3 * side
    pixels = rng.randbytes(row * side)
    raw = b"".join(b"\x00" + pixels[y * row : (y + 1) * row] for y in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 1))
        + chunk(b"IEND", b"")
    )


def answer_body(provider: str, png: bytes) -> bytes:
    """A successful answer of `provider` carrying `png`, as the API serialises it."""
    data = base64.b64encode(png).decode("ascii")
    body: dict[str, object]
    if provider == "gemini":
        body = {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Here is a small red boat on a lake."},
                            {
                                "inlineData": {"mimeType": "image/png", "data": data},
                                "thoughtSignature": base64.b64encode(b"bench-signature").decode(),
                            },
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 13,
                "candidatesTokenCount": 1290,
                "totalTokenCount": 1303,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 13}],
                "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            },
            "modelVersion": "gemini-2.5-flash-image",
            "responseId": "bench-r3kZaOjAHq2vxN8Pq7mT2Ac",
        }
    elif provider == "openai":
        body = {
            "created": 1767225600,
            "data": [{"b64_json": data}],
            "background": "opaque",
            "output_format": "png",
            "quality": "high",
            "size": "1024x1024",
            "usage": {
                "input_tokens": 13,
                "input_tokens_details": {"text_tokens": 13, "image_tokens": 0},
                "output_tokens": 4160,
                "total_tokens": 4173,
            },
        }
    else:
        raise ValueError(f"unknown provider {provider!r}")
    return json.dumps(body, indent=2).encode()


def http_answer(provider: str, body: bytes) -> bytes:
    """The whole HTTP/1.1 response (status line, headers, body) as one bytes object."""
    headers = [
        b"HTTP/1.1 200 OK",
        b"Content-Type: application/json; charset=UTF-8",
        b"Content-Length: " + str(len(body)).encode(),
    ]
    if provider == "openai":
        headers += [
            b"x-request-id: req_0123456789abcdef0123456789abcdef",
            b"openai-version: 2020-10-01",
        ]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body
