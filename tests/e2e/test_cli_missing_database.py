"""A PostgreSQL database or schema that does not exist is named in one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

pytestmark = pytest.mark.postgres

COMMANDS = [
    ["serve", "--port", "9"],
    ["project"],
    ["dispatch", "--once"],
    ["accounts", "list"],
    ["keys", "list"],
    ["projections", "status"],
    ["replay", "--account", "17841400000000001"],
    ["audit", "verify"],
]


def run(database_url: str, tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DMLEDGER_DATABASE_URL": database_url,
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
    }
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_missing_database_is_named_with_how_to_create_it(
    postgres_server: str, tmp_path: Path, command: list[str]
) -> None:
    base = postgres_server.split("?")[0].rpartition("/")[0]
    missing = f"dmledger_missing_{uuid.uuid4().hex[:8]}"

    result = run(f"{base}/{missing}", tmp_path, *command)

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f'database "{missing}" does not exist' in line
    assert f"CREATE DATABASE {missing}" in line
    assert "Traceback" not in result.stderr


def test_a_missing_schema_is_named_with_how_to_create_it(
    postgres_server: str, tmp_path: Path
) -> None:
    database = postgres_server.split("?")[0]
    missing = f"missing_{uuid.uuid4().hex[:8]}"

    result = run(f"{database}?schema={missing}", tmp_path, "accounts", "list")

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f'schema "{missing}" does not exist' in line
    assert f"CREATE SCHEMA {missing}" in line


def test_a_password_in_the_url_is_not_repeated(postgres_server: str, tmp_path: Path) -> None:
    base = postgres_server.split("?")[0].rpartition("/")[0]
    with_password = base.replace("://postgres@", "://postgres:hunter2-secret@")
    missing = f"dmledger_missing_{uuid.uuid4().hex[:8]}"

    result = run(f"{with_password}/{missing}", tmp_path, "accounts", "list")

    assert result.returncode == 2, result.stderr
    assert "hunter2-secret" not in result.stderr
