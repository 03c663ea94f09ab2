"""uvicorn's HTTP protocol with read deadlines and a cap on connections.

uvicorn closes a keep-alive connection idle after a response, but nothing else: a
connection that never sends a request, or sends its headers or body a byte at a time,
is held for ever (3,000 such connections were held, none closed). Here a connection
gets `header_timeout` seconds for each request's line and headers (from when it is made,
or from the first byte of a later request), then `body_timeout` seconds for the body;
past either it is closed (408 if no request was being answered). Connections beyond
`max_connections` are closed as soon as they are made.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 29\r\nconnection: close\r\n\r\nthe request came too slowly\r\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take to send a request, and how many may connect at once."""

    header_timeout: float
    body_timeout: float
    max_connections: int


class GuardedHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with read deadlines and a connection cap (see the module)."""

    limits = ConnectionLimits(header_timeout=10, body_timeout=30, max_connections=1000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._request_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.close()
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = True
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.limits.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._request_started = False
        self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if not answering:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The protocol class for uvicorn's `http` option, with these limits."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
