"""Whether the read models keep up: each projection's lag, its parked events, and whether it
has stopped moving while events wait (what `/readyz` and `projections status` report)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgspec

from projections.registry import ProjectionHealth, ReadModels


class ProjectionState(msgspec.Struct, frozen=True):
    """One projection, as a health probe sees it."""

    name: str
    position: int
    head: int
    lag: int
    parked: int
    stalled_seconds: float
    """How long it has not moved while events waited (as this process has watched it)."""


class Readiness(msgspec.Struct, frozen=True):
    """The verdict of a probe: `ready`, or `degraded` with the reasons."""

    status: str
    reasons: list[str]
    projections: list[ProjectionState]


class ProjectionWatch:
    """Remembers, between probes, since when each projection has stood still behind the
    head: a runner that died or waits on a lock shows as stalled after `stall_after`."""

    def __init__(
        self,
        read_models: ReadModels,
        *,
        stall_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_models = read_models
        self._stall_after = stall_after
        self._clock = clock
        self._still_since: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def check(self) -> Readiness:
        """Read every projection's state now (raises if the database does not answer)."""
        health = self._read_models.health()
        now = self._clock()
        states = [self._state(p, now) for p in health]
        reasons = [
            f"{s.name} has parked {s.parked} events it failed on (see `dmledger projections "
            "parked`)"
            for s in states
            if s.parked
        ]
        reasons += [
            f"{s.name} has not moved for {s.stalled_seconds:.0f} s while {s.lag} events wait"
            for s in states
            if s.stalled_seconds > self._stall_after
        ]
        return Readiness("degraded" if reasons else "ready", reasons, states)

    def _state(self, health: ProjectionHealth, now: float) -> ProjectionState:
        with self._lock:
            seen = self._still_since.get(health.name)
            if health.lag == 0 or seen is None or seen[0] != health.position:
                seen = (health.position, now)
                self._still_since[health.name] = seen
        stalled = now - seen[1] if health.lag > 0 else 0.0
        return ProjectionState(
            name=health.name,
            position=health.position,
            head=health.head,
            lag=health.lag,
            parked=health.parked,
            stalled_seconds=round(stalled, 3),
        )


def oldest_waiting_at(read_models: ReadModels, health: list[ProjectionHealth]) -> dict[str, float]:
    """When (seconds since the epoch) the oldest event each lagging projection has not
    applied yet was recorded; projections that are caught up are left out. One read of the
    log per distinct position."""
    ledger = read_models.ledger
    recorded_at: dict[int, float] = {}
    waiting: dict[str, float] = {}
    for projection in health:
        if projection.lag <= 0:
            continue
        after = projection.position
        if after not in recorded_at:
            found = ledger.recorder.select_notifications(start=after + 1, limit=1)
            if not found:
                continue
            event = ledger.mapper.to_domain_event(found[0])
            recorded_at[after] = event.timestamp.timestamp()  # type: ignore[attr-defined]
        waiting[projection.name] = recorded_at[after]
    return waiting
