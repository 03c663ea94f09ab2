"""The content vault: a message's content sealed under a data key of its own, opened in
batches, and gone for good once its key is destroyed (crypto-shredding).

Writing: `ContentMapper.to_stored_event` takes the content fields of a message-bearing
event (`domain.content.CONTENT_FIELDS`) out of its stored state and puts them back as one
sealed blob, `content = {"key": <data key id>, "sealed": <base64 AES-GCM ciphertext>}`,
bound to the event's aggregate and version. The new data key (wrapped by the secret keys)
rides on the stored event (`KeyedStoredEvent.new_keys`), and so do the keys an event
destroys (`shreds`: an unsend, an erasure, an expiry); the ledger's recorder writes both
in the transaction that inserts the events (`infrastructure/content_keys.py`). The hash
chain covers the stored bytes, ciphertext included, so destroying a key never breaks it.

Reading: `to_domain_event` leaves the blob sealed and gives the content fields their
erased values, so aggregates replay without ever needing a key. A reader that shows
content calls `ContentVault.open(events)` on a batch: the keys of the whole batch are read
in one query, each event gets its content back, or, if its key is gone, the erased values
and `content == {"erased": true}`. The sealed blob never leaves.

Events stored before this vault existed hold their content in clear and no `content`
field: they are read as they always were. So is everything a ledger without a vault
stores (memory persistence, or a ledger built outside the composition root).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from cachetools import LRUCache
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from application.ports import ContentCipher, ContentKeyStore
from domain import account as account_topics
from domain import conversation as conversation_topics
from domain import media as media_topics
from domain.content import CONTENT_FIELDS, ERASED, content_owner, erased_fields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewKey:
    """A data key to store with its event."""

    key_id: str
    conversation_id: str
    mid: str | None
    """The message it seals (None for a referral or an unknown item)."""
    recorded_at: int
    """When its event was recorded (ms): what retention counts from."""
    wrapped: str


@dataclass(frozen=True)
class Shred:
    """Data keys to destroy with an event: those of these conversations, only of one
    message (`mid`) or only recorded before a time (`before_ms`) if given."""

    conversation_ids: tuple[str, ...]
    mid: str | None = None
    before_ms: int | None = None


@dataclass(frozen=True)
class KeyedStoredEvent(StoredEvent):
    """A stored event with the data keys its insert stores and destroys."""

    new_keys: tuple[NewKey, ...] = ()
    shreds: tuple[Shred, ...] = ()


def shreds_of(topic: str, state: dict[str, Any], conversation_id: str) -> tuple[Shred, ...]:
    """The data keys an event destroys: an unsend its message's (and its edits'), an
    erasure the conversation's, an expiry the old ones of the conversations it names."""
    if topic == conversation_topics.MESSAGE_UNSENT:
        return (Shred((conversation_id,), mid=state["mid"]),)
    if topic == conversation_topics.PARTICIPANT_ERASED:
        return (Shred((conversation_id,)),)
    if topic == account_topics.CONTENT_EXPIRED:
        return (Shred(tuple(state["conversation_ids"]), before_ms=state["before"]),)
    if topic == media_topics.COMMENT_REMOVED:
        # A deleted comment's key (and its edits') is its commenter's conversation's.
        owner = content_owner(media_topics.COMMENT_RECEIVED, state)
        assert owner is not None
        return (Shred((owner[0],), mid=owner[1]),)
    return ()


def _context(originator_id: Any, version: int, key_id: str) -> bytes:
    return f"{originator_id}:{version}:{key_id}".encode()


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and "sealed" in value and "key" in value


RECENT_KEYS = 5_000
"""Data keys this process sealed and its projection runners have not opened yet, at most
(about 360 bytes each: 1.8 MB when full). Each is let go as the runners first open it (the
shared reading keeps the opened event for all of them), so it holds the events between
the writer and the runners, ~100 at P1 (lag p99 ~100 ms); it fills only in a process
whose runners stop or fall seconds behind. A runner further behind asks the key table,
as any reader does."""


class ContentVault:
    """Seals content under new data keys and opens batches of events (see the module).

    The projection runners of the process that stored an event read it a moment later:
    the data keys this process sealed lately are kept (`recent`), so that the four runners
    do not each query the key table for every small batch (four queries a webhook). A
    runner may so open content whose key another process destroyed since; it then applies
    the destroying event, which comes later in the log, and drops it, as it would had it
    read the message before the destroying event was stored. A kept key is let go once it
    opened an event for the runners: the shared reading (`projections.shared_reading`)
    keeps that event opened for all of them, and at P1's load the 5,000 keys kept until
    they were pushed out were 1.8 MB of a web worker's memory (P6). Readers whose content
    leaves (the REST API, the events stream, replay) always ask the key table. A
    destroying event stored by this process empties the kept keys.

    A process whose runners are elsewhere (`serve --no-projections`) keeps none
    (`keeps_recent` False): no runner of its would ever let them go."""

    keeps_recent: bool = True
    """Whether keys sealed here are kept for this process's runners."""

    def __init__(self, cipher: ContentCipher, keys: ContentKeyStore) -> None:
        self.cipher = cipher
        self.keys = keys
        self._recent: LRUCache[str, str] = LRUCache(maxsize=RECENT_KEYS)
        self._recent_lock = threading.Lock()

    def forget_recent(self) -> None:
        """Keys were destroyed: no kept key may stand for one that is gone."""
        with self._recent_lock:
            self._recent.clear()

    def seal(
        self, transcoder: Any, event_state: dict[str, Any], topic: str, version: int
    ) -> NewKey:
        """Replace the content fields of `event_state` by a sealed blob; its new data key.

        An event without content is sealed too, so that every message-bearing event reads
        the same way once its key is destroyed (which read models rely on)."""
        content = {
            name: event_state.pop(name, value) for name, value in CONTENT_FIELDS[topic].items()
        }
        key, wrapped = self.cipher.new_key()
        key_id = uuid4().hex
        originator_id = event_state["originator_id"]
        sealed = self.cipher.seal(
            key, transcoder.encode(content), _context(originator_id, version, key_id)
        )
        event_state["content"] = {"key": key_id, "sealed": base64.b64encode(sealed).decode()}
        if self.keeps_recent:
            with self._recent_lock:
                self._recent[key_id] = wrapped
        timestamp = event_state.get("timestamp")
        owner = content_owner(topic, event_state)
        return NewKey(
            key_id=key_id,
            conversation_id=owner[0] if owner else str(originator_id),
            mid=owner[1] if owner else event_state.get("mid"),
            recorded_at=int(timestamp.timestamp() * 1000) if timestamp is not None else 0,
            wrapped=wrapped,
        )

    def open(self, transcoder: Any, events: Iterable[Any], *, recent: bool = False) -> None:
        """Give each sealed event of the batch its content back, or mark it erased.

        One query reads the keys of the whole batch; with `recent` (a projection runner),
        only those this process did not seal lately, and a key sealed lately is let go as
        it is used (see the class)."""
        sealed = [e for e in events if _is_sealed(getattr(e, "content", None))]
        if not sealed:
            return
        wanted = {e.content["key"] for e in sealed}
        wrapped: dict[str, str] = {}
        if recent:
            with self._recent_lock:
                for key_id in wanted:
                    found = self._recent.pop(key_id, None)
                    if found is not None:
                        wrapped[key_id] = found
            wanted -= wrapped.keys()
        if wanted:
            wrapped.update(self.keys.wrapped_keys(sorted(wanted)))
        for event in sealed:
            state = event.__dict__
            blob = state["content"]
            key = wrapped.get(blob["key"])
            if key is None:
                state["content"] = dict(ERASED)
                state["content_key"] = blob["key"]
                continue
            plaintext = self.cipher.open(
                key,
                base64.b64decode(blob["sealed"]),
                _context(event.originator_id, event.originator_version, blob["key"]),
            )
            state.update(transcoder.decode(plaintext))
            del state["content"]
            # Which key opened it: a delivery of this content checks it still exists.
            state["content_key"] = blob["key"]


class ContentMapper(Mapper[UUID]):
    """The ledger's mapper: seals content on the way in when it has a vault (see the module)."""

    vault: ContentVault | None = None

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        topic = get_topic(type(domain_event))
        vault = self.vault
        if vault is None or (
            topic not in CONTENT_FIELDS
            and topic
            not in (
                conversation_topics.MESSAGE_UNSENT,
                conversation_topics.PARTICIPANT_ERASED,
                account_topics.CONTENT_EXPIRED,
                media_topics.COMMENT_REMOVED,
            )
        ):
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        new_keys: tuple[NewKey, ...] = ()
        if topic in CONTENT_FIELDS:
            new_keys = (vault.seal(self.transcoder, state, topic, domain_event.originator_version),)
        shreds = shreds_of(topic, state, str(domain_event.originator_id))
        if shreds:
            vault.forget_recent()
        # The library's mapping, of the event as it is to be stored.
        stand_in = object.__new__(type(domain_event))
        object.__setattr__(stand_in, "__dict__", state)
        stored = super().to_stored_event(stand_in)
        return KeyedStoredEvent(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stored.topic,
            state=stored.state,
            new_keys=new_keys,
            shreds=shreds,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        domain_event = super().to_domain_event(stored_event)
        state = domain_event.__dict__
        if _is_sealed(state.get("content")):
            fields = CONTENT_FIELDS.get(stored_event.topic)
            if fields is not None:
                # The aggregate replays without its content (it keeps none).
                for name, value in erased_fields(stored_event.topic).items():
                    state.setdefault(name, value)
        return domain_event

    def open(self, events: Iterable[Any], *, recent: bool = False) -> None:
        """Open the content of these events, read from the store (see `ContentVault.open`)."""
        if self.vault is not None:
            self.vault.open(self.transcoder, events, recent=recent)
            return
        # No vault, no keys: what is sealed cannot be read here, and never leaves sealed.
        for event in events:
            if _is_sealed(getattr(event, "content", None)):
                event.__dict__["content"] = dict(ERASED)
