"""A CRM receiver for P3: answers every POST 200 at once and keeps what it was sent.

`python -m benchmarks.receiver --port PORT --out FILE [--lifetime SECONDS]`

A raw asyncio protocol with httptools' parser (uvloop when installed), so the receiver
costs as little as it can: P3 measures the dispatcher, not the receiver. Each POST's
`webhook-id`, `webhook-timestamp`, `webhook-signature`, body and arrival time are kept in
memory, unverified (the harness verifies them afterwards); `GET /count` answers how many
POSTs arrived. On SIGTERM or SIGINT it writes them to `--out` as JSON lines and stops; it
stops by itself after `--lifetime` seconds too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import time
from typing import Any

import httptools

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'

Received = tuple[str, str, str, bytes, float]
"""webhook-id, webhook-timestamp, webhook-signature, body, arrival (time.time())."""


class Receiver(asyncio.Protocol):
    """One connection: parses requests, answers each at once."""

    def __init__(self, received: list[Received]) -> None:
        self._received = received
        self._parser = httptools.HttpRequestParser(self)
        self._transport: Any = None
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._url = b""

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport.
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._transport.close()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_method() == b"GET":
            text = str(len(self._received)).encode() if self._url == b"/count" else b"ok"
            self._transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: "
                + str(len(text)).encode()
                + b"\r\n\r\n"
                + text
            )
            return
        h = self._headers
        self._received.append(
            (
                h.get(b"webhook-id", b"").decode(),
                h.get(b"webhook-timestamp", b"").decode(),
                h.get(b"webhook-signature", b"").decode(),
                b"".join(self._body),
                time.time(),
            )
        )
        self._transport.write(OK)


def write(received: list[Received], out: str) -> None:
    with open(out, "w") as f:
        for webhook_id, timestamp, signature, body, at in received:
            record: dict[str, Any] = {
                "id": webhook_id,
                "timestamp": timestamp,
                "signature": signature,
                "body": base64.b64encode(body).decode(),
                "at": at,
            }
            f.write(json.dumps(record) + "\n")


async def serve(port: int, out: str, lifetime: float) -> None:
    received: list[Received] = []
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: Receiver(received), "127.0.0.1", port, backlog=2048, reuse_address=True
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), lifetime)
    server.close()
    write(received, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--lifetime", type=float, default=900.0)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, args.out, args.lifetime))
    else:
        uvloop.run(serve(args.port, args.out, args.lifetime))


if __name__ == "__main__":
    main()
