"""`python -m benchmarks`: see docs/performance.md."""

from __future__ import annotations

from benchmarks.run import main

raise SystemExit(main())
