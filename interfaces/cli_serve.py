"""The long-running processes: `dmledger serve`, `dmledger project`, `dmledger dispatch`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infrastructure.settings import Settings
from interfaces.cli_support import CliError, services_of
from interfaces.composition import Services
from interfaces.long_lived_objects import freeze_startup_objects
from interfaces.read_model_check import require_current_read_models


def add_commands(commands: Any) -> None:
    """Add `serve`, `dispatch` and `project` to the `dmledger` command's subparsers."""
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (default: DMLEDGER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: DMLEDGER_PORT or 8000)")
    serve.add_argument(
        "--no-projections",
        action="store_true",
        help="do not run the projection runners here (separate `dmledger project` processes do)",
    )
    serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="do not run the dispatcher here (separate `dmledger dispatch` processes do)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (their metrics are added up); default 1",
    )
    serve.set_defaults(run=_serve)

    dispatch = commands.add_parser(
        "dispatch", help="send the outboxes (Instagram, CRM) until stopped"
    )
    dispatch.add_argument("--once", action="store_true", help="send what is due now, then stop")
    dispatch.set_defaults(run=_dispatch)
    project = commands.add_parser("project", help="run the projection runners until stopped")
    project.set_defaults(run=_project)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from interfaces.http.app import create_app
    from interfaces.http_server import guarded_protocol
    from interfaces.http_workers import connection_limits, quiet_access_log

    if args.workers < 1:
        raise CliError("--workers must be 1 or more")
    if args.workers > 1:
        return _serve_workers(settings, args)
    with services_of(settings) as services:
        require_current_read_models(services)
        config = uvicorn.Config(
            create_app(
                services,
                run_projections=not args.no_projections,
                run_dispatcher=not args.no_dispatcher,
            ),
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_level=settings.log_level,
            # uvicorn's loggers write through ours (interfaces/logging_setup.py): one format.
            log_config=None,
            http=guarded_protocol(connection_limits(settings)),
            timeout_keep_alive=settings.keep_alive_timeout,
        )
        quiet_access_log()
        freeze_startup_objects()
        uvicorn.Server(config).run()
    return 0


def _serve_workers(settings: Settings, args: argparse.Namespace) -> int:
    """`serve --workers N` (see interfaces/http_workers.py)."""
    import uvicorn

    from interfaces.http_workers import (
        PROTOCOL,
        WORKER_START_SECONDS,
        factory,
        multiprocess_metrics,
    )

    with multiprocess_metrics(settings):
        with services_of(settings) as services:
            # the tables and the development key, once, before the workers race for them
            require_current_read_models(services)
        uvicorn.run(
            factory(run_projections=not args.no_projections, run_dispatcher=not args.no_dispatcher),
            factory=True,
            workers=args.workers,
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_level=settings.log_level,
            log_config=None,
            http=PROTOCOL,
            timeout_keep_alive=settings.keep_alive_timeout,
            # A worker imports dmledger and builds its services before it answers uvicorn's
            # health check: on a busy machine that takes longer than uvicorn's 5 s.
            timeout_worker_healthcheck=WORKER_START_SECONDS,
        )
    return 0


def _project(settings: Settings, _: argparse.Namespace) -> int:
    import signal
    import threading

    from interfaces.projection_roles import report_roles

    with services_of(settings) as services, metrics_port(services):
        require_current_read_models(services)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        services.read_models.start()
        freeze_startup_objects()
        report_roles(services.read_models.runners, stop, lambda text: print(text, file=sys.stderr))
        stop.wait()
    return 0


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from interfaces.dispatching import run_dispatcher

    with services_of(settings) as services, metrics_port(services):
        require_current_read_models(services)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            if args.once:
                await services.dispatcher.drain()
                await services.close_connections()
            else:
                print("dispatching the outboxes", file=sys.stderr)
                await run_dispatcher(services, stop)

        services.writer.start()
        freeze_startup_objects()
        asyncio.run(main())
    return 0


@contextmanager
def metrics_port(services: Services) -> Iterator[None]:
    """`/metrics` on `DMLEDGER_METRICS_PORT` while the command runs, when it is set."""
    from interfaces.metrics_server import serve_metrics

    server = serve_metrics(services)
    if server is not None:
        print(f"metrics on {server.address}", file=sys.stderr)
    try:
        yield
    finally:
        if server is not None:
            server.stop()
