"""How many deliveries each outbox channel has due, leased and dead, and since when the
oldest due one waits: what the metrics report of the delivery queue
(`interfaces/operational_state.py`), read at scrape time. The queue itself (leases,
outcomes) is `infrastructure/delivery_queue.py`; its tables are in
`infrastructure/delivery_tables.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, case, func, or_, select
from sqlalchemy.sql import exists

from infrastructure.delivery_tables import (
    FINISHED,
    delivery_cursors,
    delivery_queue,
    delivery_state,
    outbox,
)

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


def channel_counts(engine: Engine, now: int) -> list[ChannelCounts]:
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
    with engine.connect() as conn:
        for channel, due, oldest, leased in conn.execute(queued):
            found.setdefault(channel, [0, None, 0, 0])
            found[channel][:3] = [due, oldest, leased]
        cursors: dict[str, int] = {
            channel: position for channel, position in conn.execute(select(c.channel, c.position))
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
