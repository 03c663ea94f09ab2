"""A fake CRM on loopback that verifies deliveries with the `standardwebhooks` package."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    """The listen backlog: the default 5 resets connections when a dispatcher opens many
    at once, which the dispatcher rightly counts as a send that may have gone (ambiguous)."""


class FakeCrm:
    """Records verified deliveries; `answers` scripts the next statuses (default 200)."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.received: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.answers: deque[tuple[int, dict[str, str]]] = deque()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if len(raw) < length:
                    return  # the sender died mid-request: nothing was delivered
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(fake.secret or "").verify(raw, headers)
                except WebhookVerificationError as error:
                    fake.rejected.append(str(error))
                    self._answer(401, {})
                    return
                status, extra = fake.answers.popleft() if fake.answers else (200, {})
                fake.received.append(
                    {"id": headers["webhook-id"], "payload": payload, "status": status}
                )
                self._answer(status, extra)

            def _answer(self, status: int, headers: dict[str, str]) -> None:
                raw = json.dumps({"ok": status < 300}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        """The deliveries answered 2xx."""
        return [d for d in self.received if 200 <= d["status"] < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
