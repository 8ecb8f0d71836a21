"""Every Python snippet of README.md and docs/ runs, so a stale snippet fails CI.

Each page's ```python blocks run in order in one namespace (a page builds on its earlier
blocks, as a reader does), in a temporary folder, with the keys of both providers set and
their public endpoints answered by `aigen.testing`'s fakes through respx: nothing leaves
the machine, and a fake server a snippet starts on 127.0.0.1 is reached as usual.

A block that cannot run here says why in an HTML comment on the line before it,
`<!-- not run: reason -->`, which the rendered page does not show. The recipe pages
(docs/recipes) are run by tests/recipes instead, which imports each page's app modules and
drives them with the framework's own test client, as the pages' test blocks show.

Two things a reader assumes are given: the image files a snippet reads (`room.png`,
`lake.jpg`, ...) exist, and `client` is an open `Client` wherever an earlier block's `with`
closed it (each block reads as if it were the body of that `with`).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import respx

import aigen
from aigen.testing import TEST_API_KEY
from aigen.testing.respx import mock_provider

from .images import jpeg, png

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
RECIPES = sorted((ROOT / "docs" / "recipes").glob("*.md"))
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->\s*$")

# Pages whose snippets set up their own fakes (respx or servers): no outer mock for them.
OWN_FAKES = {"testing.md"}


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int  # of the block's first line of code, from 1
    code: str
    skipped: str | None  # why it is not run, or None


def snippets(page: Path) -> list[Snippet]:
    text = page.read_text(encoding="utf-8")
    found = []
    for block in _BLOCK.finditer(text):
        before = text[: block.start()].rstrip("\n").rpartition("\n")[2]
        reason = _NOT_RUN.search(before)
        code = block.group(1)
        skipped = reason.group(1) if reason else None
        line = text.count("\n", 0, block.start(1)) + 1
        found.append(Snippet(page, line, code, skipped))
    return found


def test_every_page_is_found_and_exclusions_are_few() -> None:
    assert ROOT / "README.md" in PAGES
    everything = [s for page in PAGES for s in snippets(page)]
    marked = [s for s in everything if s.skipped]
    assert len(everything) > 50
    assert len(marked) <= 5, [(s.page.name, s.line, s.skipped) for s in marked]


def test_the_recipe_pages_are_run_by_their_own_suite() -> None:
    suite = ROOT / "tests" / "recipes"
    for page in RECIPES:
        assert (suite / f"test_{page.stem}_recipe.py").exists(), page.name


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder to write in, both keys set, no provider forced."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("AIGEN_PROVIDER", "gemini")
    (tmp_path / "room.png").write_bytes(png(64, 64))
    (tmp_path / "room-mask.png").write_bytes(png(64, 64))
    (tmp_path / "thumbnail.png").write_bytes(png(128, 72))
    (tmp_path / "lake.jpg").write_bytes(jpeg(64, 48))
    return tmp_path


def _run(page: Path, namespace: dict[str, Any]) -> None:
    for snippet in snippets(page):
        if snippet.skipped:
            continue
        client = namespace.get("client")
        if isinstance(client, aigen.Client) and _is_closed(client):
            namespace["client"] = aigen.Client()  # the reader's client, still open
        elif "client" not in namespace:
            namespace["client"] = aigen.Client()
        padded = "\n" * (snippet.line - 1) + snippet.code  # tracebacks name the page's line
        try:
            # `await` at the top level reads as "inside a coroutine": run it as one.
            code = compile(padded, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            if code.co_flags & inspect.CO_COROUTINE:
                asyncio.run(eval(code, namespace))
            else:
                exec(code, namespace)
        except Exception as error:
            raise AssertionError(
                f"{page.relative_to(ROOT)}:{snippet.line}: the snippet fails: {error!r}"
            ) from error


# Pages with a snippet to run (a page of prose and tables alone has nothing to test).
RUNNABLE = [page for page in PAGES if any(not s.skipped for s in snippets(page))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_the_snippets_of_the_page_run(page: Path, sandbox: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    if page.name in OWN_FAKES:
        _run(page, namespace)
        return
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.route(host="127.0.0.1").pass_through()
        router.route(host="localhost").pass_through()
        with mock_provider("gemini", router=router), mock_provider("openai", router=router):
            _run(page, namespace)
    _close_clients(namespace)


def _is_closed(client: aigen.Client) -> bool:
    pool = getattr(client, "_http", None) or getattr(client, "_http_client", None)
    return bool(getattr(pool, "is_closed", False))


def _close_clients(namespace: dict[str, Any]) -> None:
    """Close what a page left open, as the end of a script would."""
    for value in namespace.values():
        if isinstance(value, aigen.Client):
            value.close()
        elif isinstance(value, aigen.AsyncClient):
            asyncio.run(value.aclose())
