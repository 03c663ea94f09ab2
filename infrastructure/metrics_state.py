"""The gauges read from the database when Prometheus scrapes: projections, outboxes,
accounts, connection pools.

They are not counted as things happen (no event pays for them): `StateCollector` reads
them through one function when `/metrics` is scraped, at most once per `max_age` seconds
however many scrapes come (a few queries, whatever the size of the log or the outbox).
When the database does not answer, the scrape still answers, with
`dmledger_state_read_ok 0` and none of these gauges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionState:
    """How far one projection has followed the log."""

    name: str
    position: int
    head: int
    parked: int
    lag_seconds: float
    """How long the oldest event it has not applied has waited (0 when caught up)."""


@dataclass(frozen=True)
class OutboxState:
    """One kind of delivery (`instagram` replies, `crm` notifications)."""

    kind: str
    due: int
    oldest_due_age_seconds: float
    leased: int
    dead: int


@dataclass(frozen=True)
class PoolState:
    """A pool of database connections of this process."""

    pool: str
    in_use: int
    idle: int
    waiting: int | None
    """Callers waiting for a connection, where the pool counts them."""


@dataclass(frozen=True)
class OperationalState:
    """Everything the scrape-time gauges show, read at one moment."""

    projections: list[ProjectionState] = field(default_factory=list)
    outboxes: list[OutboxState] = field(default_factory=list)
    accounts: dict[str, int] = field(default_factory=dict)
    """Accounts by status: active, suspended, deactivated."""
    token_rejected: int = 0
    sends_paused: int = 0
    pools: list[PoolState] = field(default_factory=list)
    listening: bool | None = None
    """Whether this process's LISTEN session is in force (None: it listens for nothing)."""


class StateCollector(Collector):
    """A Prometheus collector of the `OperationalState` that `read` returns, cached."""

    def __init__(
        self,
        read: Callable[[], OperationalState],
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, OperationalState | None] | None = None
        self.reads = 0
        """How many times the state was read (tests: the cache holds)."""

    def state(self) -> OperationalState | None:
        """The state, read again if the cached one is older than `max_age`; None when it
        could not be read."""
        with self._lock:  # concurrent scrapes wait for one read
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._max_age:
                return self._cached[1]
            self.reads += 1
            try:
                state: OperationalState | None = self._read()
            except Exception as error:
                log.warning("could not read the state for the metrics: %r", error)
                state = None
            self._cached = (now, state)
            return state

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        yield GaugeMetricFamily(
            "dmledger_state_read_ok",
            "1 when the database answered the last read of the gauges below, else 0",
            value=0 if state is None else 1,
        )
        if state is not None:
            yield from _families(state)


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _families(state: OperationalState) -> Iterator[Metric]:
    projection = {
        "position": _gauge(
            "dmledger_projection_position", "the last log position applied", ["projection"]
        ),
        "head": _gauge("dmledger_projection_head", "the log's last position", ["projection"]),
        "lag": _gauge("dmledger_projection_lag_events", "events not applied yet", ["projection"]),
        "seconds": _gauge(
            "dmledger_projection_lag_seconds",
            "how long the oldest event not applied yet has waited",
            ["projection"],
        ),
        "parked": _gauge(
            "dmledger_projection_parked_events",
            "events the projection failed on and skipped",
            ["projection"],
        ),
    }
    for p in state.projections:
        projection["position"].add_metric([p.name], p.position)
        projection["head"].add_metric([p.name], p.head)
        projection["lag"].add_metric([p.name], max(p.head - p.position, 0))
        projection["seconds"].add_metric([p.name], p.lag_seconds)
        projection["parked"].add_metric([p.name], p.parked)
    yield from projection.values()

    outbox = {
        "due": _gauge("dmledger_outbox_due_deliveries", "deliveries that may go now", ["kind"]),
        "age": _gauge(
            "dmledger_outbox_oldest_due_age_seconds",
            "how long the longest-waiting due delivery has been due",
            ["kind"],
        ),
        "leased": _gauge(
            "dmledger_outbox_leased_deliveries", "deliveries a dispatcher holds now", ["kind"]
        ),
        "dead": _gauge("dmledger_outbox_dead_deliveries", "deliveries given up", ["kind"]),
    }
    for o in state.outboxes:
        outbox["due"].add_metric([o.kind], o.due)
        outbox["age"].add_metric([o.kind], o.oldest_due_age_seconds)
        outbox["leased"].add_metric([o.kind], o.leased)
        outbox["dead"].add_metric([o.kind], o.dead)
    yield from outbox.values()

    accounts = _gauge("dmledger_accounts", "registered accounts by status", ["status"])
    for status, count in sorted(state.accounts.items()):
        accounts.add_metric([status], count)
    yield accounts
    yield GaugeMetricFamily(
        "dmledger_accounts_token_rejected",
        "accounts whose access token Meta rejected (sends wait for new credentials)",
        value=state.token_rejected,
    )
    yield GaugeMetricFamily(
        "dmledger_accounts_sends_paused",
        "accounts whose sends Meta's rate limit paused",
        value=state.sends_paused,
    )

    in_use = _gauge("dmledger_db_pool_in_use", "connections lent out", ["pool"])
    idle = _gauge("dmledger_db_pool_idle", "connections open and free", ["pool"])
    waiting = _gauge("dmledger_db_pool_waiting", "callers waiting for a connection", ["pool"])
    for pool in state.pools:
        in_use.add_metric([pool.pool], pool.in_use)
        idle.add_metric([pool.pool], pool.idle)
        if pool.waiting is not None:
            waiting.add_metric([pool.pool], pool.waiting)
    yield from (in_use, idle, waiting)
    if state.listening is not None:
        yield GaugeMetricFamily(
            "dmledger_db_listening",
            "1 while this process's LISTEN session is in force; 0 while it is lost and the "
            "process polls (it is taken again after a second)",
            value=1 if state.listening else 0,
        )


def pool_states(event_store_recorder: Any, read_models_engine: Any) -> list[PoolState]:
    """The connection pools of this process: the event store's (psycopg's pool, on
    PostgreSQL) and the read models' (SQLAlchemy's)."""
    pools: list[PoolState] = []
    datastore = getattr(event_store_recorder, "datastore", None)
    psycopg_pool = getattr(datastore, "pool", None)
    if psycopg_pool is not None and hasattr(psycopg_pool, "get_stats"):
        stats = psycopg_pool.get_stats()
        size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
        pools.append(
            PoolState(
                "event_store",
                in_use=max(size - available, 0),
                idle=available,
                waiting=stats.get("requests_waiting", 0),
            )
        )
    sqlalchemy_pool = getattr(read_models_engine, "pool", None)
    if sqlalchemy_pool is not None and hasattr(sqlalchemy_pool, "checkedout"):
        pools.append(
            PoolState(
                "read_models",
                in_use=sqlalchemy_pool.checkedout(),
                idle=sqlalchemy_pool.checkedin(),
                waiting=None,
            )
        )
    return pools
