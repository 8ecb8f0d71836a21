"""`aigen generate` and `aigen refine`: one image per call, a conversation across calls."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._conversation import ConversationState
from .._models import GenerationRequest, GenerationResponse
from .._sync_client import Client
from ._report import Reporter

__all__ = [
    "add_client_arguments",
    "add_generation_arguments",
    "check_writable",
    "client_from",
    "generate",
    "parse_size",
    "refine",
    "write_file",
]

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """`"1280x720"` as `(1280, 720)`; argparse shows the error for anything else."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, like 1280x720, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that pick and tune the client, shared by every generating command."""
    parser.add_argument(
        "--provider", help="gemini or openai (default: AIGEN_PROVIDER, or from the key set)"
    )
    parser.add_argument("--model", help="the model (default: the provider's)")
    parser.add_argument(
        "--base-url", help="another endpoint, such as a proxy (default: AIGEN_BASE_URL)"
    )
    parser.add_argument("--size", type=parse_size, help="WIDTHxHEIGHT, like 1280x720")
    parser.add_argument("--seed", type=int, help="a seed, where the provider takes one")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per attempt (default 120)"
    )
    parser.add_argument(
        "--max-retries", type=int, help="retries after the first attempt (default 2)"
    )


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `generate` and `refine` share."""
    parser.add_argument("-o", "--output", required=True, type=Path, help="where to write the image")
    add_client_arguments(parser)
    parser.add_argument("--input", type=Path, help="an image (PNG, JPEG or WebP) to work from")


def client_from(args: argparse.Namespace, reporter: Reporter) -> Client:
    """A `Client` configured from the command line, falling back to the environment, whose
    retries reach the reporter's status line through its hooks."""
    return Client(
        provider=args.provider,
        model=args.model,
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        hooks=reporter.watcher.hooks,
    )


@dataclass(frozen=True)
class _Wish:
    """What the command line asks of the image."""

    width: int | None
    height: int | None
    seed: int | None
    input_image: bytes | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _Wish:
        """The wish, checked before the environment is read: a bad `--size` or an empty
        prompt is reported as such even when no key is set."""
        check_writable(args.output)
        width, height = args.size if args.size is not None else (None, None)
        image = args.input.read_bytes() if args.input is not None else None
        GenerationRequest(
            prompt=args.prompt, width=width, height=height, seed=args.seed, input_image=image
        )
        return cls(width=width, height=height, seed=args.seed, input_image=image)


def generate(args: argparse.Namespace, reporter: Reporter) -> None:
    """Generate one image; with `--conversation FILE`, start a conversation saved there."""
    wish = _Wish.from_args(args)
    with client_from(args, reporter) as client:
        if args.conversation is None:
            with reporter.watching("generating"):
                response = client.generate(
                    args.prompt,
                    width=wish.width,
                    height=wish.height,
                    seed=wish.seed,
                    input_image=wish.input_image,
                )
        else:
            chat = client.conversation(width=wish.width, height=wish.height, seed=wish.seed)
            with reporter.watching("generating"):
                response = chat.send(args.prompt, input_image=wish.input_image)
            _save_conversation(args.conversation, chat)
    _write_image(args.output, response)
    reporter.saved(args.output, response, conversation=args.conversation)


def refine(args: argparse.Namespace, reporter: Reporter) -> None:
    """Send a prompt in the conversation saved at `args.conversation`, then save it again.

    A file that does not exist yet starts a new conversation there.
    """
    wish = _Wish.from_args(args)
    state = _load_conversation(args.conversation)
    with client_from(args, reporter) as client:
        chat = client.conversation(
            history=state, width=wish.width, height=wish.height, seed=wish.seed
        )
        with reporter.watching("refining"):
            response = chat.send(args.prompt, input_image=wish.input_image)
        _save_conversation(args.conversation, chat)
    _write_image(args.output, response)
    reporter.saved(args.output, response, conversation=args.conversation)


def _load_conversation(path: Path) -> ConversationState | None:
    if not path.exists():
        return None
    try:
        return ConversationState.model_validate_json(path.read_bytes())
    except ValueError as error:
        raise OSError(f"{path} is not a conversation saved by aigen: {error}") from None


def _save_conversation(path: Path, chat: ConversationState) -> None:
    """Write atomically, so an interrupted run never leaves half a conversation."""
    write_file(path, chat.model_dump_json(indent=2).encode())


def _write_image(path: Path, response: GenerationResponse) -> None:
    write_file(path, response.image_data)


def check_writable(path: Path) -> None:
    """Refuse an output path whose folder is missing, before anything is paid for."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; name a file")


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a reader never sees half a file."""
    directory = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
