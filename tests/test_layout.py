"""The layering SPEC.md draws, proved on the source: a sans-IO core, clients blind to providers.

These read the code with `ast` (not by importing it), so a forbidden import fails the test
even where it sits in a branch no other test runs.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import aigen

PACKAGE = Path(aigen.__file__).parent
SANS_IO = sorted(
    [
        *(
            PACKAGE / name
            for name in (
                "_actions.py",
                "_call.py",
                "_clock.py",
                "_core.py",
                "_flow.py",
                "_hooks.py",
                "_redact.py",
                "_retry.py",
                "_sse.py",
                "_store.py",
                "_memory_store.py",
                "_redis_scripts.py",  # the Lua text; redis.py and _redis_runner.py do the I/O
                "_models.py",
                "_errors.py",
                "_images.py",
                "_http.py",
                "_prompt.py",
                "_config.py",
                "_conversation.py",
                "_body.py",
                "_base64.py",
                "_circuit.py",
                "_ratelimit.py",
                "_limits.py",
            )
        ),
        *(PACKAGE / "providers").glob("*.py"),
    ]
)
# Modules a sans-IO module may import from inside the package, besides each other.
PURE_HELPERS = {"aigen._constants", "aigen._version"}
FORBIDDEN_MODULES = {"httpx", "httpcore", "asyncio", "anyio", "trio", "socket", "requests"}
PROVIDER_NAMES = ("gemini", "openai")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved to absolute names."""
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from . import x` may import the submodule x.
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def test_the_import_reader_sees_what_it_must() -> None:
    # Guards against a reader that finds nothing and so proves nothing.
    assert "httpx" in imported_modules(PACKAGE / "_client.py")
    assert "asyncio" in imported_modules(PACKAGE / "_async_client.py")
    assert "tenacity" in imported_modules(PACKAGE / "_flow.py")
    assert {"aigen._config", "aigen._models", "aigen.providers"} <= imported_modules(
        PACKAGE / "_core.py"
    )
    assert "aigen._errors" in imported_modules(PACKAGE / "providers" / "gemini.py")


def test_the_sans_io_modules_exist() -> None:
    missing = [str(path) for path in SANS_IO if not path.is_file()]
    assert not missing
    assert PACKAGE / "providers" / "gemini.py" in SANS_IO


@pytest.mark.parametrize("path", SANS_IO, ids=lambda path: module_name(path))
def test_sans_io_module_imports_no_io_library(path: Path) -> None:
    bad = {
        name
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_MODULES or name in ("time.sleep",)
    }
    assert not bad, f"{module_name(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", SANS_IO, ids=lambda path: module_name(path))
def test_sans_io_module_never_sleeps(path: Path) -> None:
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Attribute) and node.attr == "sleep":
            assert not (
                isinstance(node.value, ast.Name) and node.value.id in ("time", "asyncio")
            ), f"{module_name(path)} line {node.lineno} uses {node.value.id}.sleep"
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "asyncio"):
            names = {alias.name for alias in node.names}
            assert "sleep" not in names, f"{module_name(path)} imports sleep"


def test_sans_io_modules_reach_no_io_module_through_the_package() -> None:
    """Follow internal imports transitively: the core must not pull in the clients."""
    by_name = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    allowed = {module_name(path) for path in SANS_IO} | PURE_HELPERS
    for start in SANS_IO:
        seen: set[str] = set()
        todo = [module_name(start)]
        while todo:
            current = todo.pop()
            if current in seen or current not in by_name:
                continue
            seen.add(current)
            todo.extend(imported_modules(by_name[current]))
        internal = {name for name in seen if name in by_name}
        assert internal <= allowed, (
            f"{module_name(start)} reaches {sorted(internal - allowed)}, which may do I/O"
        )


def _docstring_nodes(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
        ):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


CLIENT_MODULES = ("_client.py", "_sync_client.py", "_async_client.py", "_transport.py")


@pytest.mark.parametrize("name", CLIENT_MODULES)
def test_clients_never_name_a_provider(name: str) -> None:
    tree = parse(PACKAGE / name)
    docstrings = _docstring_nodes(tree)
    offending: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue  # documenting the keyword's values is not branching on them
            if any(name in node.value.lower() for name in PROVIDER_NAMES):
                offending.append(f"line {node.lineno}: string {node.value!r}")
        elif isinstance(node, ast.Name | ast.Attribute):
            identifier = node.id if isinstance(node, ast.Name) else node.attr
            if any(name in identifier.lower() for name in PROVIDER_NAMES):
                offending.append(f"line {node.lineno}: name {identifier}")
    assert not offending


@pytest.mark.parametrize("name", CLIENT_MODULES)
def test_clients_never_compare_the_provider(name: str) -> None:
    tree = parse(PACKAGE / name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            source = ast.unparse(node)
            assert "provider" not in source, f"line {node.lineno}: {source}"
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("isinstance", "type"):
            source = ast.unparse(node)
            assert "provider" not in source.lower(), f"line {node.lineno}: {source}"
    adapters = {
        module_name(path)
        for path in (PACKAGE / "providers").glob("*.py")
        if path.name not in ("__init__.py", "_base.py")
    }
    assert adapters  # the check below is not vacuous
    assert not adapters & imported_modules(PACKAGE / name)


def test_every_public_name_exists_and_is_documented() -> None:
    assert len(aigen.__all__) == len(set(aigen.__all__))
    undocumented: list[str] = []
    for name in aigen.__all__:
        assert hasattr(aigen, name), f"aigen.__all__ lists {name}, which does not exist"
        obj = getattr(aigen, name)
        if name == "__version__":
            # A string cannot carry its own docstring; it must at least be a version.
            assert re.fullmatch(r"\d+\.\d+\.\d+\S*", obj)
            continue
        own_doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if not (isinstance(own_doc, str) and own_doc.strip()):
            undocumented.append(name)
    assert not undocumented


def test_public_methods_are_documented() -> None:
    missing = [
        f"{cls.__name__}.{attr}"
        for cls in (aigen.Client, aigen.AsyncClient, aigen.Conversation, aigen.AsyncConversation)
        for attr in ("generate", "conversation", "close", "aclose", "send")
        if attr in cls.__dict__ and not (inspect.getdoc(cls.__dict__[attr]) or "").strip()
    ]
    assert not missing


def test_py_typed_is_shipped() -> None:
    marker = PACKAGE / "py.typed"
    assert marker.is_file()
