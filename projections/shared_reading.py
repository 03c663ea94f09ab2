"""The log as the projection runners of one process read it: each batch read from the
store, decoded and its content opened once, for all of them.

Five runners follow the same log, a batch or two apart. Each used to select the same
notifications, decode every event and open its content (a key query) for itself: five
times the reading for one log. `SharedReading.read` keeps the events it read last (a
window of `KEEP` notifications): a runner whose batch starts inside the window takes what
the window holds and reads from the store only what comes after it, which then extends
the window; a runner ahead of it starts a new window; one behind it (catching up after a
rebuild, say) reads the store on its own.

The window holds every notification from its first to its last: it is only ever
extended by a read that starts right after its last, and the store shows notifications
in the order of their ids (which the runners rely on anyway: each reads from its position
onwards). Runners share the event objects, which they only read. Content is opened as a
runner opens it (`Ledger.open_content(recent=True)`).

A reader that names itself (`read(..., reader=)`: the followers) tells the window it is
done with what lies before its start: the window keeps nothing that every named reader has
passed. Following the head, the followers are a batch or less apart, and the window holds
that much rather than `KEEP` (~3 MB of decoded events in a web worker, P6).
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Notification

from application.ledger import Ledger

log = logging.getLogger(__name__)

KEEP = 2_000
"""Notifications kept: two full batches of a runner (about 4 MB of events)."""


@dataclass(frozen=True)
class Read:
    """What one read of the log found."""

    items: list[tuple[Any, int]]
    """(event, position) of the notifications that decoded, in log order."""
    last: int | None
    """The position of the last notification read (decoded or not); None if none."""
    count: int
    """How many notifications were read (a batch shorter than asked reached the head)."""


def decode(ledger: Ledger, notification: Notification, unknown: set[str], reader: str) -> Any:
    """The notification's domain event, or None if it cannot be (logged once a topic in
    `unknown`, as `reader`'s)."""
    try:
        return ledger.mapper.to_domain_event(notification)
    except Exception as error:
        if notification.topic not in unknown:
            unknown.add(notification.topic)
            log.warning(
                "%s skips events of unknown type %s (first at notification %d): %s",
                reader,
                notification.topic,
                notification.id,
                error,
            )
        return None


class SharedReading:
    """A window of the log, read and decoded once for the runners of a process."""

    def __init__(self, ledger: Ledger, *, keep: int = KEEP) -> None:
        self._ledger = ledger
        self._unknown_topics: set[str] = set()
        self._keep = keep
        self._lock = threading.Lock()
        self._ids: list[int] = []
        self._events: dict[int, Any] = {}
        """Each kept notification's event (None: it did not decode)."""
        self._first = 0
        """Every notification from here to the last kept one is kept."""
        self._starts: dict[object, int] = {}
        """Where each named reader last started: it is done with what lies before."""

    def read(self, start: int, limit: int, *, reader: object | None = None) -> Read:
        """Up to `limit` notifications from position `start` on, as events; `reader`, if
        given, is done with what lies before `start` (see the module's docstring)."""
        with self._lock:
            if reader is not None:
                self._starts[reader] = start
                self._forget_before(min(self._starts.values()))
            kept = self._kept_from(start, limit)
        if len(kept) == limit:
            return self._answer(kept, [])
        after = kept[-1][0] + 1 if kept else start
        notifications = self._ledger.recorder.select_notifications(
            start=after, limit=limit - len(kept)
        )
        found = [
            (n.id, decode(self._ledger, n, self._unknown_topics, "the projections"))
            for n in notifications
        ]
        self._ledger.open_content((e for _, e in found if e is not None), recent=True)
        with self._lock:
            self._keep_read(after, found)
        return self._answer(kept, found)

    def _kept_from(self, start: int, limit: int) -> list[tuple[int, Any]]:
        ids = self._ids
        if not ids or not self._first <= start <= ids[-1]:
            return []
        at = bisect.bisect_left(ids, start)
        return [(i, self._events[i]) for i in ids[at : at + limit]]

    def _keep_read(self, start: int, found: list[tuple[int, Any]]) -> None:
        """Extend the window with a read that starts right after it, or start a new one
        with a read ahead of it; a read behind it is not kept."""
        if not found:
            return
        ids = self._ids
        if ids and start == ids[-1] + 1:
            pass  # extends the window
        elif not ids or start > ids[-1]:
            # Ahead of the window (or none yet): what lies between is unknown here.
            ids.clear()
            self._events.clear()
            self._first = start
        else:
            return  # behind the window, or another runner extended it meanwhile
        for position, event in found:
            ids.append(position)
            self._events[position] = event
        if len(ids) > self._keep:
            dropped = ids[: len(ids) - self._keep]
            del ids[: len(dropped)]
            for position in dropped:
                del self._events[position]
            self._first = ids[0]

    def _forget_before(self, position: int) -> None:
        """Let go of what every named reader has passed."""
        ids = self._ids
        if not ids or position <= ids[0]:
            return
        passed = bisect.bisect_left(ids, position)
        for kept in ids[:passed]:
            del self._events[kept]
        del ids[:passed]
        # Still every notification from here to the last kept one (none between).
        self._first = max(self._first, position)

    @staticmethod
    def _answer(kept: list[tuple[int, Any]], found: list[tuple[int, Any]]) -> Read:
        read = kept + found
        return Read(
            items=[(event, position) for position, event in read if event is not None],
            last=read[-1][0] if read else None,
            count=len(read),
        )
