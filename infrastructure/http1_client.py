"""A small HTTP/1.1 client with keep-alive, for CRM deliveries: one POST, one answer.

Why not httpx or httpcore: measured in one process against the benchmark's receiver
(benchmarks/README.md, P3), an `httpx.AsyncClient` POST cost ~2.2 ms of CPU at 64
requests in flight and httpcore's pool alone ~1.3 ms (its pool re-checks every connection,
through anyio, on each request and answer; past ~100 in flight both collapsed to tens of
requests a second), against ~0.09 ms for this client at 256 in flight. A delivery needs
little of what they do: no redirects (a 3xx is an answer like any other), no proxies, no
cookies, no HTTP/2, no streaming; a request is written at once and its answer read whole
(httptools' parser, in C; chunked or sized).

What it keeps of theirs: connections are made only to addresses the `CrmUrlPolicy`
allows, checked when each connection is made (the host resolved here, then every address
checked, as `CheckedNetworkBackend` does for httpx); TLS verifies the certificate against
the URL's host name with the process's `outgoing_tls()`, as the Graph API's clients do;
every step has a timeout; errors are named as httpx names them (ConnectError,
ConnectTimeout, ReadTimeout, RemoteProtocolError...), which the delivery's history shows.
Idle connections are reused for at most `KEEPALIVE_SECONDS`, and one the server closed is
never reused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from infrastructure.crm_urls import REFUSED, CrmUrlPolicy
from infrastructure.outgoing_tls import outgoing_tls

KEEPALIVE_SECONDS = 5.0
MAX_BODY = 64 * 1024
"""Bytes of an answer's body kept (the rest is read and dropped)."""
MAX_IDLE_PER_ORIGIN = 256


class HttpError(Exception):
    """A request that got no answer; `name` is what the delivery's history shows."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(detail or name)
        self.name = name


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Connection(asyncio.Protocol):
    transport: asyncio.Transport | None = None
    closed: bool = False
    idle_since: float = 0.0
    _answer: asyncio.Future[Answer] | None = None
    _headers: dict[str, str] = field(default_factory=dict)
    _body: bytearray = field(default_factory=bytearray)
    _parser: httptools.HttpResponseParser | None = None
    _status: int | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError("RemoteProtocolError", "the server closed the connection"))

    def eof_received(self) -> bool | None:
        self.closed = True
        if self._status is not None:
            # An answer without a length ends where the connection does.
            self._answer_with(self._status)
        self._fail(HttpError("RemoteProtocolError", "the server closed the connection"))
        return None

    def send(self, request: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._status = {}, bytearray(), None
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(request)
        return self._answer

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            self.close()  # nothing was asked
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(HttpError("RemoteProtocolError", str(error)))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if len(self._body) < MAX_BODY:
            self._body += body[: MAX_BODY - len(self._body)]

    def on_message_complete(self) -> None:
        parser, self._parser = self._parser, None
        assert parser is not None
        if not parser.should_keep_alive():
            self.close()
        self._answer_with(parser.get_status_code())

    def _answer_with(self, status: int) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result(Answer(status, self._headers, bytes(self._body)))

    def _fail(self, error: HttpError) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is None or self._loop is None or self._loop.is_closed():
            # A closed event loop took its transports with it (closed from outside, at
            # shutdown): nothing is left to close here.
            return
        self.transport.close()


class KeepAliveClient:
    """POSTs over reused HTTP/1.1 connections, to addresses the policy allows."""

    def __init__(self, policy: CrmUrlPolicy, *, timeout: float) -> None:
        self._policy = policy
        self._timeout = timeout
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        parts = urlsplit(url)
        host, scheme = parts.hostname or "", parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c in target or c in host for c in " \r\n\t"):
            raise HttpError("LocalProtocolError", "the URL holds white space")
        authority = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host:
            authority = f"[{host}]" + (f":{parts.port}" if parts.port else "")
        lines = [f"POST {target} HTTP/1.1", f"host: {authority}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"content-length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        origin = (scheme, host, port)
        connection = self._reusable(origin)
        if connection is None:
            connection = await self._connect(scheme, host, port)
        try:
            async with asyncio.timeout(self._timeout):
                answer = await connection.send(request)
        except TimeoutError:
            connection.close()
            raise HttpError("ReadTimeout") from None
        except BaseException:
            connection.close()
            raise
        if not connection.closed:
            connection.idle_since = time.monotonic()
            idle = self._idle.setdefault(origin, deque())
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(connection)
            else:
                connection.close()
        return answer

    def _reusable(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < KEEPALIVE_SECONDS:
                return connection
            connection.close()
        return None

    async def _connect(self, scheme: str, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                addresses = await asyncio.to_thread(self._policy.resolve, host, port)
        except (OSError, UnicodeError, TimeoutError) as error:
            raise HttpError("ConnectError", f"cannot resolve {host}: {error}") from None
        if not addresses:
            raise HttpError("ConnectError", f"{host} resolves to no address")
        problem = self._policy.problem_with_addresses(host, addresses)
        if problem is not None:
            raise HttpError(f"{REFUSED}: {problem}")
        tls = self._tls_context() if scheme == "https" else None
        failure = HttpError("ConnectError", f"cannot connect to {host}")
        for address in addresses:
            try:
                async with asyncio.timeout(self._timeout):
                    _, connection = await loop.create_connection(
                        _Connection, address, port, ssl=tls, server_hostname=host if tls else None
                    )
                return connection
            except TimeoutError:
                failure = HttpError("ConnectTimeout", f"connecting to {host} timed out")
            except (OSError, ssl.SSLError) as error:
                failure = HttpError("ConnectError", f"cannot connect to {host}: {error}")
        raise failure

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = outgoing_tls()
        return self._tls

    def idle_connections(self) -> int:
        return sum(1 for idle in self._idle.values() for c in idle if not c.closed)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
