"""What one batch of the ledger writer's commands reads and changes (`Changes`), and the
aggregates the writer keeps in memory between batches (`AggregateCache`).

A command (`Command`) is a function of a `Changes`; `application.ledger_writer` runs
commands in groups and commits what their `Changes` hold together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast
from uuid import UUID

from cachetools import LRUCache
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from application.ledger import Ledger
from domain.conversation import Conversation
from domain.recorded_keys import OlderKeys

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)


AGGREGATE_BYTES = 32 * 2**20
"""The memory the writer's cached aggregates may take, roughly (`approximate_size`).

A count alone did not bound it: a conversation with its 64 recent keys is ~15 KiB
(`domain.recorded_keys`; ~52 KiB with 256), so the writer's 20,000 would be ~300 MiB,
against P6's 100 MiB a web worker. 32 MiB keeps ~2,000 such conversations, or ~4,000 of
P1's (~8 KiB: 33 messages each)."""

AGGREGATE_BASE_BYTES = 2_048
ITEM_BYTES = 200
"""An aggregate's own memory, and that of each key, reply or request it holds in a
dict, list or set (measured with tracemalloc on conversations of 1 to 256 messages)."""


def approximate_size(aggregate: Aggregate) -> int:
    """An aggregate's memory in bytes, roughly, from the number of items it holds (a
    constant time: its attributes, not their contents)."""
    held = sum(len(v) for v in vars(aggregate).values() if isinstance(v, dict | list | set))
    return AGGREGATE_BASE_BYTES + ITEM_BYTES * held


class AggregateCache:
    """The most recently used aggregates, as committed: at most `maxsize` of them and
    about `max_bytes` of memory (`approximate_size`, taken at each `put`).

    Not the library's aggregate cache (`AGGREGATE_CACHE_MAXSIZE`): see
    `application.eventsourcing_compat` for why the writer keeps its own.
    """

    def __init__(self, maxsize: int, *, max_bytes: int = AGGREGATE_BYTES) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        # Each aggregate counts for at least `max_bytes / maxsize`, so that the one bound
        # of the LRU cache keeps both: never more than `maxsize` of them.
        least = -(-max_bytes // maxsize)
        self._items: LRUCache[UUID, Aggregate] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda a: max(least, approximate_size(a))
        )

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        return self._items.get(aggregate_id)

    def put(self, aggregate: Aggregate) -> None:
        try:
            self._items[aggregate.id] = aggregate
        except ValueError:  # larger than the whole cache: not kept (nor an older copy)
            self._items.pop(aggregate.id, None)

    def evict(self, aggregate_ids: Iterable[UUID]) -> None:
        for aggregate_id in aggregate_ids:
            self._items.pop(aggregate_id, None)

    def clear(self) -> None:
        self._items.clear()


class Changes:
    """The aggregates that one batch of commands reads and changes; committed together."""

    def __init__(
        self,
        ledger: Ledger,
        cache: AggregateCache,
        *,
        fresh: bool,
        known: Mapping[UUID, Mapping[str, int | None]] | None = None,
    ) -> None:
        self._ledger = ledger
        self._cache = cache
        self._fresh_all = fresh
        self._known = known or {}
        """Keys the store said conversations have recorded (`older_keys`)."""
        self.touched: dict[UUID, Aggregate] = {}
        self.read_versions: dict[UUID, int] = {}
        """Versions of the aggregates read with `fresh=True`, as they were read."""
        self.command = 0
        """The index (in its batch) of the command running now."""
        self.touched_by: dict[UUID, set[int]] = {}
        """The commands that read or changed each aggregate."""
        self._new_events: dict[UUID, list[Any]] = {}
        self._pending_when_touched: dict[UUID, int] = {}
        """How many pending events each aggregate had when the running command first
        touched it (see `changed_by_command`)."""

    def get(self, aggregate_id: UUID, kind: type[A], *, fresh: bool = False) -> A | None:
        """The aggregate with this id, or None if it does not exist.

        `fresh=True` is for aggregates whose latest state matters though the batch may
        not change them (accounts, whose credentials may be rotated elsewhere). Where
        the event store can check it at commit (`Ledger.validates_reads`), the batch is
        refused there if such an aggregate has moved on, and runs again on fresh state;
        otherwise the cached aggregate first catches up with the store. An aggregate
        the batch changes needs neither: a stale one conflicts at commit.
        """
        aggregate = self.touched.get(aggregate_id)
        if aggregate is None:
            aggregate = self._cache.get(aggregate_id)
            catch_up = self._fresh_all or (fresh and not self._ledger.validates_reads)
            if aggregate is not None and catch_up:
                for stored in self._ledger.events.get(aggregate_id, gt=aggregate.version):
                    stored.mutate(aggregate)  # type: ignore[attr-defined]
            if aggregate is None:
                try:
                    aggregate = cast(Aggregate, self._ledger.repository.get(aggregate_id))
                except AggregateNotFoundError:
                    return None
            self.touched[aggregate_id] = aggregate
            if isinstance(aggregate, Conversation):
                self._give_older_keys(aggregate)
            if fresh:
                self.read_versions[aggregate_id] = aggregate.version
        elif fresh and aggregate_id not in self.read_versions:
            # First read earlier in this batch without `fresh`: its stored version.
            self.read_versions[aggregate_id] = aggregate.version - len(aggregate.pending_events)
        self._touch(aggregate)
        if not isinstance(aggregate, kind):
            return None
        return aggregate

    def _give_older_keys(self, conversation: Conversation) -> None:
        """Let the conversation look up the keys it has forgotten (`domain.recorded_keys`)."""
        if conversation.older_keys is None:
            conversation.older_keys = OlderKeys()
        conversation.older_keys.found.update(self._known.get(conversation.id, {}))

    def older_keys_asked(self) -> dict[UUID, set[str]]:
        """The keys the batch's conversations looked up beyond their recent ones, unknown
        here: the store must be asked about them before the batch is committed."""
        asked: dict[UUID, set[str]] = {}
        for aggregate_id, aggregate in self.touched.items():
            older = aggregate.older_keys if isinstance(aggregate, Conversation) else None
            if older is not None and older.asked:
                asked[aggregate_id] = set(older.asked)
        return asked

    def add(self, aggregate: Aggregate) -> None:
        """Include a new aggregate in this batch."""
        self.touched[aggregate.id] = aggregate
        if isinstance(aggregate, Conversation):
            self._give_older_keys(aggregate)
        self._pending_when_touched.setdefault(aggregate.id, 0)  # new: all of it is a change
        self._touch(aggregate)

    def _touch(self, aggregate: Aggregate) -> None:
        self.touched_by.setdefault(aggregate.id, set()).add(self.command)
        self._pending_when_touched.setdefault(aggregate.id, len(aggregate.pending_events))

    def start_command(self, index: int) -> None:
        """The command at `index` of the batch runs now."""
        self.command = index
        self._pending_when_touched.clear()

    def changed_by_command(self) -> bool:
        """Whether the running command has added events to any aggregate."""
        return any(
            len(self.touched[a].pending_events) > before
            for a, before in self._pending_when_touched.items()
        )

    def new_events(self, aggregate_id: UUID) -> list[Any]:
        """The events the batch added to this aggregate. They are collected from it, and
        kept here: a save that fails has taken them, and a retry needs them again."""
        kept = self._new_events.setdefault(aggregate_id, [])
        kept.extend(self.touched[aggregate_id].collect_events())
        return kept

    def stored_before(self, aggregate_id: UUID) -> int:
        """The version the batch found this aggregate at (0 for one it created)."""
        if aggregate_id in self.read_versions:
            return self.read_versions[aggregate_id]
        return self.touched[aggregate_id].version - len(self.new_events(aggregate_id))

    def entangled_with(self, stale: set[UUID]) -> tuple[set[int], set[UUID]]:
        """The commands to run again when these aggregates are stale, and the aggregates to
        forget: the commands that read or changed a stale aggregate, and, through every
        aggregate such a command changed, the other commands that read or changed that one.
        An aggregate the batch only read, unchanged, connects nothing (every command reads
        its account)."""
        commands: set[int] = set()
        forget: set[UUID] = set()
        frontier = set(stale)
        while frontier:
            forget |= frontier
            reached = set().union(*(self.touched_by.get(a, set()) for a in frontier)) - commands
            commands |= reached
            frontier = {
                a
                for a, by in self.touched_by.items()
                if by & reached and a not in forget and self.new_events(a)
            }
        return commands, forget


Command = Callable[[Changes], T]
