"""An operational state of a deployment, as `infrastructure.metrics_state` reads it at
scrape time: every kind of gauge with a value, for the tests of the Prometheus families."""

from __future__ import annotations

from infrastructure.metrics_state import OperationalState, OutboxState, PoolState, ProjectionState

STATE = OperationalState(
    projections=[ProjectionState("message_history", 90, 100, 1, 4.5)],
    outboxes=[OutboxState("instagram", 3, 12.0, 2, 1), OutboxState("crm", 0, 0.0, 0, 7)],
    accounts={"active": 2, "suspended": 1, "deactivated": 0},
    token_rejected=1,
    sends_paused=0,
    pools=[PoolState("event_store", 2, 3, 1), PoolState("read_models", 1, 4, None)],
    listening=True,
)
