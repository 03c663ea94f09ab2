"""The CRM delivery client against real servers on loopback that answer in every way HTTP/1.1
allows: sized or chunked, keeping the connection or closing it, late or never."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from application.delivery import DeliveryResult
from infrastructure.crm_urls import CrmUrlPolicy
from infrastructure.crm_webhooks import StandardWebhooksClient, new_secret
from infrastructure.http1_client import HttpError, KeepAliveClient

Answer = Callable[[bytes], bytes | None]
"""Given a request's head and body, the bytes to answer (None: close without answering)."""

ALLOWED = CrmUrlPolicy(allow_private=True, https_only=False)


class Server:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/crm/hook?account=1"
    finally:
        listening.close()


def sized(status: str, body: bytes, *extra: bytes) -> Answer:
    headers = b"".join(h + b"\r\n" for h in extra)
    return lambda _: (
        f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode() + headers + b"\r\n" + body
    )


async def deliver(client: StandardWebhooksClient, url: str, n: int = 1) -> DeliveryResult:
    return await client.deliver(url=url, secret=new_secret(), delivery_id=f"d-{n}", body='{"a":1}')


async def test_deliveries_reuse_one_connection_and_send_the_signed_request() -> None:
    client = StandardWebhooksClient(ALLOWED)
    async with serving(sized("200 OK", b'{"ok":true}')) as (server, url):
        first = await deliver(client, url, 1)
        second = await deliver(client, url, 2)
    await client.aclose()

    assert first.status_code == 200
    assert second.status_code == 200
    assert first.response == '{"ok":true}'
    assert server.connections == 1
    head = server.requests[0].split(b"\r\n\r\n")[0].decode()
    assert head.startswith("POST /crm/hook?account=1 HTTP/1.1\r\n")
    for header in ("host: 127.0.0.1:", "webhook-id: d-1", "webhook-signature: v1,"):
        assert f"\r\n{header}" in head
    assert server.requests[0].endswith(b'\r\n\r\n{"a":1}')


async def test_a_chunked_answer_and_a_retry_after_are_read() -> None:
    def chunked(_: bytes) -> bytes:
        return (
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n"
            b"retry-after: 30\r\n\r\n4\r\nbusy\r\n5\r\n, sir\r\n0\r\n\r\n"
        )

    client = StandardWebhooksClient(ALLOWED)
    async with serving(chunked) as (server, url):
        result = await deliver(client, url)
        again = await deliver(client, url, 2)
    await client.aclose()

    assert result.status_code == 503
    assert result.response == "busy, sir"
    assert result.retry_after_seconds == 30
    assert again.status_code == 503
    assert server.connections == 1


async def test_a_server_that_closes_after_each_answer_gets_a_new_connection_each_time() -> None:
    client = StandardWebhooksClient(ALLOWED)
    async with serving(sized("200 OK", b"ok", b"connection: close")) as (server, url):
        results = [await deliver(client, url, n) for n in range(3)]
    await client.aclose()

    assert [r.status_code for r in results] == [200, 200, 200]
    assert server.connections == 3


async def test_an_answer_ended_by_closing_the_connection_is_read() -> None:
    client = StandardWebhooksClient(ALLOWED)
    async with serving(lambda _: b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end") as (
        _,
        url,
    ):
        result = await deliver(client, url)
    await client.aclose()

    assert result.status_code == 200
    assert result.response == "until the end"


async def test_a_redirect_is_an_answer_not_followed() -> None:
    client = StandardWebhooksClient(ALLOWED)
    async with serving(sized("302 Found", b"", b"location: http://127.0.0.1:9/elsewhere")) as (
        server,
        url,
    ):
        result = await deliver(client, url)
    await client.aclose()

    assert result.status_code == 302
    assert len(server.requests) == 1


async def test_a_server_that_closes_without_answering_is_a_protocol_error() -> None:
    client = StandardWebhooksClient(ALLOWED)
    async with serving(lambda _: None) as (_, url):
        result = await deliver(client, url)
    await client.aclose()

    assert result.status_code is None
    assert result.error == "RemoteProtocolError"


async def test_a_server_that_never_answers_times_out() -> None:
    hold = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    listening = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    client = KeepAliveClient(ALLOWED, timeout=0.3)
    with pytest.raises(HttpError) as raised:
        await client.post(f"http://127.0.0.1:{port}/", [], b"{}")
    hold.set()
    listening.close()
    client.close()

    assert raised.value.name == "ReadTimeout"


async def test_nothing_listening_is_a_connect_error_and_a_private_address_is_refused() -> None:
    client = StandardWebhooksClient(ALLOWED)
    closed = await deliver(client, "http://127.0.0.1:9/")
    strict = StandardWebhooksClient(CrmUrlPolicy(allow_private=False, https_only=False))
    refused = await deliver(strict, "http://127.0.0.1:9/")

    assert closed.error == "ConnectError"
    assert (refused.error or "").startswith("refused: ")
