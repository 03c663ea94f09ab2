"""A CRM receiver on loopback for trying dmledger (`dmledger dev crm-receiver`): it answers
every delivery 200, checks its Standard Webhooks signature when it knows the endpoint's
`whsec_` secret, and reports each one. It is never part of a deployment."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def signature_holds(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether `webhook-signature` holds a v1 HMAC-SHA256 of `id.timestamp.body` with the
    secret, as the Standard Webhooks specification says (written from the specification,
    not from dmledger's own signing code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id', '')}.{headers.get('webhook-timestamp', '')}."
    expected = base64.b64encode(
        hmac.new(key, signed.encode() + body, hashlib.sha256).digest()
    ).decode()
    given = [part.removeprefix("v1,") for part in headers.get("webhook-signature", "").split()]
    return any(hmac.compare_digest(expected, one) for one in given)


class CrmReceiver:
    """Answers 200 to every POST and reports (webhook-id, payload, verified or None)."""

    def __init__(
        self,
        *,
        port: int = 0,
        secret: str | None = None,
        on_delivery: Callable[[str, dict[str, Any], bool | None], None],
    ) -> None:
        receiver = self
        self.secret = secret

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = (
                    signature_holds(receiver.secret, headers, raw) if receiver.secret else None
                )
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = {"unreadable": raw[:200].decode(errors="replace")}
                on_delivery(headers.get("webhook-id", ""), payload, verified)
                answer = b'{"ok": true}'
                self.send_response(200 if verified is not False else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
