"""A new dmledger process, as tests look into one: a script run by a fresh interpreter, on a
migrated SQLite database (an embedded one behind would import Alembic to migrate)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from infrastructure import migrations
from projections.database import create_view_engine

ROOT = Path(__file__).resolve().parents[2]


def migrated_sqlite_url(tmp_path: Path) -> str:
    """The URL of a new SQLite database in `tmp_path`, migrated to the newest schema."""
    url = f"sqlite:///{tmp_path}/served.sqlite3"
    engine = create_view_engine(url)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    return url


def run_python(script: str, env: Mapping[str, str] | None = None) -> str:
    """What `script` prints, run by a fresh interpreter in the repository's root (it fails
    the test if the script fails)."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    return done.stdout


def served_env(url: str, tmp_path: Path) -> dict[str, str]:
    """This process's environment for a dmledger process on `url`, without the test run's
    own `DMLEDGER_*` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMLEDGER_")}
    env.update(DMLEDGER_DATABASE_URL=url, DMLEDGER_DATA_DIR=str(tmp_path / "var"))
    return env
