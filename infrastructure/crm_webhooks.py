"""Deliveries to a CRM's endpoint, signed as the Standard Webhooks specification says."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from application.delivery import DeliveryResult
from infrastructure.crm_urls import REFUSED, CrmUrlPolicy
from infrastructure.http1_client import HttpError, KeepAliveClient

TIMEOUT_SECONDS = 15.0
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
    """`CrmEndpoint` over HTTP/1.1 with keep-alive (`infrastructure.http1_client`, which
    says why not httpx): 15 s timeouts, redirects are failures (never followed), only to
    addresses `policy` allows (checked as each connection is made), never through a
    proxy from the environment."""

    def __init__(self, policy: CrmUrlPolicy) -> None:
        self._policy = policy
        self._http = KeepAliveClient(policy, timeout=TIMEOUT_SECONDS)

    async def deliver(
        self, *, url: str, secret: str, delivery_id: str, body: str
    ) -> DeliveryResult:
        refused = self._policy.problem_with_scheme(url)
        if refused is not None:
            return DeliveryResult(status_code=None, latency_ms=0, error=f"{REFUSED}: {refused}")
        # The wall clock, not the service's `Clock`: the receiver checks the timestamp
        # against its own clock, to refuse a replayed delivery.
        timestamp = int(time.time())
        headers = [
            ("content-type", "application/json"),
            ("webhook-id", delivery_id),
            ("webhook-timestamp", str(timestamp)),
            ("webhook-signature", signature(secret, delivery_id, timestamp, body)),
            ("user-agent", "dmledger"),
        ]
        started = time.monotonic()
        try:
            answer = await self._http.post(url, headers, body.encode())
        except HttpError as error:
            latency = int((time.monotonic() - started) * 1000)
            return DeliveryResult(status_code=None, latency_ms=latency, error=error.name)
        latency = int((time.monotonic() - started) * 1000)
        retry_after = answer.headers.get("retry-after")
        return DeliveryResult(
            status_code=answer.status,
            latency_ms=latency,
            response=answer.body[:4096].decode(errors="replace")[:1024],
            retry_after_seconds=int(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    @property
    def closed(self) -> bool:
        """No connection is open (none was made, or they were closed)."""
        return self._http.idle_connections() == 0

    async def aclose(self) -> None:
        """Close the idle connections (a later use makes new ones)."""
        self._http.close()

    def close(self) -> None:
        """Close the idle connections (`Services.close`); closing a transport from
        outside its event loop only marks it, and its loop finishes the close."""
        self._http.close()
