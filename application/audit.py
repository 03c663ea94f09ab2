"""What an auditor reads: an account's events in log order, and a conversation as of a moment.

An account's history is the events of its `Account` aggregate and of every conversation
it has, in the order the log recorded them. The store keeps an index of each account's
events (`ports.AccountIndex`, written with the events): a history is read from it in
pages, so its cost grows with the account's events, not with the log. A store without
one (memory), or whose index does not cover the log yet (a log stored before it existed,
until `dmledger audit index`), is read the old way: conversations found by their
`Started` events (a topic-filtered read of the log), then the whole log read in pages and
filtered by aggregate. Either way a history of any length is streamed without being held
in memory, and each read stops at the head of the log as it was when the read began, so
one export is one consistent prefix of the log.

Over 300 lines: the history, the events of one conversation and the ndjson export share
the paged, head-bounded read of the log; the chain's report types are here because the
CLI and the HTTP API both return them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification

from application.errors import InvalidInput, NotFound
from application.ledger import Ledger
from application.ports import AccountIndex
from domain import account as account_events
from domain import conversation as conversation_events
from domain import media as media_events
from domain.account import CREDENTIALS
from domain.content import CONTENT_FIELDS, is_erased
from domain.identity import account_id

log = logging.getLogger(__name__)

TOPIC_PREFIX = "dmledger:"
PAGE_SIZE = 500

Progress = Callable[[int, int], None]
"""Called with (position reached, head of the log) as a read goes on."""

SECRET_FIELDS = frozenset({*CREDENTIALS, "secret", "secret_hash"})
"""Every field of a stored event that holds a secret: the account's credentials
(`Account.Registered`, `.CredentialsRotated`, `.CredentialsReencrypted`), the CRM
endpoint's signing secret (`Account.CrmEndpointSet`) and an API key's hash (`ApiKey.Issued`).
They are stored as ciphertext (the hash as a hash), which still has no place on a terminal
or in an export. `tests/unit/test_audit_log.py` fails when an event gains a field whose name
looks like a secret and is not listed here or there as harmless."""

REDACTED = "<redacted>"


class AuditEvent(msgspec.Struct, frozen=True):
    """One stored event as an auditor sees it; credentials in it are ciphertext."""

    position: int
    """Its place in the log (the notification id)."""
    aggregate_id: str
    version: int
    """Its place in its aggregate's history (1 for the event that created it)."""
    type: str
    """Its stored topic without the `dmledger:` prefix, e.g. `Conversation.MessageReceived`."""
    timestamp: datetime
    """When dmledger recorded it (UTC)."""
    data: dict[str, Any]
    """Everything else the event holds, as stored."""

    @classmethod
    def of(cls, position: int, event: Aggregate.Event) -> AuditEvent:
        data = dict(vars(event))
        for name in (
            "originator_id",
            "originator_version",
            "timestamp",
            "originator_topic",
            "content_key",  # which data key opened it: not part of the event
        ):
            data.pop(name, None)
        if is_erased(event):
            # Its content is gone: `"content": {"erased": true}` says so, not empty fields.
            for name in CONTENT_FIELDS.get(TOPIC_PREFIX + type_of(event), {}):
                data.pop(name, None)
        return cls(
            position=position,
            aggregate_id=str(event.originator_id),
            version=event.originator_version,
            type=type_of(event),
            timestamp=event.timestamp,
            data=data,
        )

    def redacted(self) -> AuditEvent:
        """The event with the value of every secret field replaced by `<redacted>`."""
        return msgspec.structs.replace(self, data=redacted(self.data))


def redacted(value: Any) -> Any:
    """`value` with the value of every `SECRET_FIELDS` key, at any depth, `<redacted>`."""
    if isinstance(value, dict):
        return {
            key: REDACTED if key in SECRET_FIELDS and item is not None else redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value


class ChainBreak(msgspec.Struct, frozen=True, kw_only=True):
    """The first place where the hash chain does not hold."""

    position: int
    kind: str
    """altered, deleted, reordered, unlinked (no link after the chain began), no-chain
    (events, but no link and no genesis), no-genesis, unknown-key; against a checkpoint
    also truncated and not-extended."""
    detail: str
    aggregate_id: str | None = None
    """The event's aggregate (None for a break of the genesis or of a checkpoint)."""
    version: int | None = None


class ChainReport(msgspec.Struct):
    """What a walk over the log's hash chain found."""

    head: int
    """The last position of the log when the walk began."""
    chain_began_at: int | None
    """Where the genesis says the chain began (None: there is no genesis)."""
    checked: int = 0
    chained: int = 0
    unchained: int = 0
    """Events stored before the chain began: reported, not failed."""
    last_position: int = 0
    extends: int | None = None
    """The position of the checkpoint the log was found to extend, if one was given."""
    broken: ChainBreak | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None


_OWNED = [conversation_events.STARTED, media_events.STARTED]
"""What starts an aggregate an account owns, besides the account itself."""


def type_of(event: Any) -> str:
    """An event's type as the audit API names it."""
    topic: str = type(event).TOPIC
    return topic.removeprefix(TOPIC_PREFIX)


def event_types() -> list[str]:
    """Every event type dmledger stores, as the audit API names them."""
    found: set[str] = set()
    pending: list[type[Any]] = [Aggregate.Event]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        topic = cls.__dict__.get("TOPIC")
        if isinstance(topic, str) and topic.startswith(TOPIC_PREFIX):
            name = topic.removeprefix(TOPIC_PREFIX)
            # The bases every aggregate declares ("Conversation.Event", ".Created") are
            # never stored themselves.
            if not name.endswith((".Event", ".Created")):
                found.add(name)
    return sorted(found)


def parse_types(given: Iterable[str] | None) -> list[str] | None:
    """Event types from `types` values (each may be comma-separated); 422 for unknown ones."""
    if given is None:
        return None
    wanted = [t.strip() for value in given for t in value.split(",") if t.strip()]
    if not wanted:
        return None
    known = event_types()
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise InvalidInput(
            "types", f"unknown event type {', '.join(unknown)}; known types: {', '.join(known)}"
        )
    return wanted


class AuditLog:
    """Reads an account's history from the ledger, for auditors."""

    def __init__(self, ledger: Ledger, *, page_size: int = PAGE_SIZE) -> None:
        self.ledger = ledger
        self.page_size = page_size

    def head(self) -> int:
        """The last position of the log now."""
        return self.ledger.recorder.max_notification_id() or 0

    def index(self) -> AccountIndex | None:
        """The store's account index, if it has one that covers the whole log."""
        recorder = self.ledger.recorder
        if isinstance(recorder, AccountIndex) and recorder.account_index_built():
            return recorder
        return None

    def build_index(self, progress: Progress | None = None) -> int:
        """Index the whole log by account (for a log stored before the index existed);
        the number of aggregates found to belong to an account. Safe to run again."""
        recorder = self.ledger.recorder
        if not isinstance(recorder, AccountIndex):
            raise InvalidInput("database", "this store keeps no account index (memory://)")
        owners: dict[UUID, UUID] = {}
        topics = [account_events.REGISTERED, conversation_events.STARTED, media_events.STARTED]
        for notification in self._notifications(1, stop=None, topics=topics, progress=progress):
            created = self._decode(notification)
            ig_account_id = getattr(created, "ig_account_id", None)
            if isinstance(ig_account_id, str):
                owners[cast(UUID, notification.originator_id)] = account_id(ig_account_id)
        recorder.build_account_index(owners)
        return len(owners)

    def aggregate_ids(self, ig_account_id: str, *, stop: int | None = None) -> set[UUID]:
        """The account's aggregate, its conversations and its media (as started up to `stop`)."""
        ids = {account_id(ig_account_id)}
        index = self.index()
        if index is not None:
            started = self._account_notifications(index, ig_account_id, 1, stop=stop, topics=_OWNED)
            ids.update(cast(UUID, n.originator_id) for n in started)
            return ids
        for notification in self._notifications(1, stop=stop, topics=_OWNED):
            event = self._decode(notification)
            if getattr(event, "ig_account_id", None) == ig_account_id:
                ids.add(cast(UUID, notification.originator_id))
        return ids

    def history(
        self,
        ig_account_id: str,
        *,
        after: int = 0,
        until: datetime | None = None,
        types: list[str] | None = None,
        stop: int | None = None,
        progress: Progress | None = None,
    ) -> Iterator[tuple[int, Aggregate.Event]]:
        """The account's events after position `after`, recorded at or before `until`,
        of `types` only (all if None), up to position `stop` (the head if None)."""
        if until is not None and until.tzinfo is None:
            raise InvalidInput("until", "until needs a time zone (RFC 3339)")
        head = self.head() if stop is None else stop
        topics = [TOPIC_PREFIX + t for t in types] if types else None
        index = self.index()
        notifications: Iterator[Notification]
        if index is not None:
            notifications = self._account_notifications(
                index, ig_account_id, after + 1, stop=head, topics=topics, progress=progress
            )
        else:
            ids = self.aggregate_ids(ig_account_id, stop=head)
            notifications = (
                n
                for n in self._notifications(after + 1, stop=head, topics=topics, progress=progress)
                if n.originator_id in ids
            )
        found: list[tuple[int, Aggregate.Event]] = []
        for notification in notifications:
            event = self._decode(notification)
            if event is None:
                continue
            # Not a stop condition: commit order and record time can disagree a little
            # across processes, so every event up to the head is looked at.
            if until is not None and event.timestamp > until:
                continue
            found.append((notification.id, event))
            if len(found) >= self.page_size:
                self.ledger.open_content(e for _, e in found)  # one key query a page
                yield from found
                found = []
        self.ledger.open_content(e for _, e in found)
        yield from found

    def events(
        self,
        ig_account_id: str,
        *,
        after: int = 0,
        until: datetime | None = None,
        types: list[str] | None = None,
        stop: int | None = None,
        progress: Progress | None = None,
    ) -> Iterator[AuditEvent]:
        """`history` as `AuditEvent`s."""
        for position, event in self.history(
            ig_account_id, after=after, until=until, types=types, stop=stop, progress=progress
        ):
            yield AuditEvent.of(position, event)

    def ndjson(
        self,
        ig_account_id: str,
        *,
        after: int = 0,
        until: datetime | None = None,
        types: list[str] | None = None,
        stop: int | None = None,
        lines_per_chunk: int = PAGE_SIZE,
    ) -> Iterator[bytes]:
        """`events` as NDJSON, several lines to a chunk (each chunk is one write)."""
        encoder = msgspec.json.Encoder()
        chunk = bytearray()
        lines = 0
        records = self.events(ig_account_id, after=after, until=until, types=types, stop=stop)
        for record in records:
            encoder.encode_into(record, chunk, len(chunk))
            chunk += b"\n"
            lines += 1
            if lines >= lines_per_chunk:
                yield bytes(chunk)
                chunk.clear()
                lines = 0
        if chunk:
            yield bytes(chunk)

    def conversation_events(
        self,
        ig_account_id: str,
        conversation_id: UUID,
        *,
        at: datetime | None = None,
        version: int | None = None,
    ) -> list[Aggregate.Event]:
        """A conversation's events up to `version`, or recorded at or before `at`.

        404 if the conversation is not this account's or did not exist yet then; 422 for
        a version it never had, or for both `at` and `version`.
        """
        if at is not None and version is not None:
            raise InvalidInput("version", "give either at or version, not both")
        if at is not None and at.tzinfo is None:
            raise InvalidInput("at", "at needs a time zone (RFC 3339)")
        if version is not None and version < 1:
            raise InvalidInput("version", "version counts from 1 (the conversation's start)")
        events = cast(
            list[Aggregate.Event],
            list(self.ledger.events.get(conversation_id, lte=version)),
        )
        if (
            not events
            or getattr(type(events[0]), "TOPIC", None) != conversation_events.STARTED
            or getattr(events[0], "ig_account_id", None) != ig_account_id
        ):
            raise NotFound(f"there is no conversation {conversation_id} in this account")
        if version is not None and events[-1].originator_version < version:
            raise InvalidInput(
                "version",
                f"the conversation has {events[-1].originator_version} versions, not {version}",
            )
        if at is not None:
            events = [e for e in events if e.timestamp <= at]
            if not events:
                raise NotFound(f"conversation {conversation_id} had not started at {at}")
        self.ledger.open_content(events)
        return events

    def _notifications(
        self,
        start: int,
        *,
        stop: int | None,
        topics: list[str] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Notification]:
        head = stop if stop is not None else self.head()
        while start <= head:
            page = self.ledger.recorder.select_notifications(
                start=start, limit=self.page_size, stop=head, topics=topics or ()
            )
            yield from page
            if progress is not None:
                progress(page[-1].id if page else head, head)
            if len(page) < self.page_size:
                return
            start = page[-1].id + 1
        if progress is not None:
            progress(head, head)

    def _account_notifications(
        self,
        index: AccountIndex,
        ig_account_id: str,
        start: int,
        *,
        stop: int | None,
        topics: list[str] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Notification]:
        head = stop if stop is not None else self.head()
        owner = account_id(ig_account_id)
        while start <= head:
            page = index.select_account_notifications(
                owner, start, head, self.page_size, topics or ()
            )
            yield from page
            if progress is not None:
                progress(page[-1].id if page else head, head)
            if len(page) < self.page_size:
                break
            start = page[-1].id + 1
        if progress is not None:
            progress(head, head)

    def _decode(self, notification: Notification) -> Aggregate.Event | None:
        try:
            return cast(Aggregate.Event, self.ledger.mapper.to_domain_event(notification))
        except Exception as error:
            log.warning(
                "audit: cannot decode the event at position %d (%s): %s",
                notification.id,
                notification.topic,
                error,
            )
            return None
