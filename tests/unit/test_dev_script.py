"""`./dev`, the developer's one command: its quick subset for the edit-test loop (the unit
tests, under a minute)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dev_test_quick_runs_the_unit_tests_without_postgres_sqlite_heavy_and_browser() -> None:
    done = subprocess.run(
        [str(ROOT / "dev"), "test", "--quick", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, "CI": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected
    assert all(line.startswith("tests/unit/") for line in collected)
    assert not any("[postgres]" in line for line in collected)
    assert any("tests/unit/test_layers.py" in line for line in collected)
