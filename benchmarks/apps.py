"""The two ASGI apps the benchmarks serve: dmledger as shipped, and the bare baseline.

Both are served by `benchmarks.server` with the same uvicorn settings, so the only
difference between them is what the webhook handler does.
"""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import hashlib
import hmac
import os
from typing import Any

from litestar import Litestar, MediaType, Request, get, post
from litestar.exceptions import NotAuthorizedException

BARE_SECRET_VARIABLE = "BENCH_APP_SECRET"  # noqa: S105 - a variable name


def dmledger_app() -> Litestar:
    """dmledger's HTTP app, built by its composition root from `DMLEDGER_*` variables."""
    from interfaces.composition import build, settings_from_environment
    from interfaces.http.app import create_app

    services = build(settings_from_environment())
    if os.environ.get("BENCH_CONTENT_IN_CLEAR"):
        # P8's baseline (benchmarks/content_sealing.py): content stored in clear.
        services.ledger.mapper.vault = None  # type: ignore[attr-defined]
    in_process = not os.environ.get("BENCH_SEPARATE_PROCESSES")
    return create_app(services, run_projections=in_process, run_dispatcher=in_process)


def bare_app() -> Litestar:
    """A Litestar endpoint that checks the webhook's HMAC and answers 200, storing nothing."""
    secret = os.environ[BARE_SECRET_VARIABLE].encode()

    @post("/webhooks/instagram", media_type=MediaType.TEXT, status_code=200)
    async def receive(request: Request[Any, Any, Any]) -> str:
        body = await request.body()
        given = (request.headers.get("x-hub-signature-256") or "").removeprefix("sha256=")
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise NotAuthorizedException("X-Hub-Signature-256 does not match")
        return "EVENT_RECEIVED"

    @get("/healthz", media_type=MediaType.TEXT)
    async def healthz() -> str:
        return "ok"

    return Litestar(route_handlers=[receive, healthz])
