"""The `aigen` command: generate and refine images, run a fake server, or see a demo.

```
aigen generate PROMPT -o FILE [--provider --model --size WxH --seed --input IMAGE]
aigen refine CONVERSATION.json PROMPT -o FILE
aigen batch PROMPTS.txt -o DIR [--concurrency N]
aigen serve-fake [--provider gemini|openai] [--port N] [--script OUTCOMES]
aigen demo [--out-dir DIR]
```

Configured by the same environment variables as the clients. Each error class has its
own exit code (see `aigen.cli._exit.EXIT_CODES`), and `--json` / `--quiet` serve scripts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .._version import __version__
from ._exit import INTERRUPTED
from ._report import Mode, Reporter

__all__ = ["main"]

Command = Callable[[argparse.Namespace, Reporter], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 on success)."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, so its usage is the one printed
        command_parser: argparse.ArgumentParser = args.command_parser
        command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    mode: Mode = "json" if args.json else "quiet" if args.quiet else "human"
    reporter = Reporter(mode)
    command: Command = args.command
    try:
        command(args, reporter)
    except KeyboardInterrupt:
        return reporter.interrupted(INTERRUPTED)
    except Exception as error:  # every error ends in one line and its own exit code
        return reporter.failed(error)
    return 0


def _parser() -> argparse.ArgumentParser:
    from ._batch import batch
    from ._commands import add_client_arguments, add_generation_arguments, generate, refine

    output = argparse.ArgumentParser(add_help=False)
    group = output.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print the result as JSON")
    group.add_argument("--quiet", action="store_true", help="print nothing but errors")

    parser = argparse.ArgumentParser(
        prog="aigen",
        description="Generate images with Gemini or OpenAI, with retries that obey the server.",
        epilog="Keys come from GEMINI_API_KEY / GOOGLE_API_KEY or OPENAI_API_KEY. "
        "Try it without a key: aigen demo",
    )
    parser.add_argument("--version", action="version", version=f"aigen {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    make = commands.add_parser("generate", parents=[output], help="generate one image")
    make.add_argument("prompt", help="what to draw")
    add_generation_arguments(make)
    make.add_argument(
        "--conversation", type=Path, help="also start a conversation saved to this JSON file"
    )
    make.set_defaults(command=generate, command_parser=make)

    again = commands.add_parser(
        "refine", parents=[output], help="refine the last image of a saved conversation"
    )
    again.add_argument("conversation", type=Path, help="the conversation JSON (created if absent)")
    again.add_argument("prompt", help="what to change")
    add_generation_arguments(again)
    again.set_defaults(command=refine, command_parser=again)

    many = commands.add_parser(
        "batch", parents=[output], help="one image per line of a prompts file"
    )
    many.add_argument("prompts", type=Path, help="a text file: one prompt per line, # comments")
    many.add_argument("-o", "--output", required=True, type=Path, help="the folder to write to")
    add_client_arguments(many)
    many.add_argument(
        "--concurrency", type=int, default=4, help="calls in flight at once (default 4)"
    )
    many.set_defaults(command=batch, command_parser=many)

    serve = commands.add_parser(
        "serve-fake", parents=[output], help="run a fake Gemini or OpenAI API on 127.0.0.1"
    )
    serve.add_argument("--provider", choices=("gemini", "openai"), default="gemini")
    serve.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    serve.add_argument(
        "--script",
        default="",
        type=_check_script,
        help="outcomes to play in order, comma-separated: ok, 503 (any 5xx), 429, "
        "429:SECONDS, blocked, blocked-output, text, malformed, drop, slow:SECONDS "
        "(default: always ok)",
    )
    serve.set_defaults(command=_lazy("serve_fake"), command_parser=serve)

    demo = commands.add_parser(
        "demo", parents=[output], help="see aigen work: no key, no network needed"
    )
    demo.add_argument("--out-dir", type=Path, default=Path("aigen-demo"), help="where to write")
    demo.set_defaults(command=_lazy("demo"), command_parser=demo)
    return parser


def _check_script(text: str) -> str:
    offline = importlib.import_module("aigen.cli._offline")
    checked: str = offline.check_script(text)
    return checked


def _lazy(name: str) -> Command:
    """A command from `aigen.cli._offline`, imported only when it runs."""

    def run(args: argparse.Namespace, reporter: Reporter) -> None:
        offline = importlib.import_module("aigen.cli._offline")
        command: Command = getattr(offline, name)
        command(args, reporter)

    return run


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
