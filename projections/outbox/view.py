"""The outbox tables: what must leave dmledger, as the log says.

`outbox` rows are written by the projection, from events: one per reply to send and one per
notification to the account's CRM. Row ids come from the events, so a rebuilt outbox has
the same rows. What becomes of each delivery (leases, attempts, outcomes) is the
dispatcher's, kept by the delivery queue (`infrastructure/delivery_queue.py`) in tables of
its own that survive a rebuild: what was delivered is not sent again.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
)

from application.storable import ID_LENGTH
from projections.schema import metadata
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
    Column("content_key", String(32)),
    Column("profile_recorded_at", BigInteger),
    Index("outbox_due", "channel", "outcome", "position"),
    Index("outbox_by_conversation", "conversation_id", "position"),
)
"""A row per delivery; `outcome` is set from events (`ReplySent`, a final `ReplyFailed`).
`content_key`: the data key of the content its body carries (a message's, a reply's), which
the dispatcher checks before sending; `profile_recorded_at`: when the participant's profile
its body names was recorded (ms), for the account's retention."""

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
    Column("participant_id", String(ID_LENGTH), nullable=False),
    Column("crm_sequence", Integer, nullable=False),
    Column("last_inbound_at", BigInteger),
)
"""Each conversation's account and participant, its last CRM sequence number, and when
the participant last wrote (Meta's time, ms): the reply windows start there."""


participant_profiles = Table(
    "outbox_participant_profiles",
    metadata,
    Column("conversation_id", String(36), primary_key=True),
    Column("username", Text),
    Column("name", Text),
    Column("recorded_at", BigInteger),
)
"""What each CRM notification of a conversation says of its participant besides the id,
once the user profile API told (`ParticipantProfileRecorded`)."""


class OutboxView(SqlView):
    """The outboxes, and when each participant last wrote."""

    name = "outbox"
    version = 2  # 2: content keys, profiles' times; replies and profiles erased
    tables = (outbox, crm_subscriptions, conversation_parties, participant_profiles)
    notify = "dmledger_outbox"
    announced = (outbox,)
    """Only new or finished deliveries concern the dispatcher, not the parties' times."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._on_replaced: list[Callable[[Connection], None]] = []

    def when_replaced(self, listener: Callable[[Connection], None]) -> None:
        """Call `listener` in the transaction that drops or swaps in this view's rows (the
        delivery queue adopts the outbox from its start again)."""
        self._on_replaced.append(listener)

    def replaced(self, conn: Connection) -> None:
        for listener in self._on_replaced:
            listener(conn)

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

    def notify_channel(self) -> str:
        return "dmledger_outbox"
