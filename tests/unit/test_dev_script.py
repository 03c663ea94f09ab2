"""`./dev`, the developer's one command: its quick subset for the edit-test loop (the unit
tests, under a minute), run in workers like the whole suite; tests named on its command
line run in one process."""

from __future__ import annotations

import os
import re
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


def dev_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "dev"), "test", *args, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, "CI": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_dev_test_runs_its_sets_in_workers_and_tests_named_on_its_command_line_in_one() -> None:
    workers = re.compile(r"^\d+ workers? \[\d+ items?\]", re.MULTILINE)  # pytest-xdist's

    whole = dev_test("--quick", "-k", "test_layers")
    named = dev_test("tests/unit/test_layers.py")

    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert workers.search(whole.stdout), whole.stdout
    assert named.returncode == 0, named.stdout + named.stderr
    assert not workers.search(named.stdout), named.stdout
