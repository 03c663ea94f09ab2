"""A fake Instagram Graph API on loopback: a real HTTP server with Meta's answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_EXPIRED = {
    "error": {
        "message": "Error validating access token: Session has expired.",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 463,
        "fbtrace_id": "AbCdEfGhIjK",
    }
}


class FakeGraphApi:
    """Serves `GET /{version}/{igsid}` from `profiles`; records every request."""

    def __init__(
        self, access_token: str, profiles: dict[str, dict[str, str]] | None = None
    ) -> None:
        self.access_token = access_token
        self.profiles = profiles or {}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                fake.requests.append(
                    {
                        "path": parts.path,
                        "query": parse_qs(parts.query),
                        "headers": dict(self.headers),
                    }
                )
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                participant = parts.path.rsplit("/", 1)[-1]
                if token != fake.access_token:
                    self._answer(401, TOKEN_EXPIRED)
                elif participant in fake.profiles:
                    self._answer(200, {"id": participant, **fake.profiles[participant]})
                else:
                    self._answer(
                        400, {"error": {"message": "Unsupported get request.", "code": 100}}
                    )

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
