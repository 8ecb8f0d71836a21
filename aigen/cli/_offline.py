"""`aigen serve-fake` and `aigen demo`: aigen at work with no key and no network.

Both run the fake servers of `aigen.testing` on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .._retry import RetryPolicy
from .._sync_client import Client
from ._report import Reporter

if TYPE_CHECKING:
    from ..testing import Outcome

__all__ = ["SCRIPT_TOKENS", "check_script", "demo", "parse_script", "serve_fake"]

DEMO_KEY = "demo-key-not-a-secret"
DEMO_PROMPT = "A cute cartoon banana mascot waving, with bold text 'EPIC WIN'"
DEMO_REFINEMENT = "Make the text bigger and add more glow"


SCRIPT_TOKENS = (
    "ok, 503 (any 5xx), 429, 429:SECONDS, blocked, blocked-output, text, malformed, drop, "
    "slow:SECONDS"
)


def check_script(text: str) -> str:
    """argparse `type=` for `--script`: refuse a typo as a usage error, before serving."""
    try:
        parse_script(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def parse_script(text: str) -> list[Outcome]:
    """Outcomes from `--script`, e.g. `"429:2,503,ok"`; raises `ValueError` on a typo."""
    from .. import testing

    outcomes: list[Outcome] = []
    for raw in filter(None, (token.strip().lower() for token in text.split(","))):
        name, _, argument = raw.partition(":")
        if name == "ok":
            outcomes.append(testing.success())
        elif name == "429":
            outcomes.append(testing.rate_limited(_seconds(argument) if argument else None))
        elif name.isdigit() and 500 <= int(name) < 600:
            outcomes.append(testing.server_error(int(name)))
        elif name == "blocked":
            outcomes.append(testing.content_blocked("prompt"))
        elif name == "blocked-output":
            outcomes.append(testing.content_blocked("output"))
        elif name == "text":
            outcomes.append(testing.text_only("I would rather describe it in words."))
        elif name == "malformed":
            outcomes.append(testing.malformed("not_json"))
        elif name == "drop":
            outcomes.append(testing.drop())
        elif name == "slow" and argument:
            outcomes.append(testing.success(delay=_seconds(argument)))
        else:
            raise ValueError(f"unknown outcome {raw!r} in --script: use {SCRIPT_TOKENS}")
    return outcomes


def serve_fake(args: argparse.Namespace, reporter: Reporter) -> None:
    """Serve a fake API until interrupted, printing how to point a client at it."""
    from .. import testing

    outcomes = parse_script(args.script)
    server = testing.fake_server(args.provider, port=args.port)
    with server:
        server.script(*outcomes)
        key_variable = "OPENAI_API_KEY" if args.provider == "openai" else "GEMINI_API_KEY"
        if reporter.mode == "json":
            reporter.emit_json({"provider": args.provider, "base_url": server.base_url})
        elif reporter.mode == "human":
            reporter.out.write(
                f"fake {args.provider} API on {server.base_url} (Ctrl-C to stop)\n"
                f"  export AIGEN_BASE_URL={server.base_url} {key_variable}=any-key\n"
            )
        reporter.out.flush()
        threading.Event().wait()  # until Ctrl-C


def demo(args: argparse.Namespace, reporter: Reporter) -> None:
    """Generate, meet a 429 and a 503 on the way, refine, and say what happened."""
    from .. import testing

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    say = reporter.out.write if reporter.mode == "human" else _silent
    with testing.FakeGemini() as server:
        # The first call meets a rate limit with a 1 s hint, then an overloaded model.
        server.script(
            testing.rate_limited(
                1.0,
                style="retry_after",
                # A per-minute limit, which waiting fixes: not the "check your billing" one.
                message="Too many requests: the rate limit for this model was reached.",
            ),
            testing.overloaded(),
            testing.success(),
            testing.success(),
        )
        say(f"A fake Gemini API is listening on {server.base_url}: no key, no network.\n\n")
        policy = RetryPolicy(initial_delay=0.5)
        # Named in full, so the user's own AIGEN_PROVIDER or OPENAI_API_KEY cannot redirect it.
        with Client(
            provider="gemini",
            api_key=DEMO_KEY,
            base_url=server.base_url,
            retry=policy,
            hooks=reporter.watcher.hooks,
        ) as client:
            chat = client.conversation(width=1280, height=720)
            say(f"1. generate: {DEMO_PROMPT!r}\n")
            with reporter.watching("generating"):
                first = chat.send(DEMO_PROMPT)
            first.save(out_dir / "demo-1.png")
            if reporter.mode == "human":
                reporter.saved(out_dir / "demo-1.png", first)
            say(f"\n2. refine: {DEMO_REFINEMENT!r}\n")
            with reporter.watching("refining"):
                second = chat.send(DEMO_REFINEMENT)
            second.save(out_dir / "demo-2.png")
            if reporter.mode == "human":
                reporter.saved(out_dir / "demo-2.png", second)
        refinement = server.requests[-1]
        say(
            f"\nThe refinement sent the whole conversation back ({len(chat.history) - 2} "
            "earlier turns, the first image with its thought signature), as Gemini requires.\n"
            "Next: export GEMINI_API_KEY=... and run\n"
            f"  aigen generate {DEMO_PROMPT!r} -o banana.png --size 1280x720\n"
        )
        if reporter.mode == "json":
            reporter.emit_json(
                {
                    "server": server.base_url,
                    "images": [
                        reporter.summary(out_dir / "demo-1.png", first),
                        reporter.summary(out_dir / "demo-2.png", second),
                    ],
                    "refinement_request_path": refinement.path,
                }
            )


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds < 3600:
        raise ValueError(f"{text!r} seconds is out of range (0 to 3600)")
    return seconds


def _silent(text: str) -> int:
    return 0
