"""`/metrics` of a process that serves no HTTP otherwise: `dmledger project`, `dispatch`.

A small threaded HTTP server on `DMLEDGER_METRICS_HOST:DMLEDGER_METRICS_PORT` (loopback
by default) that answers `GET /metrics` exactly as `serve` does (`interfaces/http/metrics.py`):
the same registry, the same check of the caller, problem+json when it is refused.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from application.errors import ApplicationError, Forbidden
from infrastructure.prometheus_metrics import exposition
from interfaces.cli_support import CliError
from interfaces.composition import Services
from interfaces.http.problems import PROBLEM_JSON
from interfaces.metrics_access import allow_scraper

log = logging.getLogger(__name__)


class MetricsServer:
    """Serves `services`' metrics on a port of its own, from a daemon thread."""

    def __init__(self, services: Services, host: str, port: int) -> None:
        settings = services.settings

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self._problem(HTTPStatus.NOT_FOUND, "only /metrics is served here")
                    return
                try:
                    allow_scraper(
                        self.headers.get("authorization"),
                        token=settings.metrics_token,
                        api_keys=services.api_keys,
                    )
                except ApplicationError as refusal:
                    forbidden = isinstance(refusal, Forbidden)
                    status = HTTPStatus.FORBIDDEN if forbidden else HTTPStatus.UNAUTHORIZED
                    self._problem(status, refusal.detail)
                    return
                body, content_type = exposition(
                    services.metrics.registry, self.headers.get("accept")
                )
                self._answer(HTTPStatus.OK, body, content_type)

            def _problem(self, status: HTTPStatus, detail: str) -> None:
                kind = {401: "unauthenticated", 403: "forbidden"}.get(status, "not-found")
                problem = {
                    "type": f"https://dmledger.dev/problems/{kind}",
                    "title": status.phrase,
                    "status": int(status),
                    "detail": detail,
                }
                self._answer(status, json.dumps(problem).encode(), PROBLEM_JSON)

            def _answer(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if status == HTTPStatus.UNAUTHORIZED:
                    self.send_header("WWW-Authenticate", 'Bearer realm="dmledger"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass  # a scrape every 15 s is no news

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.address = f"http://{host}:{self._server.server_address[1]}/metrics"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(services: Services) -> MetricsServer | None:
    """Start the metrics port when `DMLEDGER_METRICS_PORT` is set; None otherwise."""
    settings = services.settings
    if settings.metrics_port is None:
        return None
    try:
        server = MetricsServer(services, settings.metrics_host, settings.metrics_port)
    except OSError as error:
        raise CliError(
            f"cannot serve the metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"(DMLEDGER_METRICS_HOST, DMLEDGER_METRICS_PORT): {error.strerror or error}"
        ) from None
    server.start()
    log.info("metrics on %s", server.address)
    return server
