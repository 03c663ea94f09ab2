"""Meta's per-account send rates, held by every dispatcher process together, and the
reusable attachment ids of each account's URLs: two small tables beside the delivery
queue's (created and migrated by `infrastructure/migrations`, revision 0005; the log
cannot rebuild them, and need not: a lost count or id costs a wait or an upload).

The rate is a counter per (account, class, second): each send adds one to its second's
row in one statement (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`), atomic on
SQLite and PostgreSQL alike, and goes only if the count is within the limit. However
many dispatchers send, an account's sends in one second never pass it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, String, Table, Text, select
from sqlalchemy.dialects import postgresql, sqlite

ATTACHMENT_ID_LIFETIME_MS = 89 * 24 * 3_600_000
"""Meta's reusable attachment ids expire after 90 days: an older one is uploaded again."""
KEEP_SECONDS = 60
"""Counters of seconds older than this are deleted as the account's next second starts."""

_metadata = MetaData()
send_rate = Table(
    "send_rate",
    _metadata,
    Column("ig_account_id", String(32), primary_key=True),
    Column("send_class", String(16), primary_key=True),
    Column("second", BigInteger, primary_key=True),
    Column("sends", Integer, nullable=False),
)
reusable_attachments = Table(
    "reusable_attachments",
    _metadata,
    Column("ig_account_id", String(32), primary_key=True),
    Column("url_digest", String(64), primary_key=True),
    Column("media_type", String(16), primary_key=True),
    Column("url", Text, nullable=False),
    Column("attachment_id", String(64), nullable=False),
    Column("uploaded_at", BigInteger, nullable=False),
)
OWN_TABLES = (send_rate, reusable_attachments)


def _insert(engine_name: str):  # type: ignore[no-untyped-def]
    return (postgresql if engine_name == "postgresql" else sqlite).insert


class SqlSendLimits:
    """`SendLimits` in SQL: `limits` is the sends a second of each class (`text`, `media`)."""

    def __init__(self, engine: Engine, limits: Mapping[str, int]) -> None:
        self.engine = engine
        self.limits = dict(limits)

    def take(self, ig_account_id: str, send_class: str, now_ms: int) -> bool:
        """Count one send of the account in this second; whether it may go."""
        limit = self.limits.get(send_class, self.limits["text"])
        second = now_ms // 1000
        with self.engine.begin() as conn:
            statement = _insert(conn.dialect.name)(send_rate).values(
                ig_account_id=ig_account_id, send_class=send_class, second=second, sends=1
            )
            statement = statement.on_conflict_do_update(
                index_elements=["ig_account_id", "send_class", "second"],
                set_={"sends": send_rate.c.sends + 1},
            ).returning(send_rate.c.sends)
            sends = int(conn.execute(statement).scalar_one())
            if sends == 1:  # the first of its second: forget the old ones
                conn.execute(
                    send_rate.delete().where(
                        send_rate.c.ig_account_id == ig_account_id,
                        send_rate.c.send_class == send_class,
                        send_rate.c.second < second - KEEP_SECONDS,
                    )
                )
        return sends <= limit


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


class SqlReusableAttachments:
    """`ReusableAttachments` in SQL: the attachment id Meta gave each account's URL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def attachment_id(
        self, ig_account_id: str, url: str, media_type: str, now_ms: int
    ) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(reusable_attachments.c.attachment_id).where(
                    reusable_attachments.c.ig_account_id == ig_account_id,
                    reusable_attachments.c.url_digest == _digest(url),
                    reusable_attachments.c.media_type == media_type,
                    reusable_attachments.c.uploaded_at > now_ms - ATTACHMENT_ID_LIFETIME_MS,
                )
            ).first()
        return None if row is None else str(row.attachment_id)

    def remember(
        self, ig_account_id: str, url: str, media_type: str, attachment_id: str, now_ms: int
    ) -> None:
        with self.engine.begin() as conn:
            statement = _insert(conn.dialect.name)(reusable_attachments).values(
                ig_account_id=ig_account_id,
                url_digest=_digest(url),
                media_type=media_type,
                url=url,
                attachment_id=attachment_id,
                uploaded_at=now_ms,
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["ig_account_id", "url_digest", "media_type"],
                    set_={
                        "attachment_id": statement.excluded.attachment_id,
                        "uploaded_at": statement.excluded.uploaded_at,
                    },
                )
            )
