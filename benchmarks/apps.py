"""The ASGI apps the benchmarks serve: dmledger as shipped, the bare baseline (an HMAC and
a 200), and a seed-style peer (an HMAC, then one INSERT and commit per request).

All are served by `benchmarks.server` with the same uvicorn settings, so the only
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
    from application.content import ContentMapper
    from interfaces.composition import build, settings_from_environment
    from interfaces.http.app import create_app
    from interfaces.long_lived_objects import freeze_startup_objects

    services = build(settings_from_environment())
    if os.environ.get("BENCH_CONTENT_IN_CLEAR"):
        # P8's baseline (benchmarks/content_sealing.py): content stored in clear.
        mapper = services.ledger.mapper
        assert isinstance(mapper, ContentMapper)
        mapper.vault = None
    in_process = not os.environ.get("BENCH_SEPARATE_PROCESSES")
    if os.environ.get("BENCH_WRITER_ONLY"):
        # P4: the webhook path alone; no runner following the fill's backlog beside it.
        in_process = False
    app = create_app(services, run_projections=in_process, run_dispatcher=in_process)
    freeze_startup_objects()  # as `serve` does
    probe_directory = os.environ.get("BENCH_PROBE_DIR")
    if probe_directory:
        # `--probe` (benchmarks/probe.py): tracemalloc from here on, a dump on SIGUSR2.
        from pathlib import Path

        from benchmarks import probe

        probe.install(Path(probe_directory), services)
    return app


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


def peer_app() -> Litestar:
    """A seed-style peer: the webhook's HMAC checked, then its body inserted as one row and
    committed, one SQLAlchemy transaction per request (what a first version of such a
    service does), on the bench database (`DMLEDGER_DATABASE_URL`)."""
    from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, Table, create_engine, insert

    secret = os.environ[BARE_SECRET_VARIABLE].encode()
    url = os.environ["DMLEDGER_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, pool_size=32, max_overflow=0)
    metadata = MetaData()
    webhooks = Table(
        "peer_webhooks",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("body", LargeBinary, nullable=False),
    )
    metadata.create_all(engine)

    @post("/webhooks/instagram", media_type=MediaType.TEXT, status_code=200, sync_to_thread=True)
    def receive(body: bytes, request: Request[Any, Any, Any]) -> str:
        given = (request.headers.get("x-hub-signature-256") or "").removeprefix("sha256=")
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise NotAuthorizedException("X-Hub-Signature-256 does not match")
        with engine.begin() as conn:
            conn.execute(insert(webhooks).values(body=body))
        return "EVENT_RECEIVED"

    @get("/healthz", media_type=MediaType.TEXT)
    async def healthz() -> str:
        return "ok"

    return Litestar(route_handlers=[receive, healthz])
