"""Liveness and readiness probes."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from interfaces.http.openapi import problems
from interfaces.http.problems import problem
from interfaces.http.readiness import readiness_within_deadline
from projections.health import ProjectionWatch


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", tags=["health"], responses=problems(422, 503, when_503="Not ready (see detail)."))
async def readyz(
    watch: NamedDependency[ProjectionWatch],
    strict: Annotated[
        bool,
        QueryParameter(
            description="Answer 503 when degraded too (a probe of `dmledger project`, an alert)."
        ),
    ] = False,
) -> Any:
    """The event store answers (else 503). `degraded`, with the reasons, when a projection
    parked events or has not moved for `DMLEDGER_READY_STALL_SECONDS` while events wait:
    webhooks are still stored, so a web process stays ready unless `strict` is asked."""
    try:
        readiness = await readiness_within_deadline(watch)
    except Exception as error:
        return problem(
            HTTP_503_SERVICE_UNAVAILABLE,
            "Service Unavailable",
            f"the event store does not answer: {type(error).__name__}",
            "not-ready",
        )
    if strict and readiness.status != "ready":
        return problem(
            HTTP_503_SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "; ".join(readiness.reasons),
            "degraded",
            projections=readiness.projections,
        )
    return readiness
