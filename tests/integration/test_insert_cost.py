"""A batch's insert costs the same however long the log is.

Each insert checks, in its statement, that no aggregate its commands read has moved on
since (`LedgerPostgresRecorder.insert_events`). That check is one index lookup per read
aggregate. Planned as a join, PostgreSQL scanned the whole events table for it in every
batch: the 6-minute soak's answer time rose from 10 to 50 ms as the log grew.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from interfaces.composition import Services
from tests.support.raw_sql import sql

MakeServices = Callable[..., Services]
pytestmark = pytest.mark.postgres

LOG = 50_000
"""Events in the log: some hundreds of pages, so a scan reads far more than a lookup."""


def _pages_read(url: str, statement: bytes, params: tuple[Any, ...]) -> int:
    """Shared buffers the statement touched (hit or read), planned as the writer runs it
    (a prepared statement's generic plan), in a transaction rolled back."""
    base, _, schema = url.partition("?schema=")
    # The values go in as literals (EXECUTE's arguments take no parameters' types).
    with psycopg.connect(base, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(b"PREPARE checked AS " + _numbered(statement))
        row = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE checked("
            + ", ".join(["%s"] * len(params))
            + ")",
            params,
        ).fetchone()
        conn.rollback()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    top = plan[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def _numbered(statement: bytes) -> bytes:
    """psycopg's `%b`/`%s` placeholders as PostgreSQL's `$1`, `$2`, ..."""
    parts = statement.replace(b"%b", b"%s").split(b"%s")
    out = parts[0]
    for n, part in enumerate(parts[1:], start=1):
        out += b"$%d" % n + part
    return out


@pytest.fixture
def long_log(postgres_url: str) -> int:
    """A log of 50,000 events of 500 aggregates (100 each, interleaved), each linked, owned
    and with a key in the index, with fresh statistics; how many pages the events take."""
    sql(
        postgres_url,
        "INSERT INTO {t} (originator_id, originator_version, topic, state) "
        "SELECT md5((n %% 500)::text)::uuid, n / 500 + 1, 'test:Event', '\\x7b7d'::bytea "
        "FROM generate_series(0, ?) AS n",
        LOG - 1,
    )
    sql(
        postgres_url, "INSERT INTO {t}_owners SELECT DISTINCT originator_id, originator_id FROM {t}"
    )
    sql(
        postgres_url,
        "INSERT INTO {t}_chain SELECT originator_id, originator_version, notification_id, 'k', "
        "'\\x00'::bytea, notification_id - 1 FROM {t}",
    )
    sql(
        postgres_url,
        "INSERT INTO {t}_item_keys "
        "SELECT originator_id, sha256(originator_version::text::bytea), 1 FROM {t}",
    )
    sql(postgres_url, "ANALYZE")
    pages: int = sql(postgres_url, "SELECT relpages FROM pg_class WHERE relname = '{t}'")[0][0]
    assert pages > 200
    return pages


def aggregate(n: int) -> uuid.UUID:
    """The long log's aggregate `n` (it is at version 100)."""
    return uuid.UUID(hashlib.md5(str(n).encode(), usedforsecurity=False).hexdigest())


# What an insert's batch sends, and what the writer asks after a conflict: each with the
# parameters of one read aggregate that has not moved on, or one new aggregate.
STATEMENTS: dict[str, tuple[Callable[[Any], bytes], tuple[Any, ...]]] = {
    "the insert, checking a read account": (
        lambda r: r._insert_statement,
        ([uuid.uuid4()], [1], ["test:Event"], [b"{}"], [aggregate(7)], [LOG // 500]),
    ),
    "the check alone (a batch that stores nothing)": (
        lambda r: r._moved_on_statement,
        ([aggregate(7)], [LOG // 500]),
    ),
    "the latest versions, after a conflict": (
        lambda r: r._versions_statement,
        ([aggregate(7)],),
    ),
    "the account index's rows": (
        lambda r: r.account_index._insert_rows,
        ([aggregate(7)], [LOG // 500]),
    ),
    "the chain's previous links": (
        lambda r: r._select_previous,
        ([aggregate(7)], [LOG // 500]),
    ),
    "the key index's older keys": (
        lambda r: r.item_keys._select,
        ([aggregate(7)], [hashlib.sha256(b"5").digest()]),
    ),
}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_a_statement_of_the_insert_path_reads_a_few_pages_of_a_long_log(
    postgres_url: str, make_services: MakeServices, long_log: int, name: str
) -> None:
    recorder: Any = make_services(postgres_url).ledger.recorder
    statement, params = STATEMENTS[name]

    pages = _pages_read(postgres_url, statement(recorder), params)

    # a few index pages and the rows it touches, not the table
    assert pages < 50, f"{name}: {pages} pages of a {long_log}-page log"
