"""The scale-out scenario of `tests/integration/test_scale_out.py` at a size of your choice.

    .venv/bin/python -m benchmarks.scale_out --size 10000 --participants 100

Two web, two projection and two dispatcher processes on one database; one of each killed
with SIGKILL halfway (see `tests/support/scale_out.py`). Prints the figures (times, retries,
duplicates) and every check that failed; exits 1 if one did. Runs in a schema of its own
in the bench database (`BENCH_POSTGRES_URL`, default `dmledger_bench` on the local
PostgreSQL), dropped afterwards unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from interfaces.cli_db import upgrade_database
from tests.support.scale_out import ScaleOut

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/dmledger_bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=__doc__)
    parser.add_argument("--size", type=int, default=10_000, help="webhook bodies to send")
    parser.add_argument("--participants", type=int, default=100, help="per account (3 accounts)")
    parser.add_argument(
        "--settle-seconds", type=float, default=600, help="how long to wait for the tail"
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema and the logs")
    parser.add_argument("--out", type=Path, help="write the report there as JSON")
    args = parser.parse_args(argv)

    url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES).split("?")[0]
    base, _, dbname = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    schema = "scale_" + uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    upgrade_database(f"{url}?schema={schema}")  # as `dmledger db upgrade` does
    workdir = Path(tempfile.mkdtemp(prefix="dmledger-scale-out-"))
    try:
        scenario = ScaleOut(
            f"{url}?schema={schema}",
            workdir,
            size=args.size,
            participants=args.participants,
            settle_seconds=args.settle_seconds,
            say=lambda text: print(text, file=sys.stderr),
        )
        report = asyncio.run(scenario.run())
    finally:
        if not args.keep:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    result = {"size": args.size, "participants": args.participants, **report.figures}
    if args.keep:
        result |= {"schema": schema, "logs": str(workdir)}
    print(json.dumps(result, indent=2))
    for failure in report.failures:
        print(f"FAILED: {failure}")
    if args.out:
        args.out.write_text(json.dumps({**result, "failures": report.failures}, indent=2))
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
