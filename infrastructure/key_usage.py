"""When each API key was last used, in a small table beside the read models (created and
migrated by `infrastructure/migrations`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

_metadata = MetaData()
key_usage = Table(
    "api_key_usage",
    _metadata,
    Column("key_id", String(32), primary_key=True),
    Column("last_used_at", BigInteger, nullable=False),
)


class SqlKeyUsage:
    """`KeyUsage` in SQL; milliseconds since the epoch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def touch(self, key_id: str, at: datetime) -> None:
        # One statement, so SQLite needs no write lock taken up front.
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(key_usage).values(
                key_id=key_id, last_used_at=int(at.timestamp() * 1000)
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["key_id"],
                    set_={"last_used_at": statement.excluded.last_used_at},
                )
            )

    def last_used(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        wanted = list(key_ids)
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(key_usage).where(key_usage.c.key_id.in_(wanted))).all()
        return {row.key_id: datetime.fromtimestamp(row.last_used_at / 1000, UTC) for row in rows}
