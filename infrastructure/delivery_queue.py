"""The dispatcher's delivery queue: leases, outcomes and redeliveries (the `Outbox` port).

The outbox projection writes a row per delivery into `outbox` (ids from the events, so a
rebuilt outbox has the same rows). This queue keeps everything that changes as the
deliveries go, in tables of its own (`infrastructure/delivery_tables.py`: why they
describe `outbox` again is told there): each delivery's state in `delivery_state`, and in
`delivery_queue` only the deliveries not finished yet. Each lease first adopts the outbox
rows past its channel's cursor (`delivery_cursors`), and a delivery leaves the queue when
it is settled for good. Leasing then reads a few rows of a small table, however long the
outbox has grown (it used to scan the whole outbox, finished rows included, each time:
~100 ms with 20,000 rows).

The queue's state survives a rebuild of the outbox: what was delivered is not sent again.
A rebuilt outbox may hold rows the old one did not, so `outbox_replaced` (called by the
outbox view in the transaction that replaces its rows) sends the cursors back to the start.

About 400 lines: leasing, settling and redelivering share the queue's invariants
(a delivery is in `delivery_queue` exactly while it is unfinished), so they stay together;
the listing of deliveries for the API and the counts for the metrics are the last ~100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, delete, func, literal, or_, select, update
from sqlalchemy.sql import exists

from application.ports import DeliveryStatus, LeasedDelivery, Settlement
from infrastructure.delivery_tables import (
    FINISHED,
    delivery_cursors,
    delivery_queue,
    delivery_state,
    dialect_of,
    outbox,
    upsert_states,
    writing,
)

QUEUED_COLUMNS = ["delivery_id", "channel", "ig_account_id", "conversation_id", "position"]
CHANNELS = ("instagram", "crm")


@dataclass(frozen=True)
class ChannelCounts:
    """One outbox channel's deliveries now, as an operator watches them."""

    channel: str
    due: int
    """Unfinished deliveries that may go now (none adopted yet, or their wait is over)."""
    oldest_due_ms: int | None
    """Since when (ms) the longest-waiting due delivery has been due; None if none is."""
    leased: int
    """Deliveries a dispatcher holds now."""
    dead: int
    """Deliveries given up for good."""


class DeliveryQueue:
    """The outboxes' deliveries as the dispatcher takes and settles them, in SQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def outbox_replaced(self, conn: Connection) -> None:
        """The outbox's rows were replaced (a rebuild): adopt from its start again, in the
        same transaction (what is finished stays finished, by its state)."""
        conn.execute(delete(delivery_cursors))

    def lease(
        self,
        channel: str,
        *,
        now: int,
        limit: int,
        owner: str,
        lease_ms: int,
        skip_accounts: set[str],
    ) -> list[LeasedDelivery]:
        """Take up to `limit` due deliveries, each the next of its conversation, for
        `lease_ms`. On PostgreSQL rows are locked with SKIP LOCKED, so several dispatchers
        take different rows; on SQLite the write transaction serialises dispatchers."""
        o, q, s = outbox.c, delivery_queue.c, delivery_state.c
        # The queue holds only unfinished deliveries, so the next of each conversation is
        # its first row there: one pass over the queue, not a probe per row.
        heads = (
            select(q.conversation_id, func.min(q.position).label("position"))
            .where(q.channel == channel)
            .group_by(q.conversation_id)
            .subquery("heads")
        )
        query = (
            select(outbox, s.attempts, s.history)
            .select_from(
                heads.join(
                    delivery_queue,
                    and_(
                        q.conversation_id == heads.c.conversation_id,
                        q.channel == channel,
                        q.position == heads.c.position,
                    ),
                )
                .join(outbox, o.delivery_id == q.delivery_id)
                .outerjoin(delivery_state, s.delivery_id == q.delivery_id)
            )
            .where(
                q.channel == channel,
                or_(
                    s.status.is_(None),
                    and_(
                        s.status.in_(
                            (
                                DeliveryStatus.PENDING,
                                DeliveryStatus.RETRYING,
                                DeliveryStatus.SENDING,
                            )
                        ),
                        s.next_attempt_at <= now,
                        s.leased_until < now,
                    ),
                ),
            )
            .order_by(q.position)
            .limit(limit)
        )
        if skip_accounts:
            query = query.where(q.ig_account_id.not_in(sorted(skip_accounts)))
        with writing(self.engine) as conn:
            self._adopt(conn, channel)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=delivery_queue, skip_locked=True)
            rows = [dict(r) for r in conn.execute(query).mappings()]
            # A reply the log says was sent or failed for good (its dispatcher died before
            # settling it) leaves the queue, and its conversation's next one goes.
            done = [r["delivery_id"] for r in rows if r["outcome"] is not None]
            if done:
                conn.execute(delete(delivery_queue).where(q.delivery_id.in_(done)))
                rows = [r for r in rows if r["outcome"] is None]
            upsert_states(
                conn,
                [
                    {
                        "delivery_id": r["delivery_id"],
                        "status": DeliveryStatus.SENDING,
                        "attempts": (r["attempts"] or 0) + 1,
                        "next_attempt_at": now,
                        "leased_until": now + lease_ms,
                        "lease_owner": owner,
                        "history": r["history"] or [],
                        "updated_at": now,
                    }
                    for r in rows
                ],
            )
        return [
            LeasedDelivery(
                delivery_id=r["delivery_id"],
                channel=r["channel"],
                ig_account_id=r["ig_account_id"],
                conversation_id=r["conversation_id"],
                kind=r["kind"],
                body=r["body"],
                position=r["position"],
                created_at=r["created_at"],
                attempts=(r["attempts"] or 0) + 1,
                history=r["history"] or [],
                content_key=r["content_key"],
            )
            for r in rows
        ]

    def private_replies_counted(
        self, ig_account_id: str, *, before_position: int, since: int
    ) -> int:
        """The account's private replies ahead of `before_position` that were delivered, or
        leased to be sent, since `since` (ms): ahead of it, so that of one batch leased
        together the first ones go and the rest wait."""
        o, s = outbox.c, delivery_state.c
        query = (
            select(func.count())
            .select_from(outbox.join(delivery_state, s.delivery_id == o.delivery_id))
            .where(
                o.ig_account_id == ig_account_id,
                o.kind == "private_reply",
                o.position < before_position,
                s.status.in_((DeliveryStatus.DELIVERED, DeliveryStatus.SENDING)),
                s.updated_at >= since,
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def _adopt(self, conn: Connection, channel: str) -> None:
        """Queue the channel's outbox rows past its cursor that are not finished yet.

        The projection commits its rows in the order of their positions, so once a
        position is visible every row before it is: the cursor moves to the highest
        position seen before the rows are read, and no row is passed over."""
        o, c = outbox.c, delivery_cursors.c
        cursor_query = select(c.position).where(c.channel == channel)
        if conn.dialect.name == "postgresql":
            # One dispatcher adopts at a time; the others wait for this short transaction.
            cursor_query = cursor_query.with_for_update()
        cursor = conn.execute(cursor_query).scalar()
        if cursor is None:
            conn.execute(
                dialect_of(conn)
                .insert(delivery_cursors)
                .values(channel=channel, position=0)
                .on_conflict_do_nothing()
            )
            cursor = conn.execute(cursor_query).scalar() or 0
        head = conn.execute(
            select(func.max(o.position)).where(o.channel == channel, o.outcome.is_(None))
        ).scalar()
        if head is None or head <= cursor:
            return
        finished = exists(
            select(delivery_state.c.delivery_id).where(
                delivery_state.c.delivery_id == o.delivery_id,
                delivery_state.c.status.in_(FINISHED),
            )
        )
        rows = select(
            o.delivery_id, literal(channel), o.ig_account_id, o.conversation_id, o.position
        ).where(
            o.channel == channel,
            o.outcome.is_(None),
            o.position > cursor,
            o.position <= head,
            ~finished,
        )
        conn.execute(
            dialect_of(conn)
            .insert(delivery_queue)
            .from_select(QUEUED_COLUMNS, rows)
            .on_conflict_do_nothing()
        )
        conn.execute(update(delivery_cursors).where(c.channel == channel).values(position=head))

    def settle(
        self,
        delivery_id: str,
        *,
        status: DeliveryStatus,
        now: int,
        next_attempt_at: int | None = None,
        attempt: dict[str, Any] | None = None,
        keep_attempt_count: bool = False,
    ) -> None:
        """Record how an attempt went: delivered, retrying (at `next_attempt_at`), dead,
        ambiguous, or pending again without counting the attempt (an account pause)."""
        self.settle_many(
            [
                Settlement(
                    delivery_id,
                    status=status,
                    now=now,
                    next_attempt_at=next_attempt_at,
                    attempt=attempt,
                    keep_attempt_count=keep_attempt_count,
                )
            ]
        )

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """`settle` each, in one transaction (the last settlement of a delivery wins)."""
        if not settlements:
            return
        ids = sorted({each.delivery_id for each in settlements})
        s = delivery_state.c
        with writing(self.engine) as conn:
            current = {
                r["delivery_id"]: r
                for r in conn.execute(
                    select(s.delivery_id, s.attempts, s.history).where(s.delivery_id.in_(ids))
                ).mappings()
            }
            rows: dict[str, dict[str, Any]] = {}
            for each in settlements:
                before = rows.get(each.delivery_id) or current.get(each.delivery_id)
                history = list(before["history"]) if before else []
                if each.attempt is not None:
                    history = [*history, each.attempt][-20:]
                attempts = before["attempts"] if before else 0
                if each.keep_attempt_count:
                    attempts = max(attempts - 1, 0)
                rows[each.delivery_id] = {
                    "delivery_id": each.delivery_id,
                    "status": each.status,
                    "attempts": attempts,
                    "next_attempt_at": each.next_attempt_at
                    if each.next_attempt_at is not None
                    else each.now,
                    "leased_until": 0,
                    "lease_owner": None,
                    "history": history,
                    "updated_at": each.now,
                }
            upsert_states(conn, list(rows.values()))
            healthy = sorted({e.delivery_id for e in settlements if e.endpoint_healthy})
            if healthy:
                self._retry_now(conn, healthy, max(e.now for e in settlements))
            done = [i for i, row in rows.items() if row["status"] in FINISHED]
            if done:
                conn.execute(delete(delivery_queue).where(delivery_queue.c.delivery_id.in_(done)))

    @staticmethod
    def _retry_now(conn: Connection, delivered: list[str], now: int) -> None:
        """The deliveries waiting for a retry of the accounts (and channels) of these
        delivered ones are due `now`: their endpoint answers again, so a conversation is
        not held behind its head's long wait."""
        q, s = delivery_queue.c, delivery_state.c
        lanes = {
            (r.ig_account_id, r.channel)
            for r in conn.execute(
                select(q.ig_account_id, q.channel).where(q.delivery_id.in_(delivered))
            )
        }
        if not lanes:
            return
        waiting = select(q.delivery_id).where(
            or_(*(and_(q.ig_account_id == a, q.channel == c) for a, c in sorted(lanes)))
        )
        due_later = (
            select(s.delivery_id)
            .where(
                s.status == DeliveryStatus.RETRYING,
                s.next_attempt_at > now,
                s.delivery_id.in_(waiting),
            )
            .order_by(s.delivery_id)
        )
        if conn.dialect.name == "postgresql":
            # In one order, skipping what another dispatcher is settling: no deadlock.
            due_later = due_later.with_for_update(skip_locked=True)
        ids = [r[0] for r in conn.execute(due_later)]
        if ids:
            conn.execute(
                update(delivery_state).where(s.delivery_id.in_(ids)).values(next_attempt_at=now)
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
                    .values(
                        status=DeliveryStatus.PENDING,
                        next_attempt_at=now,
                        leased_until=0,
                        attempts=0,
                    )
                )
                # Finished deliveries left the queue: back in, at their place in the
                # conversation (one not adopted yet will be, past the cursor).
                cursors = select(delivery_cursors.c.position).where(
                    delivery_cursors.c.channel == o.channel
                )
                again = select(
                    o.delivery_id, o.channel, o.ig_account_id, o.conversation_id, o.position
                ).where(o.delivery_id.in_(chunk), o.position <= cursors.scalar_subquery())
                conn.execute(
                    dialect_of(conn)
                    .insert(delivery_queue)
                    .from_select(QUEUED_COLUMNS, again)
                    .on_conflict_do_nothing()
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
        """One delivery of an account with its state, or None."""
        o, s = outbox.c, delivery_state.c
        query = (
            select(outbox, s.status, s.attempts, s.history, s.next_attempt_at)
            .select_from(outbox.outerjoin(delivery_state, s.delivery_id == o.delivery_id))
            .where(o.ig_account_id == ig_account_id, o.delivery_id == delivery_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def counts(self, now: int) -> list[ChannelCounts]:
        """Each channel's due, leased and dead deliveries, and since when the oldest due one
        waits: the queue's rows (unfinished deliveries only), the outbox's rows past the
        cursor (not adopted yet), and the dead states (by their own index): five small
        queries for both channels, however many deliveries were ever made."""
        o, q, s, c = outbox.c, delivery_queue.c, delivery_state.c, delivery_cursors.c
        is_due = or_(
            s.status.is_(None),
            and_(
                s.status.in_(("pending", "retrying", "sending")),
                s.next_attempt_at <= now,
                s.leased_until < now,
            ),
        )
        # A retry is due from its next attempt, an expired lease from its end, a fresh
        # delivery from its creation: a long retry ladder is no dispatcher falling behind.
        due_since = case(
            (s.status.is_(None), o.created_at),
            (s.leased_until > s.next_attempt_at, s.leased_until),
            else_=s.next_attempt_at,
        )
        queued = (
            select(
                q.channel,
                func.count().filter(is_due),
                func.min(case((is_due, due_since))),
                func.count().filter(and_(s.status == "sending", s.leased_until >= now)),
            )
            .select_from(
                delivery_queue.join(outbox, o.delivery_id == q.delivery_id).outerjoin(
                    delivery_state, s.delivery_id == q.delivery_id
                )
            )
            .group_by(q.channel)
        )
        dead = (
            select(o.channel, func.count())
            .select_from(delivery_state.join(outbox, o.delivery_id == s.delivery_id))
            .where(s.status == "dead")
            .group_by(o.channel)
        )
        found: dict[str, list[Any]] = {ch: [0, None, 0, 0] for ch in CHANNELS}
        with self.engine.connect() as conn:
            for channel, due, oldest, leased in conn.execute(queued):
                found.setdefault(channel, [0, None, 0, 0])
                found[channel][:3] = [due, oldest, leased]
            cursors: dict[str, int] = {
                channel: position
                for channel, position in conn.execute(select(c.channel, c.position))
            }
            for channel, counted in found.items():
                # Past the cursor, by the outbox's (channel, outcome, position) index.
                waiting, oldest = conn.execute(
                    select(func.count(), func.min(o.created_at)).where(
                        o.channel == channel,
                        o.outcome.is_(None),
                        o.position > cursors.get(channel, 0),
                        ~exists(
                            select(s.delivery_id).where(
                                s.delivery_id == o.delivery_id, s.status.in_(FINISHED)
                            )
                        ),
                    )
                ).one()
                counted[0] += waiting
                counted[1] = min((v for v in (counted[1], oldest) if v is not None), default=None)
            for channel, count in conn.execute(dead):
                found.setdefault(channel, [0, None, 0, 0])[3] = count
        return [
            ChannelCounts(ch, int(d), None if old is None else int(old), int(leased), int(dead))
            for ch, (d, old, leased, dead) in found.items()
        ]
