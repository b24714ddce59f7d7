"""The benchmarks run as scripts from bench/, which puts bench/ first on sys.path: a
script named like a standard-library module (bench/queue.py did) shadows it for every
benchmark there, and whatever imports it fails (psycopg: 'partially initialized module
queue')."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_no_benchmark_module_shadows_the_standard_library() -> None:
    names = {path.stem for path in BENCH.glob("*.py")}
    assert names, BENCH
    assert sorted(names & set(sys.stdlib_module_names)) == []
