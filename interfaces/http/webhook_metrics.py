"""The outcome and duration of every webhook delivery, for the metrics.

Counted on the way out, as the status the caller gets, whoever produced it: the handler
(200), the signature check (401), the body's reader (400, 413), or the ledger writer
when nothing could be stored (503). The webhook's own code knows nothing of it.
"""

from __future__ import annotations

import time
from typing import Protocol

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

WEBHOOK_PATH = "/webhooks/instagram"


class WebhookObserver(Protocol):
    def webhook_answered(self, status: int, seconds: float) -> None: ...


class WebhookMetrics:
    """ASGI middleware: tells `observer` what each `POST /webhooks/instagram` was answered."""

    def __init__(self, app: ASGIApp, observer: WebhookObserver) -> None:
        self._app = app
        self._observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope.get("path") != WEBHOOK_PATH
            or scope["type"] != ScopeType.HTTP
            or scope.get("method") != "POST"
        ):
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # a response never started: the connection was lost, or a crash

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_noting_status)
        finally:
            self._observer.webhook_answered(status, time.perf_counter() - started)
