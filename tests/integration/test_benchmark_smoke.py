"""The benchmark harness still runs: a tiny load, every figure reported, nothing lost.

Benchmarks are not tests: nothing here looks at a number, only at the shape of the
report and at acknowledged == stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import derived_database

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def test_the_smoke_run_reports_every_figure_and_stores_what_it_acknowledged(
    postgres_server: str, tmp_path: Path
) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (./benchmarks/run installs it)")
    # given a bench database named after the test database (the harness drops its tables)
    bench_url = derived_database(postgres_server, "bench_smoke")
    out = tmp_path / "smoke.json"

    # when the harness runs with a tiny load
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "BENCH_POSTGRES_URL": bench_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # then it reports every figure, measured or saying what it needs
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    figures = {(f["id"], f["name"]) for f in report["figures"]}
    assert [f["id"] for f in report["figures"]] == [
        "P1",
        "P1",
        "P2",
        "P3",
        "P4",
        "P5",
        "P6",
        "P7",
        "P8",
    ]
    assert len(figures) == 9
    for f in report["figures"]:
        assert f["value"] is not None or f["note"].startswith("not measured: needs ")
    # and every acknowledged item is stored exactly once, and nothing else
    correctness = report["details"]["correctness"]
    assert correctness["exact"] is True
    assert correctness["acknowledged_items"] > 0
    assert correctness["stored_events"] == correctness["acknowledged_items"]
    # and the auditor's stream read the account's 1,000 events, as the scan did
    assert report["details"]["p7_audit_stream"]["full"]["account_events"] == 1000
