"""Defaults and fixed numbers, each with the reason it has the value it has."""

from __future__ import annotations

# Image models take seconds to a minute; two minutes per attempt leaves room for the
# slowest 4K renders without holding a dead connection forever.
DEFAULT_TIMEOUT = 120.0

# A 4K PNG in base64 is ~40 MB; 64 MiB admits it and stops a runaway or endless body
# (or a gzip bomb, counted after decompression) before it takes the process down.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024

# Two retries (three attempts) ride out a typical 503 burst without tripling quota use.
DEFAULT_MAX_RETRIES = 2
# 1 s, 2 s, 4 s: the seed design's schedule, which users tuned their timeouts to.
DEFAULT_INITIAL_DELAY = 1.0
# Past 30 s a backoff wait is better spent failing and letting the caller decide.
DEFAULT_MAX_DELAY = 30.0
# A server asking for more than a minute is telling a web request to give up now.
DEFAULT_MAX_RETRY_AFTER = 60.0
# The longest wait an error reports in `retry_after`: a proxy's `Retry-After: 1e35` must
# not end up in an app's own Retry-After header. A day still says "not today" truthfully.
MAX_REPORTED_RETRY_AFTER = 86400.0
# Up to 25% added to each backoff wait, so clients that failed together spread out,
# while the documented 1 s, 2 s, 4 s stay the minimum.
JITTER_FRACTION = 0.25

# 408 and 429 pass with time; 500, 502, 503 and 504 are the provider's own trouble.
# 501 and 505 are answers that will not change, so they are not retried.
RETRYABLE_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})

# generate_many's default: enough to overlap slow image calls, few enough that a batch
# started from a web process does not swamp the provider's per-minute quota at once.
DEFAULT_BATCH_CONCURRENCY = 8

# Which environment variables configure what.
ENV_PROVIDER = "AIGEN_PROVIDER"
ENV_BASE_URL = "AIGEN_BASE_URL"
DEFAULT_PROVIDER = "gemini"
