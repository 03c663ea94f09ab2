"""Tamper evidence for the event log: an HMAC chain over each aggregate's events.

Every stored event gets a *link*, kept beside it in `<events table>_chain` and written in
the same transaction (see `infrastructure.chained_recorders`):

    link(v) = HMAC-SHA256(chain key, id | v | position | topic | state | link(v - 1))

where `link(v - 1)` is the previous event of the same aggregate (none for its first
event, or when that one was stored before the chain existed). The position is the
event's place in the log, so moving an event is as visible as editing it. The chain key
is derived from a `DMLEDGER_SECRET_KEY` (HKDF), so rewriting events *and* their links
needs the deployment's secret. Each link names the key it was made with, so a rotated
key still verifies the links made before the rotation while it stays configured.

`ChainVerifier` walks the log in order and reports the first event whose chain breaks:
an edited event (its link does not match), a deleted one (a version missing, or a link
whose event is gone), a moved one (its link was made at another position) or an added
one (no link, after the chain began). Events stored before the chain existed are
counted as *unchained*, not as breaks.

The chain protects each aggregate's history and every event's position. It cannot tell
that an aggregate's newest events were deleted *together with* their links; an auditor
who keeps the head reported by `dmledger audit verify` can.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from application.audit import ChainBreak, ChainReport

_INFO = b"dmledger event chain v1"
_DOMAIN = b"dmledger-event-chain-v1\x00"
DIGEST_SIZE = 32


@dataclass(frozen=True)
class Link:
    """The stored chain link of one event."""

    originator_id: UUID
    version: int
    position: int
    """The event's position in the log when the link was made."""
    key_id: str
    digest: bytes


@dataclass(frozen=True)
class LinkedEvent:
    """A stored event as the log holds it now, with its link if it has one."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes
    link: Link | None


def _raw_key(fernet_key: str) -> bytes:
    return base64.urlsafe_b64decode(fernet_key.strip().encode())


class ChainKeyring:
    """The chain keys derived from the configured secret keys; the first one signs."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            msg = "the event chain needs at least one secret key"
            raise ValueError(msg)
        self._keys: dict[str, bytes] = {}
        self.signing_key_id = ""
        for secret in secret_keys:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
                _raw_key(secret)
            )
            key_id = hashlib.sha256(key).hexdigest()[:16]
            self._keys.setdefault(key_id, key)
            self.signing_key_id = self.signing_key_id or key_id

    def __repr__(self) -> str:
        return f"ChainKeyring(<{len(self._keys)} keys hidden>)"

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def digest(
        self,
        key_id: str,
        *,
        originator_id: UUID,
        version: int,
        position: int,
        topic: str,
        state: bytes,
        previous: bytes | None,
    ) -> bytes:
        """The link of an event, given the link of the aggregate's previous event."""
        mac = hmac.new(self._keys[key_id], _DOMAIN, hashlib.sha256)
        mac.update(originator_id.bytes)
        mac.update(struct.pack(">QQ", version, position))
        encoded_topic = topic.encode()
        mac.update(struct.pack(">I", len(encoded_topic)))
        mac.update(encoded_topic)
        mac.update(struct.pack(">Q", len(state)))
        mac.update(state)
        # A flag byte, so that "no previous link" can never equal some previous link.
        mac.update(b"\x01" + previous if previous is not None else b"\x00")
        return mac.digest()

    def links(
        self,
        events: Iterable[tuple[int, UUID, int, str, bytes]],
        previous: Callable[[UUID, int], bytes | None],
    ) -> list[Link]:
        """Links for (position, id, version, topic, state) of one insert, in order.

        `previous(id, version)` is the stored link of that version (for the first event
        of each aggregate in the insert); later ones chain to those made here.
        """
        made: dict[UUID, tuple[int, bytes]] = {}
        links = []
        for position, originator_id, version, topic, state in events:
            before = made.get(originator_id)
            if before is not None and before[0] == version - 1:
                prior: bytes | None = before[1]
            else:
                prior = previous(originator_id, version - 1) if version > 1 else None
            digest = self.digest(
                self.signing_key_id,
                originator_id=originator_id,
                version=version,
                position=position,
                topic=topic,
                state=state,
                previous=prior,
            )
            made[originator_id] = (version, digest)
            links.append(Link(originator_id, version, position, self.signing_key_id, digest))
        return links


class ChainedLog(Protocol):
    """What the verifier reads: the log with its links (a chained recorder)."""

    chain: ChainKeyring | None

    def select_linked(self, start: int, limit: int) -> Sequence[LinkedEvent]:
        """Events from position `start` on, in log order, each with its link."""
        ...

    def orphan_links(self) -> Sequence[Link]:
        """Links whose event is no longer in the log, in the order they were made."""
        ...

    def first_linked_position(self) -> int | None:
        """The position of the first event that got a link: where the chain began."""
        ...

    def max_notification_id(self) -> int | None: ...


Progress = Callable[[int, int], None]


class ChainVerifier:
    """Walks the log and checks every link (or those of some aggregates)."""

    def __init__(self, log: ChainedLog, keyring: ChainKeyring, *, page_size: int = 1000) -> None:
        self.log = log
        self.keyring = keyring
        self.page_size = page_size

    def verify(
        self,
        aggregate_ids: set[UUID] | None = None,
        *,
        also_topics: Iterable[str] = (),
        progress: Progress | None = None,
    ) -> ChainReport:
        """The first break in the chains of `aggregate_ids` (every aggregate if None).

        Events of `also_topics` are checked whatever their aggregate (the events that
        say which aggregates an account has must themselves be intact).
        """
        head = self.log.max_notification_id() or 0
        chain_began = self.log.first_linked_position()
        extra_topics = set(also_topics)

        def wanted(originator_id: UUID, topic: str) -> bool:
            return aggregate_ids is None or originator_id in aggregate_ids or topic in extra_topics

        # A link whose event is gone is a deletion, wherever the walk would reach it (links
        # and events commit together, so no link is ever legitimately without its event).
        orphan = next((o for o in self.log.orphan_links() if wanted(o.originator_id, "")), None)
        stop_at = orphan.position if orphan is not None else head

        report = ChainReport(head=head, chain_began_at=chain_began)
        last: dict[UUID, tuple[int, bytes | None]] = {}
        for event in self._walk(stop_at):
            if not wanted(event.originator_id, event.topic):
                # Still follow the aggregate's versions for the events we do check.
                last[event.originator_id] = (event.version, None)
                continue
            if aggregate_ids is not None and event.originator_id not in aggregate_ids:
                broken = self._check_alone(event, chain_began)
            else:
                broken = self._check(event, last.get(event.originator_id), chain_began)
            if broken is not None:
                report.broken = broken
                return report
            report.checked += 1
            report.last_position = event.position
            if event.link is None:
                report.unchained += 1
                last[event.originator_id] = (event.version, None)
            else:
                report.chained += 1
                last[event.originator_id] = (event.version, event.link.digest)
            if progress is not None and report.checked % self.page_size == 0:
                progress(event.position, head)
        if orphan is not None:
            report.broken = ChainBreak(
                position=orphan.position,
                aggregate_id=str(orphan.originator_id),
                version=orphan.version,
                kind="deleted",
                detail=(
                    f"version {orphan.version} of aggregate {orphan.originator_id}, recorded at "
                    f"position {orphan.position}, is missing from the events table"
                ),
            )
        if progress is not None:
            progress(head, head)
        return report

    def _walk(self, stop_at: int) -> Iterator[LinkedEvent]:
        start = 1
        while start <= stop_at:
            page = self.log.select_linked(start, self.page_size)
            for event in page:
                if event.position > stop_at:
                    return
                yield event
            if len(page) < self.page_size:
                return
            start = page[-1].position + 1

    def _check(
        self, event: LinkedEvent, last: tuple[int, bytes | None] | None, chain_began: int | None
    ) -> ChainBreak | None:
        expected_version = last[0] + 1 if last is not None else 1
        link = event.link
        if link is not None and link.position != event.position:
            return _break(
                event,
                "reordered",
                f"it was recorded at position {link.position}, but the log now has it at "
                f"position {event.position}",
            )
        if event.version < expected_version:
            return _break(
                event,
                "reordered",
                f"it comes after version {expected_version - 1} of the same aggregate",
            )
        if event.version > expected_version:
            missing = (
                f"version {expected_version}"
                if event.version == expected_version + 1
                else f"versions {expected_version} to {event.version - 1}"
            )
            return _break(
                event, "deleted", f"{missing} of this aggregate should come before it and do not"
            )
        previous = last[1] if last is not None else None
        return self._check_link(event, previous, chain_began)

    def _check_alone(self, event: LinkedEvent, chain_began: int | None) -> ChainBreak | None:
        """An event checked without its aggregate's history: only its own link."""
        link = event.link
        if link is not None and link.position != event.position:
            return self._check(event, None, chain_began)
        if link is None or event.version == 1:
            return self._check_link(event, None, chain_began)
        return None

    def _check_link(
        self, event: LinkedEvent, previous: bytes | None, chain_began: int | None
    ) -> ChainBreak | None:
        link = event.link
        if link is None:
            if chain_began is not None and event.position > chain_began:
                return _break(
                    event,
                    "unlinked",
                    "it has no chain link, yet it was stored after the chain began at "
                    f"position {chain_began} (added, or its link deleted)",
                )
            return None
        if not self.keyring.knows(link.key_id):
            return _break(
                event,
                "unknown-key",
                f"its link was made with chain key {link.key_id}, which none of the configured "
                "DMLEDGER_SECRET_KEY keys gives (was an old key removed?)",
            )
        expected = self.keyring.digest(
            link.key_id,
            originator_id=event.originator_id,
            version=event.version,
            position=event.position,
            topic=event.topic,
            state=event.state,
            previous=previous,
        )
        if not hmac.compare_digest(expected, link.digest):
            return _break(
                event,
                "altered",
                "its content does not match its chain link (the event, or one before it in "
                "the aggregate, was edited)",
            )
        return None


def _break(event: LinkedEvent, kind: str, why: str) -> ChainBreak:
    return ChainBreak(
        position=event.position,
        aggregate_id=str(event.originator_id),
        version=event.version,
        kind=kind,
        detail=f"version {event.version} of aggregate {event.originator_id} "
        f"({event.topic.split(':', 1)[-1]}) at position {event.position}: {why}",
    )
