"""The ledger: dmledger's eventsourcing application, one event log for accounts and conversations.

Accounts and their conversations share one application (one events table, one
notification log), so an account's whole history can be read in the order it was
recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import Notification, Recording

from application.content import ContentMapper, ContentVault
from application.eventsourcing_compat import HookedApplication
from domain import account as account_events
from domain import conversation as conversation_events
from domain import media as media_events
from domain.account import Account
from domain.conversation import Conversation, recorded_key
from domain.identity import account_id, conversation_id
from domain.media import Media


def owners_of(events: Iterable[DomainEventProtocol[UUID]]) -> dict[UUID, UUID]:
    """The account (its aggregate's id) of each account, conversation and media these events
    create: what an account's history holds (`application.audit`), for the store's
    account index. An account owns itself; other aggregates (API keys) have no owner."""
    owners: dict[UUID, UUID] = {}
    for event in events:
        if not isinstance(event, Aggregate.Created):
            continue
        if isinstance(event, Account.Event):
            owners[event.originator_id] = event.originator_id
        elif isinstance(event, Conversation.Event | Media.Event):
            owners[event.originator_id] = account_id(cast(Any, event).ig_account_id)
    return owners


class Ledger(HookedApplication):
    """Stores every event of every account and conversation."""

    # The name becomes table names and is stored: never change it.
    name = "dmledger"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env=env)
        self._commit_listeners: list[Callable[[], None]] = []
        self._account_listeners: list[Callable[[], None]] = []

    def construct_mapper(self) -> ContentMapper:
        """The library's mapper, sealing content once `use_vault` has given it a vault."""
        mapper = self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=ContentMapper
        )
        assert isinstance(mapper, ContentMapper)
        return mapper

    def use_vault(self, vault: ContentVault) -> None:
        """Seal the content of new message-bearing events, and open it for readers."""
        cast(ContentMapper, self.mapper).vault = vault

    @property
    def vault(self) -> ContentVault | None:
        """The content vault, if this ledger has one."""
        return cast(ContentMapper, self.mapper).vault

    def open_content(self, events: Iterable[Any], *, recent: bool = False) -> None:
        """Give these events read from the store their content back, or mark it erased;
        the data keys of all of them are read in one query (see `application.content`;
        `recent`: a projection runner's batch, which may use the keys this process sealed
        lately)."""
        cast(ContentMapper, self.mapper).open(events, recent=recent)

    def participant_profile(self, conversation: Any) -> dict[str, Any]:
        """What the user profile API last said of the conversation's participant, opened
        from its sealed event (`Conversation.profile_version`); {} if none, or erased."""
        version = getattr(conversation, "profile_version", None)
        if version is None:
            return {}
        found = list(self.events.get(conversation.id, gt=version - 1, lte=version))
        self.open_content(found)
        profile = getattr(found[0], "profile", None) if found else None
        return dict(profile) if isinstance(profile, dict) else {}

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each commit of this process (to wake the projection runners)."""
        self._commit_listeners.append(listener)

    def on_account_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each commit of this process that changed an account."""
        self._account_listeners.append(listener)

    def committed(self, recordings: list[Recording[UUID]]) -> None:
        """Tell the commit listeners, and the account listeners if an account changed."""
        for listener in self._commit_listeners:
            listener()
        if self._account_listeners and any(
            isinstance(r.domain_event, Account.Event) for r in recordings
        ):
            for listener in self._account_listeners:
                listener()

    # A snapshot store, written by the ledger writer (see application.eventsourcing_compat
    # for why not by the library). The repository then loads a long conversation from its
    # latest snapshot and the events after it, instead of replaying every event.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Conversation: 500, Media: 500}
    """Take a snapshot each time an aggregate's version passes a multiple of this."""

    @property
    def validates_reads(self) -> bool:
        """Whether `save(..., expected_versions={id: version})` is checked by the store.

        A store that checks it refuses the whole save with `RecordConflictError` when
        one of those aggregates has a stored event past that version; others ignore it.
        """
        return bool(getattr(self.recorder, "validates_reads", False))

    def before_record(self, processing_event: ProcessingEvent[UUID]) -> None:
        owners = owners_of(processing_event.events)
        if owners:
            processing_event.saved_kwargs["owners"] = owners
        item_keys = [
            (event.originator_id, *found)
            for event in processing_event.events
            if (found := recorded_key(event)) is not None
        ]
        if item_keys:
            processing_event.saved_kwargs["item_keys"] = item_keys

    def recorded_keys(
        self, asked: Mapping[UUID, Collection[str]]
    ) -> dict[UUID, dict[str, int | None]]:
        """Which of these keys each conversation has recorded, with their values.

        Asked of the store's index of keys in one query (`infrastructure.item_keys`); a
        store without one (`memory://`) has each conversation's events read instead."""
        wanted = {a: list(keys) for a, keys in asked.items() if keys}
        in_one_query = getattr(self.recorder, "select_item_keys", None)
        if in_one_query is not None:
            return cast(dict[UUID, dict[str, int | None]], in_one_query(wanted))
        found: dict[UUID, dict[str, int | None]] = {}
        for aggregate_id, keys in wanted.items():
            for stored in self.events.get(aggregate_id):
                recorded = recorded_key(stored)
                if recorded is not None and recorded[0] in keys:
                    found.setdefault(aggregate_id, {})[recorded[0]] = recorded[1]
        return found

    def record(self, events: Sequence[DomainEventProtocol[UUID]], **kwargs: Any) -> None:
        """Store these new events in one insert, and tell the commit listeners.

        What `save` does for events, without its per-object `isinstance` against
        runtime-checkable protocols (a few percent of the ledger writer's time)."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        processing_event.events.extend(events)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self.record_events(processing_event)
        if recordings:
            # Only news wakes the projection runners: a batch of decisions that stored
            # nothing (most messages match no rule) would wake all of them again.
            self.committed(recordings)

    def stored_versions(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, int]:
        """The version of each of these aggregates in the store now; absent ones are left out."""
        ids = list(aggregate_ids)
        in_one_query = getattr(self.recorder, "stored_versions", None)
        if in_one_query is not None:
            return cast(dict[UUID, int], in_one_query(ids))
        found: dict[UUID, int] = {}
        for aggregate_id in ids:
            for stored in self.recorder.select_events(aggregate_id, desc=True, limit=1):
                found[aggregate_id] = stored.originator_version
        return found

    def find(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate with this id as stored now, or None."""
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate

    def account(self, ig_account_id: str) -> Account | None:
        """The registered account with this Instagram id, or None."""
        found = self.find(account_id(ig_account_id))
        return found if isinstance(found, Account) else None

    def accounts(self) -> list[Account]:
        """Every registered account, in the order they were registered."""
        return [a for a in self.aggregates(account_events.REGISTERED) if isinstance(a, Account)]

    def aggregates(self, created_topic: str) -> list[Aggregate]:
        """Every aggregate created by an event of this topic, in the order they were created."""
        found = (
            self.find(cast(UUID, n.originator_id))
            for n in self._notifications(topics=[created_topic])
        )
        return [aggregate for aggregate in found if aggregate is not None]

    def conversation_ids(self, ig_account_id: str) -> list[UUID]:
        """Ids of the account's conversations, in the order they started."""
        ids: list[UUID] = []
        for notification in self._notifications(topics=[conversation_events.STARTED]):
            started = self.mapper.to_domain_event(notification)  # no content to open
            if getattr(started, "ig_account_id", None) == ig_account_id:
                ids.append(cast(UUID, notification.originator_id))
        return ids

    def commenter_conversation_ids(self, ig_account_id: str) -> list[UUID]:
        """Ids of the conversations whose data keys seal the account's comments (one a
        commenter, whether or not they ever wrote: `domain.content.content_owner`)."""
        ids: dict[UUID, None] = {}
        for notification in self._notifications(topics=[media_events.COMMENT_RECEIVED]):
            received = self.mapper.to_domain_event(notification)  # its ids are in clear
            if getattr(received, "ig_account_id", None) == ig_account_id:
                ids[conversation_id(ig_account_id, cast(Any, received).author_id)] = None
        return list(ids)

    def account_history(self, ig_account_id: str) -> Iterator[tuple[int, Aggregate.Event]]:
        """Every event of the account and its conversations, in log order, with its position."""
        own_ids = {account_id(ig_account_id), *self.conversation_ids(ig_account_id)}
        page: list[tuple[int, Aggregate.Event]] = []
        for notification in self._notifications():
            if notification.originator_id in own_ids:
                page.append((notification.id, self.mapper.to_domain_event(notification)))  # type: ignore[arg-type]
            if len(page) >= 500:
                self.open_content(e for _, e in page)
                yield from page
                page = []
        self.open_content(e for _, e in page)
        yield from page

    def _notifications(self, topics: list[str] | None = None) -> Iterator[Notification]:
        start = 1
        while True:
            page = self.recorder.select_notifications(start=start, limit=500, topics=topics or ())
            yield from page
            if len(page) < 500:
                return
            start = page[-1].id + 1
