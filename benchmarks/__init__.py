"""aigen's performance harness: one fake server, each client in fresh processes, medians.

Run `python -m benchmarks` from the repository root (docs/performance.md has the method
and this machine's numbers). The modules:

- `payloads`: random-pixel PNGs made with zlib, and Gemini- and OpenAI-shaped answers.
- `server`: a raw asyncio HTTP/1.1 server answering precomputed bytes, with optional delay.
- `clients`: raw httpx, aigen, aigen-core (aigen without pybase64), google-genai and openai,
  each behind the same two calls.
- `worker`: what runs in each fresh process: per-call timings, calls in flight, peak RSS.
- `run`: the orchestrator: rounds, interleaving, medians, the table and the JSON.
- `redis_share`: `python -m benchmarks.redis_share`, one quota shared by N processes
  through Redis, and the shared store's cost per call.
"""
