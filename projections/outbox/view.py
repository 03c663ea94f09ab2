"""The outbox tables, and leasing due deliveries to a dispatcher.

`outbox` rows are written by the projection, from events: one per reply to send and one per
notification to the account's CRM. Row ids come from the events, so a rebuilt outbox has
the same rows. `delivery_state` belongs to the dispatcher (attempts, leases, outcomes) and
survives a rebuild: what was delivered is not sent again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.sql import exists

from projections.schema import metadata, upsert, writing
from projections.view import SqlView

outbox = Table(
    "outbox",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("ig_account_id", String(32), nullable=False),
    Column("conversation_id", String(36), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("outcome", String(16)),
    Index("outbox_due", "channel", "outcome", "position"),
    Index("outbox_by_conversation", "conversation_id", "position"),
)
"""A row per delivery; `outcome` is set from events (`ReplySent`, a final `ReplyFailed`)."""

crm_subscriptions = Table(
    "outbox_crm_subscriptions",
    metadata,
    Column("ig_account_id", String(32), primary_key=True),
    Column("event_types", JSON, nullable=False),
    Column("enabled", Integer, nullable=False),
)
"""Which events each account's CRM wanted, as of the log's position."""

conversation_parties = Table(
    "outbox_conversations",
    metadata,
    Column("conversation_id", String(36), primary_key=True),
    Column("ig_account_id", String(32), nullable=False),
    Column("participant_id", String(64), nullable=False),
    Column("crm_sequence", Integer, nullable=False),
    Column("last_inbound_at", BigInteger),
)
"""Each conversation's account and participant, its last CRM sequence number, and when
the participant last wrote (Meta's time, ms): the reply windows start there."""

delivery_state = Table(
    "delivery_state",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("leased_until", BigInteger, nullable=False),
    Column("lease_owner", String(64)),
    Column("history", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
"""The dispatcher's: `status` is pending, sending, retrying, delivered, dead or ambiguous."""

FINISHED = ("delivered", "dead", "ambiguous")
"""States after which a conversation's next delivery may leave."""


class OutboxView(SqlView):
    """The outboxes, and the dispatcher's leases on them."""

    name = "outbox"
    tables = (outbox, crm_subscriptions, conversation_parties)
    notify = "dmledger_outbox"
    announced = (outbox,)
    """Only new or finished deliveries concern the dispatcher, not the parties' times."""

    def create_tables(self) -> None:
        super().create_tables()
        metadata.create_all(self.engine, tables=[delivery_state])

    def last_inbound_at(self, ig_account_id: str, conversation_id: str) -> int | None:
        """When the participant last wrote, as far as the outbox has followed the log: at
        least as far as any reply in it, so the window is never judged on a lagging view."""
        p = conversation_parties.c
        query = select(p.last_inbound_at).where(
            p.conversation_id == conversation_id, p.ig_account_id == ig_account_id
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return int(found) if found is not None else None

    def lease(
        self,
        channel: str,
        *,
        now: int,
        limit: int,
        owner: str,
        lease_ms: int,
        skip_accounts: set[str],
    ) -> list[dict[str, Any]]:
        """Take up to `limit` due deliveries, each the next of its conversation, for
        `lease_ms`. On PostgreSQL rows are locked with SKIP LOCKED, so several dispatchers
        take different rows; on SQLite the write transaction serialises dispatchers."""
        o, s = outbox.c, delivery_state.c
        earlier = outbox.alias("earlier")
        earlier_state = delivery_state.alias("earlier_state")
        unfinished_before = exists(
            select(earlier.c.delivery_id)
            .select_from(
                earlier.outerjoin(
                    earlier_state, earlier_state.c.delivery_id == earlier.c.delivery_id
                )
            )
            .where(
                earlier.c.channel == o.channel,
                earlier.c.conversation_id == o.conversation_id,
                earlier.c.ig_account_id == o.ig_account_id,
                earlier.c.position < o.position,
                earlier.c.outcome.is_(None),
                or_(earlier_state.c.status.is_(None), earlier_state.c.status.not_in(FINISHED)),
            )
        )
        query = (
            select(outbox, s.attempts, s.history)
            .select_from(outbox.outerjoin(delivery_state, s.delivery_id == o.delivery_id))
            .where(
                o.channel == channel,
                o.outcome.is_(None),
                or_(
                    s.status.is_(None),
                    and_(
                        s.status.in_(("pending", "retrying", "sending")),
                        s.next_attempt_at <= now,
                        s.leased_until < now,
                    ),
                ),
                ~unfinished_before,
            )
            .order_by(o.position)
            .limit(limit)
        )
        if skip_accounts:
            query = query.where(o.ig_account_id.not_in(sorted(skip_accounts)))
        with writing(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=outbox, skip_locked=True)
            rows = [dict(r) for r in conn.execute(query).mappings()]
            upsert(
                conn,
                delivery_state,
                [
                    {
                        "delivery_id": r["delivery_id"],
                        "status": "sending",
                        "attempts": (r["attempts"] or 0) + 1,
                        "next_attempt_at": now,
                        "leased_until": now + lease_ms,
                        "lease_owner": owner,
                        "history": r["history"] or [],
                        "updated_at": now,
                    }
                    for r in rows
                ],
                keys=["delivery_id"],
            )
        for row in rows:
            row["attempts"] = (row["attempts"] or 0) + 1
            row["history"] = row["history"] or []
        return rows

    def settle(
        self,
        delivery_id: str,
        *,
        status: str,
        now: int,
        next_attempt_at: int | None = None,
        attempt: dict[str, Any] | None = None,
        keep_attempt_count: bool = False,
    ) -> None:
        """Record how an attempt went: delivered, retrying (at `next_attempt_at`), dead,
        ambiguous, or pending again without counting the attempt (an account pause)."""
        with writing(self.engine) as conn:
            current = (
                conn.execute(
                    select(delivery_state).where(delivery_state.c.delivery_id == delivery_id)
                )
                .mappings()
                .first()
            )
            history = list(current["history"]) if current else []
            if attempt is not None:
                history = [*history, attempt][-20:]
            attempts = current["attempts"] if current else 0
            if keep_attempt_count:
                attempts = max(attempts - 1, 0)
            upsert(
                conn,
                delivery_state,
                [
                    {
                        "delivery_id": delivery_id,
                        "status": status,
                        "attempts": attempts,
                        "next_attempt_at": next_attempt_at if next_attempt_at is not None else now,
                        "leased_until": 0,
                        "lease_owner": None,
                        "history": history,
                        "updated_at": now,
                    }
                ],
                keys=["delivery_id"],
            )

    def redeliver(
        self,
        ig_account_id: str,
        *,
        delivery_id: str | None = None,
        since_ms: int | None = None,
        now: int,
    ) -> int:
        """Send CRM deliveries again (dead ones included); the number of deliveries."""
        o = outbox.c
        query = select(o.delivery_id).where(o.channel == "crm", o.ig_account_id == ig_account_id)
        if delivery_id is not None:
            query = query.where(o.delivery_id == delivery_id)
        if since_ms is not None:
            query = query.where(o.created_at >= since_ms)
        with writing(self.engine) as conn:
            ids = [r[0] for r in conn.execute(query)]
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start : chunk_start + 500]
                # A delivery never attempted has no state row: it is pending already.
                conn.execute(
                    delivery_state.update()
                    .where(delivery_state.c.delivery_id.in_(chunk))
                    .values(status="pending", next_attempt_at=now, leased_until=0, attempts=0)
                )
        return len(ids)

    def deliveries(
        self, ig_account_id: str, *, status: str | None, limit: int, before_position: int | None
    ) -> list[dict[str, Any]]:
        """CRM deliveries of an account, newest first, with their attempts."""
        o, s = outbox.c, delivery_state.c
        status_column = func.coalesce(s.status, "pending")
        query = (
            select(outbox, status_column.label("status"), s.attempts, s.history, s.next_attempt_at)
            .select_from(outbox.outerjoin(delivery_state, s.delivery_id == o.delivery_id))
            .where(o.channel == "crm", o.ig_account_id == ig_account_id)
            .order_by(o.position.desc())
            .limit(limit)
        )
        if status == "failed":
            query = query.where(status_column.in_(("retrying", "dead")))
        elif status is not None:
            query = query.where(status_column == status)
        if before_position is not None:
            query = query.where(o.position < before_position)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delivery(self, ig_account_id: str, delivery_id: str) -> dict[str, Any] | None:
        o, s = outbox.c, delivery_state.c
        query = (
            select(outbox, s.status, s.attempts, s.history, s.next_attempt_at)
            .select_from(outbox.outerjoin(delivery_state, s.delivery_id == o.delivery_id))
            .where(o.ig_account_id == ig_account_id, o.delivery_id == delivery_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def notify_channel(self) -> str:
        return "dmledger_outbox"
