"""What the tests that generate their input (hypothesis, schemathesis) share: derandomized
settings, and the read models' state once they have followed what the input stored."""

from __future__ import annotations

import time
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, settings


def derandomized(examples: int) -> settings:
    """Hypothesis settings for a generated test against a server: `examples` inputs, the
    same ones each run (a run finds what the previous one found), no deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def followed_read_models(url: str, timeout: float = 120) -> list[dict[str, Any]]:
    """The projections of `/readyz` once each has followed the log to its head (or as they
    are at the timeout): name, lag, parked..."""
    projections: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        projections = httpx.get(url + "/readyz").json()["projections"]
        if all(p["lag"] == 0 for p in projections):
            break
        time.sleep(0.2)
    return projections


def assert_holding_everything(projections: list[dict[str, Any]]) -> None:
    """Every read model at the head with nothing parked."""
    assert [(p["name"], p["lag"], p["parked"]) for p in projections] == [
        (p["name"], 0, 0) for p in projections
    ]
