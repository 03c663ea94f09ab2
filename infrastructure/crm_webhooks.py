"""Deliveries to a CRM's endpoint, signed as the Standard Webhooks specification says."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import httpx

from application.delivery import DeliveryResult

TIMEOUT = httpx.Timeout(15.0)
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
    """`CrmEndpoint` over HTTP: 15 s timeouts, redirects are failures (never followed)."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=TIMEOUT,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
            )
        return self._client

    async def deliver(
        self, *, url: str, secret: str, delivery_id: str, body: str
    ) -> DeliveryResult:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, delivery_id, timestamp, body),
            "user-agent": "dmledger",
        }
        started = time.monotonic()
        try:
            response = await self._http().post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as error:
            latency = int((time.monotonic() - started) * 1000)
            return DeliveryResult(status_code=None, latency_ms=latency, error=type(error).__name__)
        latency = int((time.monotonic() - started) * 1000)
        retry_after = response.headers.get("retry-after")
        return DeliveryResult(
            status_code=response.status_code,
            latency_ms=latency,
            response=response.text[:1024],
            retry_after_seconds=int(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
