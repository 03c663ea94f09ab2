"""A web worker imports what it serves with, not the libraries of command lines and
development tools that happen to be installed beside it (P6: at most 100 MiB a worker)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.fresh_process import migrated_sqlite_url, run_python, served_env

NOT_SERVED_WITH = (
    # httpx's own command line (`httpx.main`) with its terminal output: ~4 MiB of every
    # process, installed because Litestar's command line needs rich and click.
    "rich",
    "pygments",
    "markdown_it",
    "rich_click",
    # Migrations only (`dmledger db upgrade`; see infrastructure/schema_revision.py).
    "alembic",
    "mako",
    # Litestar's test-data factories.
    "polyfactory",
    "faker",
)


def test_a_web_worker_builds_its_app_without_command_line_or_development_libraries(
    tmp_path: Path,
) -> None:
    # given a migrated SQLite database (an embedded one behind would import Alembic to migrate)
    url = migrated_sqlite_url(tmp_path)
    # when a fresh interpreter builds the app as each `serve` worker does
    script = (
        "import json, sys\n"
        "from interfaces import http_workers\n"
        "http_workers.app()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = served_env(url, tmp_path)
    printed = run_python(script, env)
    imported = set(json.loads(printed.strip().splitlines()[-1]))

    # then it imported what it serves with, and none of the others
    assert {"litestar", "sqlalchemy", "httpx", "jinja2"} <= imported
    assert sorted(imported & set(NOT_SERVED_WITH)) == []
