"""`dmledger serve --workers N`: N uvicorn worker processes that share one listening socket.

uvicorn starts each worker as a fresh process (spawned), which imports one of the app
factories below: each worker reads its settings from the environment, sets up its log
(with the redaction of every record) and builds its own services, as one `serve` would.
The parent makes the tables and the development key first, once, so that the workers do
not race for them.

Their metrics are added up over the workers (prometheus_client's multiprocess mode): the
parent points `PROMETHEUS_MULTIPROC_DIR` at an empty directory before the workers start
(a new temporary one, removed at the end; or the operator's, emptied), and `/metrics` of
whichever worker answers a scrape reads every worker's files.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from litestar import Litestar

from infrastructure.settings import MULTIPROCESS_DIR, Settings
from interfaces.access_log import RedactVerifyToken
from interfaces.composition import build, settings_from_environment
from interfaces.http_server import ConnectionLimits, GuardedHttpProtocol
from interfaces.logging_setup import configure_logging
from interfaces.long_lived_objects import freeze_startup_objects
from interfaces.refusal_log import RateLimitedAccessLog

PROTOCOL = "interfaces.http_server:GuardedHttpProtocol"
WORKER_START_SECONDS = 60
"""How long a worker may take to start before uvicorn takes it for hung."""


def factory(*, run_projections: bool, run_dispatcher: bool) -> str:
    """The import string of the app factory for these options of `serve`."""
    name = {
        (True, True): "app",
        (False, True): "app_without_projections",
        (True, False): "app_without_dispatcher",
        (False, False): "web_only_app",
    }[(run_projections, run_dispatcher)]
    return f"{__name__}:{name}"


def app() -> Litestar:
    return _worker(run_projections=True, run_dispatcher=True)


def app_without_projections() -> Litestar:
    return _worker(run_projections=False, run_dispatcher=True)


def app_without_dispatcher() -> Litestar:
    return _worker(run_projections=True, run_dispatcher=False)


def web_only_app() -> Litestar:
    return _worker(run_projections=False, run_dispatcher=False)


def _worker(*, run_projections: bool, run_dispatcher: bool) -> Litestar:
    from interfaces.http.app import create_app

    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_format)
    quiet_access_log()
    # The protocol class is uvicorn's to load by name; its limits are this process's.
    GuardedHttpProtocol.limits = connection_limits(settings)
    services = build(settings, announce=lambda text: logging.getLogger(__name__).warning(text))
    created = create_app(services, run_projections=run_projections, run_dispatcher=run_dispatcher)
    created.on_shutdown.append(services.close)
    freeze_startup_objects()
    return created


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
    )


def quiet_access_log() -> None:
    """No verify token in uvicorn's access log, and refusals summed up (every `serve`)."""
    access_log = logging.getLogger("uvicorn.access")
    access_log.addFilter(RedactVerifyToken())
    access_log.addFilter(RateLimitedAccessLog())


@contextmanager
def multiprocess_metrics(settings: Settings) -> Iterator[str]:
    """An empty `PROMETHEUS_MULTIPROC_DIR` for the workers about to start (set in this
    process's environment, which they inherit); a temporary one is removed afterwards."""
    chosen = settings.metrics_multiprocess_dir
    directory = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="dmledger-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # counts of an earlier run's workers
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(directory)
    try:
        yield str(directory)
    finally:
        if not chosen:
            shutil.rmtree(directory, ignore_errors=True)
