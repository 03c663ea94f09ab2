"""The command line behaves as Unix tools do: a closed pipe, --version, --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from application.ingest import sign
from interfaces.composition import Services
from tests.conftest import ACCOUNT, APP_SECRET, TEST_KEY, meta_json, register_account


def dmledger(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_replay_into_a_pipe_closed_early_stops_quietly(
    tmp_path: Path, make_services: Callable[..., Services]
) -> None:
    # given an account whose events fill more than a pipe's buffer (64 KiB)
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    services = make_services(url)
    register_account(services)
    for i in range(400):
        body = meta_json("text")
        body["entry"][0]["messaging"][0]["message"] = {"mid": f"m-{i}", "text": "x" * 200}
        raw = json.dumps(body).encode()
        services.writer.run_now(services.ingest.command(raw, sign(raw, APP_SECRET)))
    services.close()

    # when its replay is read like `dmledger replay ... | head -1`
    replay = subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "replay", "--account", ACCOUNT],
        env={**os.environ, "DMLEDGER_DATABASE_URL": url, "DMLEDGER_SECRET_KEY": TEST_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert replay.stdout is not None
    assert replay.stderr is not None
    first = replay.stdout.readline()
    replay.stdout.close()
    status = replay.wait(timeout=60)
    errors = replay.stderr.read()

    # then it stops without a traceback
    assert first
    assert "Traceback" not in errors
    assert "BrokenPipeError" not in errors
    assert status in (0, 141), errors


def test_version_is_printed() -> None:
    done = dmledger("--version")

    assert done.returncode == 0
    assert done.stdout.strip() == f"dmledger {version('dmledger')}"


def test_help_says_the_settings_come_from_dmledger_variables() -> None:
    done = dmledger("--help")

    assert done.returncode == 0
    assert "DMLEDGER_DATABASE_URL" in done.stdout
    assert "DMLEDGER_*" in done.stdout
