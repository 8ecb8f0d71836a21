"""Import a recipe page's code as modules, so the tests run exactly what docs/recipes/ shows.

A python block whose first line is `# path/to/module.py` is that module's source; blocks
for the same file are joined, and any other block is prose. Packages (`images` for
`images/views.py`) are made as needed. Every block keeps its line in the page, so a
traceback points at the page's own line.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"# ([\w/]+)\.py\n")


def module_sources(page: Path) -> dict[str, str]:
    """The source of every module the page shows, by dotted name, padded to its lines."""
    text = page.read_text()
    sources: dict[str, str] = {}
    for block in _BLOCK.finditer(text):
        marker = _MARKER.match(block.group(1))
        if marker is None:
            continue
        name = marker.group(1).replace("/", ".").removesuffix(".__init__")
        before = sources.get(name, "")
        first_line = text.count("\n", 0, block.start(1))  # lines above the block's first
        sources[name] = before + "\n" * (first_line - before.count("\n")) + block.group(1)
    if not sources:
        raise AssertionError(f"{page} shows no module (a block starting `# name.py`)")
    return sources


class _PageImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and loads the page's modules, and the packages that hold them."""

    def __init__(self, page: Path) -> None:
        self.page = page
        self.sources = module_sources(page)
        self.packages = {
            name.rsplit(".", depth)[0]
            for name in self.sources
            for depth in range(1, name.count(".") + 1)
        }

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.sources and fullname not in self.packages:
            return None
        is_package = fullname in self.packages
        spec = importlib.util.spec_from_loader(
            fullname, self, origin=str(self.page), is_package=is_package
        )
        assert spec is not None
        spec.has_location = True  # __file__ is the page, which Flask and Django read
        if is_package:
            # Django wants a package to have one directory; nothing is imported from it.
            spec.submodule_search_locations = [str(self.page.parent)]
        return spec

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        source = self.sources.get(module.__name__, "")
        exec(compile(source, str(self.page), "exec"), module.__dict__)


def install(page: Path) -> list[str]:
    """Make the page's modules importable for the rest of the process; returns their names."""
    importer = _PageImporter(page)
    sys.meta_path.insert(0, importer)
    return sorted(importer.sources.keys() | importer.packages)


@contextmanager
def importable(page: Path) -> Iterator[None]:
    """Make the page's modules importable inside the block, and forget them after it."""
    importer = _PageImporter(page)
    names = importer.sources.keys() | importer.packages
    clashes = sorted(name for name in names if name in sys.modules)
    if clashes:
        raise AssertionError(f"{page.name} shows modules that already exist: {clashes}")
    sys.meta_path.insert(0, importer)
    try:
        yield
    finally:
        sys.meta_path.remove(importer)
        for name in names:
            sys.modules.pop(name, None)
