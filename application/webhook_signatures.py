"""The app secrets of the served accounts: a body is authenticated before it is read.

A body whose `X-Hub-Signature-256` matches none of them is refused without being parsed,
whatever accounts it names, so an unsigned or forged body costs an HMAC per secret and
never builds a Python object (nor tells its sender which accounts are served). A
deployment serves few Meta apps, so few distinct secrets. The ingest command still
checks the signature against the app secret of each served account the body addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable

from application.errors import InvalidSignature, StorageUnavailable
from application.ledger import Ledger
from application.ports import SecretBox

SIGNATURE_PREFIX = "sha256="
RELOAD_AFTER = 1.0
"""Seconds between two reloads of the secrets from the store when a body matches none
(an account registered by another process, say): forged bodies cannot make every
request a read of every account."""


class ServedAppSecrets:
    """The distinct app secrets of the accounts that serve webhooks, kept in memory."""

    def __init__(
        self,
        ledger: Ledger,
        box: SecretBox,
        *,
        reload_after: float = RELOAD_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._box = box
        self._reload_after = reload_after
        self._clock = clock
        self._secrets: tuple[bytes, ...] | None = None
        self._stale = True
        self._tried_at = -reload_after
        self._lock = threading.Lock()
        ledger.on_account_change(self.forget)

    def signed(self, body: bytes, signature: str | None) -> bool:
        """Whether `signature` is the HMAC of `body` with one of the secrets known now.

        Raises `InvalidSignature` when the header is missing or malformed."""
        given = signature_digest(signature).encode()
        for secret in self._secrets or ():
            digest = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
            if hmac.compare_digest(digest, given):
                return True
        return False

    def may_reload(self) -> bool:
        """Whether the secrets may be out of date and were not reloaded a moment ago."""
        return self._secrets is None or (
            self._stale or self._clock() - self._tried_at >= self._reload_after
        )

    def reload(self) -> None:
        """Read the secrets from the store again (blocking: call it from a worker thread)."""
        with self._lock:
            if not self.may_reload():
                return
            self._tried_at = self._clock()
            self._stale = False
            try:
                accounts = self._ledger.accounts()
            except Exception:
                self._stale = True
                raise StorageUnavailable("the event store is unavailable; try again") from None
            ciphertexts = {a.app_secret for a in accounts if a.serves_webhooks}
            self._secrets = tuple({self._box.decrypt(c).encode() for c in ciphertexts})

    def forget(self) -> None:
        """An account changed in this process: reload before the next refusal."""
        self._stale = True


def signature_digest(signature: str | None) -> str:
    """The hex digest of an `X-Hub-Signature-256` header, or `InvalidSignature`."""
    if not signature:
        raise InvalidSignature("the X-Hub-Signature-256 header is missing")
    if not signature.startswith(SIGNATURE_PREFIX):
        raise InvalidSignature("X-Hub-Signature-256 must look like 'sha256=<hex digest>'")
    return signature.removeprefix(SIGNATURE_PREFIX).strip().lower()


NOT_SIGNED = "X-Hub-Signature-256 does not match the app secret of an account served here"
"""The one answer to a body signed with no secret we know, whatever accounts it names."""


def refuse() -> InvalidSignature:
    return InvalidSignature(NOT_SIGNED)
