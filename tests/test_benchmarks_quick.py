"""The benchmark harness runs: `python -m benchmarks --quick` ends well and reports every row.

This proves the harness, not the speed: no timing is asserted (the machine is shared and
noisy). The figures and their method are in docs/performance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("gemini", "openai")
SIZES = ("tiny", "medium", "large")
CLIENTS = ("httpx", "aigen", "aigen-core")  # aigen-core: aigen with pybase64 blocked
BASIS_ROWS = {"import.deps", "import.client_deps"}  # raw httpx column only


def expected_rows() -> set[str]:
    keys = {"import", "import.client", *BASIS_ROWS}
    for provider in PROVIDERS:
        keys |= {f"{provider}.call.{size}.{mode}" for size in SIZES for mode in ("sync", "async")}
        keys |= {f"{provider}.burst_tiny", f"{provider}.burst_large", f"{provider}.rss_large"}
    return keys


@pytest.mark.skipif(not (ROOT / "benchmarks").is_dir(), reason="benchmarks/ is not shipped here")
def test_quick_mode_reports_every_row_for_httpx_and_both_aigens(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = ["-m", "benchmarks", "--quick", "--clients", ",".join(CLIENTS), "--json", str(out)]
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))

    assert report["mode"] == "quick"
    assert report["errors"] == []  # a worker whose aigen picked the wrong decoder fails
    assert report["clients"] == list(CLIENTS)
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["packages"]["httpx"]
    rows = {row["key"]: row for row in report["rows"]}
    assert set(rows) == expected_rows()
    for key, row in rows.items():
        clients = ("httpx",) if key in BASIS_ROWS else CLIENTS
        for client in clients:
            cell = row["cells"][client]
            assert cell["median"] is not None, (key, client)
            assert cell["median"] >= 0, (key, client)
            assert report["samples"][key][client], (key, client)
        if row["unit"] == "ms" and key not in BASIS_ROWS:  # a peak RSS growth may be 0
            assert row["cells"]["aigen"]["ratio"] is not None, key
            assert row["cells"]["aigen-core"]["ratio"] is not None, key
    assert report["imports"]["import.client"]["aigen-core"] == "from aigen import Client"
    # The table printed on stdout names every client and every row's label.
    assert "raw httpx" in done.stdout
    assert "aigen-core" in done.stdout
    for row in report["rows"]:
        assert row["label"] in done.stdout
    # Targets are aigen's alone; the first-client import check is ours, apart from them.
    checks = {(check["row"], check["informational"]) for check in report["targets"]}
    assert checks >= {("import", False), ("gemini.rss_large", False), ("import.client", True)}
    assert "informational (ours" in done.stdout
