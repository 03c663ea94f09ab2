"""What the scrape-time gauges show, read from one process's services.

Read when `/metrics` is scraped, at most once a second (`StateCollector` caches it):
the projections' positions and the log's head (two queries) and the age of the oldest
event each lagging one waits on (one per distinct position), the outboxes' counts (three
queries), the connection pools (no query). The accounts are read from the log, which
costs a load per account, so they are read at most every `ACCOUNTS_MAX_AGE` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from domain.account import AccountStatus
from infrastructure.delivery_counts import channel_counts
from infrastructure.delivery_queue import DeliveryQueue
from infrastructure.metrics_state import OperationalState, OutboxState, ProjectionState, pool_states
from projections.health import oldest_waiting_at
from projections.notifications import listening
from projections.registry import ReadModels

ACCOUNTS_MAX_AGE = 15.0
"""Seconds the accounts' counts are kept (a scrape interval)."""


class OperationalStateReader:
    """Reads the `OperationalState` of the database behind `read_models` and `queue`."""

    def __init__(
        self,
        read_models: ReadModels,
        queue: DeliveryQueue,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read_models = read_models
        self._queue = queue
        self._clock = clock
        self._accounts: tuple[float, dict[str, int], int, int] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> OperationalState:
        now = self._clock()
        health = self._read_models.health()
        waiting_since = oldest_waiting_at(self._read_models, health)
        projections = [
            ProjectionState(
                name=p.name,
                position=p.position,
                head=p.head,
                parked=p.parked,
                lag_seconds=max(now - waiting_since[p.name], 0.0)
                if p.name in waiting_since
                else 0.0,
            )
            for p in health
        ]
        outboxes = [
            OutboxState(
                kind=c.channel,
                due=c.due,
                oldest_due_age_seconds=0.0
                if c.oldest_due_ms is None
                else max(now - c.oldest_due_ms / 1000, 0.0),
                leased=c.leased,
                dead=c.dead,
            )
            for c in channel_counts(self._queue.engine, int(now * 1000))
        ]
        by_status, rejected, paused = self._account_counts(now)
        return OperationalState(
            projections=projections,
            outboxes=outboxes,
            accounts=by_status,
            token_rejected=rejected,
            sends_paused=paused,
            pools=pool_states(self._read_models.ledger.recorder, self._queue.engine),
            listening=listening(),
        )

    def _account_counts(self, now: float) -> tuple[dict[str, int], int, int]:
        with self._lock:
            if self._accounts is not None and now - self._accounts[0] < ACCOUNTS_MAX_AGE:
                return self._accounts[1:]
        accounts = self._read_models.ledger.accounts()
        by_status = Counter(str(a.status) for a in accounts)
        served = [a for a in accounts if a.status != AccountStatus.DEACTIVATED]
        counts = (
            {str(status): by_status.get(str(status), 0) for status in AccountStatus},
            sum(1 for a in served if a.token_rejected),
            sum(
                1
                for a in served
                if a.sends_paused_until is not None and a.sends_paused_until > now * 1000
            ),
        )
        with self._lock:
            self._accounts = (now, *counts)
        return counts
