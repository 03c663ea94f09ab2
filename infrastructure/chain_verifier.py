"""The verifier of the event log's hash chain (see `infrastructure.event_chain`).

`ChainVerifier` walks the log in order and reports the first break: an edited event
(its link does not match), a deleted one (a version missing, a link whose event is
gone, or a link naming a previous event of the log that is not there), a moved one (its
link was made at another position) or an added one (no link, after the genesis says the
chain began). A log holding events but neither links nor a genesis is a break too: the
chain was deleted, or nothing that chains ever wrote to it. Events stored before the
chain began are counted as *unchained*, not as breaks.

Against a checkpoint an auditor kept, the log must still hold the checkpoint's event with
the same link, from a chain begun at the same place: so deleting the newest events (and
their links), or the whole chain and its genesis, shows too.

Checking some aggregates (one account) checks their own chains, and each of their
events' log links against the link of the event before it as stored: a deletion
elsewhere in the log shows only when the whole log is checked.

Over 300 lines: one walk, whose checks (link, genesis, the log's previous event, a
checkpoint) each name one kind of break; what a link is, is in `infrastructure/event_chain.py`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator
from uuid import UUID

from application.audit import ChainBreak, ChainReport
from infrastructure.event_chain import ChainedLog, ChainKeyring, Checkpoint, Genesis, LinkedEvent

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
        against: Checkpoint | None = None,
    ) -> ChainReport:
        """The first break in the chains of `aggregate_ids` (every aggregate if None).

        Events of `also_topics` are checked whatever their aggregate (the events that
        say which aggregates an account has must themselves be intact). `against` is a
        checkpoint the log must extend (checked only over the whole log).
        """
        head = self.log.max_notification_id() or 0
        genesis = self.log.chain_tail().genesis
        report = ChainReport(head=head, chain_began_at=genesis.began_at if genesis else None)
        report.broken = self._check_genesis(genesis)
        if report.broken is not None:
            return report
        extra_topics = set(also_topics)

        def wanted(originator_id: UUID, topic: str) -> bool:
            return aggregate_ids is None or originator_id in aggregate_ids or topic in extra_topics

        # A link whose event is gone is a deletion, wherever the walk would reach it (links
        # and events commit together, so no link is ever legitimately without its event).
        orphans = self.log.orphan_links()
        orphan = next((o for o in orphans if wanted(o.originator_id, "")), None)
        stop_at = orphan.position if orphan is not None else head

        walk = _Walk(
            self.keyring,
            genesis,
            whole=aggregate_ids is None,
            orphan_links={o.position: o.digest for o in orphans},
        )
        at_checkpoint: LinkedEvent | None = None
        for event in self._walk(stop_at):
            if against is not None and event.position == against.position:
                at_checkpoint = event
            if not wanted(event.originator_id, event.topic):
                walk.follow(event, checked=False)
                continue
            alone = aggregate_ids is not None and event.originator_id not in aggregate_ids
            broken = walk.check(event, alone=alone)
            if broken is not None:
                report.broken = broken
                return report
            report.checked += 1
            report.last_position = event.position
            if event.link is None:
                report.unchained += 1
            else:
                report.chained += 1
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
        elif against is not None:
            report.broken = _check_against(against, genesis, head, at_checkpoint)
            if report.broken is None:
                report.extends = against.position
        if progress is not None:
            progress(head, head)
        return report

    def _check_genesis(self, genesis: Genesis | None) -> ChainBreak | None:
        if genesis is None:
            return None
        if not self.keyring.knows(genesis.key_id):
            return ChainBreak(
                position=genesis.began_at,
                kind="unknown-key",
                detail=f"the chain's genesis was signed with chain key {genesis.key_id}, which "
                "none of the configured DMLEDGER_SECRET_KEY keys gives (was an old key removed?)",
            )
        if not self.keyring.genesis_holds(genesis):
            return ChainBreak(
                position=genesis.began_at,
                kind="altered",
                detail="the chain's genesis record (where the chain began) does not match its "
                "signature",
            )
        return None

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


class _Walk:
    """The state of one walk: each aggregate's last event, and the log's last link."""

    def __init__(
        self,
        keyring: ChainKeyring,
        genesis: Genesis | None,
        *,
        whole: bool,
        orphan_links: dict[int, bytes],
    ) -> None:
        self.keyring = keyring
        self.genesis = genesis
        self.whole = whole
        self.orphan_links = orphan_links
        self.last: dict[UUID, tuple[int, bytes | None]] = {}
        """Each aggregate's last version walked, and its link if it was checked."""
        self.last_log: tuple[int, bytes] | None = None
        """Position and link of the last event walked that is linked to the log chain."""

    def follow(self, event: LinkedEvent, *, checked: bool) -> None:
        link = event.link
        digest = link.digest if link is not None and checked else None
        self.last[event.originator_id] = (event.version, digest)
        if link is not None and link.previous_position is not None:
            self.last_log = (event.position, link.digest)

    def check(self, event: LinkedEvent, *, alone: bool) -> ChainBreak | None:
        """The break at `event`, if any; `alone`: checked without its aggregate's history."""
        broken = self._check(event, alone=alone)
        if broken is None:
            self.follow(event, checked=True)
        return broken

    def _check(self, event: LinkedEvent, *, alone: bool) -> ChainBreak | None:
        link = event.link
        if link is not None and link.position != event.position:
            return _break(
                event,
                "reordered",
                f"it was recorded at position {link.position}, but the log now has it at "
                f"position {event.position}",
            )
        if alone:
            if link is not None and event.version > 1:
                return None  # its link chains to an aggregate this walk does not check
            return self._check_link(event, None)
        last = self.last.get(event.originator_id)
        expected_version = last[0] + 1 if last is not None else 1
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
        return self._check_link(event, last[1] if last is not None else None)

    def _check_link(self, event: LinkedEvent, previous: bytes | None) -> ChainBreak | None:
        link, genesis = event.link, self.genesis
        if genesis is None:
            if link is None:
                return _break(
                    event,
                    "no-chain",
                    "it has no chain link, and no genesis record says where the chain began: "
                    "the chain was deleted, or nothing that keeps one has written to this log",
                )
            return _break(
                event,
                "no-genesis",
                "it has a chain link, but the genesis record that says where the chain began "
                "is missing (deleted)",
            )
        if link is None:
            if event.position >= genesis.began_at:
                return _break(
                    event,
                    "unlinked",
                    "it has no chain link, yet it was stored after the chain began at "
                    f"position {genesis.began_at} (added, or its link deleted)",
                )
            return None
        if not self.keyring.knows(link.key_id):
            return _break(
                event,
                "unknown-key",
                f"its link was made with chain key {link.key_id}, which none of the configured "
                "DMLEDGER_SECRET_KEY keys gives (was an old key removed?)",
            )
        log_previous: tuple[int, bytes] | None = None
        if link.previous_position is None:
            if event.position >= genesis.log_began_at:
                return _break(
                    event,
                    "altered",
                    "its link chains its aggregate only, as links did before the log chain "
                    f"began at position {genesis.log_began_at}",
                )
        else:
            if event.position < genesis.log_began_at:
                return _break(
                    event,
                    "altered",
                    f"its link chains the log, which began only at position "
                    f"{genesis.log_began_at} (was the genesis replaced?)",
                )
            found = self._log_previous(event, link.previous_position)
            if isinstance(found, ChainBreak):
                return found
            log_previous = found
        expected = self.keyring.digest(
            link.key_id,
            originator_id=event.originator_id,
            version=event.version,
            position=event.position,
            topic=event.topic,
            state=event.state,
            previous=previous,
            log_previous=log_previous,
        )
        if not hmac.compare_digest(expected, link.digest):
            return _break(
                event,
                "altered",
                "its content does not match its chain link (the event, or one before it in "
                "the aggregate or the log, was edited)",
            )
        return None

    def _log_previous(self, event: LinkedEvent, chained_to: int) -> tuple[int, bytes] | ChainBreak:
        """(position, link) of the event of the log `event`'s link chains to."""
        assert self.genesis is not None
        walked = self.last_log[0] if self.last_log is not None else 0
        if chained_to == walked:
            return self.last_log if self.last_log is not None else (0, self.genesis.digest)
        if not self.whole:
            # Only some aggregates are checked: the log between may hold others' breaks.
            if chained_to == 0:
                return (0, self.genesis.digest)
            if chained_to in self.orphan_links:
                return (chained_to, self.orphan_links[chained_to])
        if chained_to > walked:
            return _break(
                event,
                "deleted",
                f"the event before it in the log, at position {chained_to}, is missing "
                "(deleted with its link)",
            )
        return _break(
            event,
            "reordered",
            f"it was chained after position {chained_to}, yet the log has it after position "
            f"{walked}",
        )


def _check_against(
    checkpoint: Checkpoint, genesis: Genesis | None, head: int, at: LinkedEvent | None
) -> ChainBreak | None:
    """Whether the log still extends `checkpoint` (the walk up to it found no break)."""
    position = checkpoint.position
    if genesis is None or genesis.began_at != checkpoint.began_at:
        now = f"at position {genesis.began_at}" if genesis is not None else "nowhere (no genesis)"
        return ChainBreak(
            position=position,
            kind="not-extended",
            detail=f"the chain began at position {checkpoint.began_at} when the checkpoint was "
            f"taken, and now begins {now}: the chain was deleted and begun again",
        )
    if head < position:
        return ChainBreak(
            position=position,
            kind="truncated",
            detail=f"the log ends at position {head}, before the checkpoint's position "
            f"{position}: its newest events were deleted",
        )
    if at is None:
        return ChainBreak(
            position=position,
            kind="deleted",
            detail=f"the event at the checkpoint's position {position} is missing",
        )
    if at.link is None or not hmac.compare_digest(at.link.digest, checkpoint.digest):
        return _break(
            at,
            "not-extended",
            "it is not the event the checkpoint was taken at (its link differs): the log "
            "was rewritten up to here",
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
