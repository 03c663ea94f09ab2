"""The base of dmledger's projections: one handler per event topic, applied in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from projections.view import Batch, SqlView

log = logging.getLogger(__name__)

V = TypeVar("V", bound=SqlView)
Handler = Callable[[Any, Batch, Any, int], None]
"""(projection, batch, event, its position in the log)."""


ID_TEXTS_KEPT = 4_096
"""Ids whose text `id_text` remembers: ~300 bytes each (1.2 MiB in all), where forgetting
one costs a `str()` (~1 us)."""


@lru_cache(maxsize=ID_TEXTS_KEPT)
def id_text(originator_id: UUID) -> str:
    """`str(originator_id)`, remembered: the projections key rows by it several times an
    event, and `UUID.__str__` was ~5% of a rebuild's CPU time."""
    return str(originator_id)


def on(topic: str) -> Callable[[Handler], Handler]:
    """Mark a method as the handler of the events stored under `topic`."""

    def mark(handler: Handler) -> Handler:
        handler.__dict__.setdefault("_topics", []).append(topic)
        return handler

    return mark


class LedgerProjection(Projection[V], Generic[V]):
    """A read model of the ledger. Events with no handler here leave the view as it is."""

    _handlers: ClassVar[dict[str, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, Handler] = {}
        for base in reversed(cls.__mro__):
            for value in vars(base).values():
                for topic in getattr(value, "_topics", ()):
                    handlers[topic] = value
        cls._handlers = handlers

    @property
    def handled_topics(self) -> Sequence[str]:
        return list(self._handlers)

    rebuildable: ClassVar[bool] = True
    """False for a projection that acts (appends events) rather than keeps rows."""

    def act(self, items: Sequence[tuple[Any, int]]) -> None:
        """Side effects of a batch, run before the view's transaction opens (so that they
        may write to the ledger). They must be idempotent: after a crash they run again."""

    @property
    def acts(self) -> bool:
        """Whether this projection has side effects (`act`): the process's follower writes
        its batches after the other read models', which do not wait for them."""
        return type(self).act is not LedgerProjection.act

    def preload(self, batch: Batch, items: Sequence[tuple[Any, int]]) -> None:
        """Read the rows these events will change, in a few queries (an optimisation)."""

    def project(self, batch: Batch, items: Iterable[tuple[Any, int]]) -> None:
        """Apply (event, position) pairs to the rows of a batch."""
        for event, position in items:
            handler = self._handlers.get(type(event).TOPIC)
            if handler is not None:
                handler(self, batch, event, position)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Apply one event and its tracking in a transaction of its own (eventsourcing's API)."""
        item = (domain_event, tracking.notification_id)
        self.view.apply(tracking, lambda batch: self.project(batch, [item]))
