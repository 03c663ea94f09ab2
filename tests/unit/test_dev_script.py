"""`./dev`, the developer's one command: its quick subset for the edit-test loop."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dev_test_quick_leaves_out_postgres_sqlite_heavy_and_browser_tests() -> None:
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
    assert not any("tests/browser/" in line for line in collected)
    assert not any("[postgres]" in line for line in collected)
    assert any("tests/unit/" in line for line in collected)
    # a scenario that runs on every backend runs on memory only
    on_memory = [line for line in collected if "memory" in line]
    assert on_memory
    assert not {line.replace("memory", "sqlite") for line in on_memory} & set(collected)
