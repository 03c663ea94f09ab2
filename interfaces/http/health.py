"""Liveness and readiness probes."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from application.ledger import Ledger
from interfaces.http.problems import problem
from interfaces.http.readiness import event_store_answers


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", tags=["health"])
async def readyz(ledger: NamedDependency[Ledger]) -> Any:
    """The event store answers."""
    try:
        await event_store_answers(ledger)
    except Exception as error:
        return problem(
            HTTP_503_SERVICE_UNAVAILABLE,
            "Service Unavailable",
            f"the event store does not answer: {type(error).__name__}",
            "not-ready",
        )
    return {"status": "ready"}
