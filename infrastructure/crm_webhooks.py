"""Deliveries to a CRM's endpoint, signed as the Standard Webhooks specification says."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time

import httpcore
import httpx

from application.delivery import DeliveryResult
from infrastructure.crm_urls import REFUSED, CheckedNetworkBackend, CrmUrlPolicy
from infrastructure.loop_clients import close_from_outside

TIMEOUT = httpx.Timeout(15.0)
CLIENTS = 16
CONNECTIONS_PER_CLIENT = 16
"""Deliveries go out over 16 clients of 16 keep-alive connections each, in turn.

httpx's pool looks at every one of its connections on each request and each response
(`_assign_requests_to_connections`): with one pool of 256 connections that took ~80% of
the dispatcher's time at P3 load; pools of 16 keep the same concurrency for much less."""
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def new_secret() -> str:
    """A fresh endpoint secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, delivery_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{delivery_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class StandardWebhooksClient:
    """`CrmEndpoint` over HTTP: 15 s timeouts, redirects are failures (never followed),
    only to addresses `policy` allows (checked as each connection is made), never
    through a proxy from the environment."""

    def __init__(self, policy: CrmUrlPolicy) -> None:
        self._policy = policy
        self._clients: list[httpx.AsyncClient] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn = 0

    def _http(self) -> httpx.AsyncClient:
        if not self._clients or self._clients[0].is_closed:
            # Made on first use, inside the event loop that uses them (again after a close).
            self._loop = asyncio.get_running_loop()
            limits = httpx.Limits(
                max_connections=CONNECTIONS_PER_CLIENT,
                max_keepalive_connections=CONNECTIONS_PER_CLIENT,
            )
            self._clients = [
                httpx.AsyncClient(
                    timeout=TIMEOUT,
                    follow_redirects=False,
                    trust_env=False,
                    transport=_checked_transport(self._policy, limits),
                )
                for _ in range(CLIENTS)
            ]
        self._turn = (self._turn + 1) % len(self._clients)
        return self._clients[self._turn]

    async def deliver(
        self, *, url: str, secret: str, delivery_id: str, body: str
    ) -> DeliveryResult:
        # The wall clock, not the service's `Clock`: the receiver checks the timestamp
        # against its own clock, to refuse a replayed delivery.
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, delivery_id, timestamp, body),
            "user-agent": "dmledger",
        }
        refused = self._policy.problem_with_scheme(url)
        if refused is not None:
            return DeliveryResult(status_code=None, latency_ms=0, error=f"{REFUSED}: {refused}")
        started = time.monotonic()
        try:
            response = await self._http().post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as error:
            latency = int((time.monotonic() - started) * 1000)
            reason = str(error) if str(error).startswith(REFUSED) else type(error).__name__
            return DeliveryResult(status_code=None, latency_ms=latency, error=reason)
        latency = int((time.monotonic() - started) * 1000)
        retry_after = response.headers.get("retry-after")
        return DeliveryResult(
            status_code=response.status_code,
            latency_ms=latency,
            response=response.text[:1024],
            retry_after_seconds=int(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    @property
    def closed(self) -> bool:
        """No connection is open (none was made, or the clients were closed)."""
        return all(client.is_closed for client in self._clients)

    async def aclose(self) -> None:
        """Close the connections, in the event loop that made them (a later use makes
        new ones)."""
        for client in self._clients:
            await client.aclose()

    def close(self) -> None:
        """Close the connections from outside their event loop (`Services.close`)."""
        for client in self._clients:
            if self._loop is not None:
                close_from_outside(client, self._loop)


def _checked_transport(policy: CrmUrlPolicy, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport, connecting through `CheckedNetworkBackend`.

    httpx takes no network backend; its connection pool (httpcore's) does, and makes
    every connection through the one it holds, so it is replaced there."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        msg = "httpx's transport no longer has an httpcore pool with a network backend"
        raise RuntimeError(msg)
    pool._network_backend = CheckedNetworkBackend(policy)
    return transport
