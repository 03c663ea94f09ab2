"""SQL run straight on a test's database, past dmledger, to look at or change its tables
(the events table and its index) on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL on the test's database; `{t}` is the events table's name."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(statement.format(t="stored_events"), params).fetchall()
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cursor = conn.execute(statement.format(t="dmledger_events").replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []
