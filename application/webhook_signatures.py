"""The app secrets of the served accounts: a body is authenticated before it is read.

A body whose `X-Hub-Signature-256` matches none of them is refused without being parsed,
whatever accounts it names, so an unsigned or forged body costs an HMAC per secret and
never builds a Python object (nor tells its sender which accounts are served). A
deployment serves few Meta apps, so few distinct secrets. The ingest command still
checks the signature against the app secret of each served account the body addresses,
decrypted once and kept in `DecryptedAppSecrets`.

After a rotation of an app secret (`CredentialsRotated`) the old secret verifies nothing
more, in any process, from the moment the rotation is committed: the ingest command checks
each body against the account read fresh (on PostgreSQL a batch decided on an account that
has moved on is refused at commit and decided again; elsewhere it catches up first), and
`DecryptedAppSecrets` keys each secret by the ciphertext it came from.

No grace period is kept for the old secret. What Meta's retries need is the secret Meta
signs with: once the secret is reset in Meta's dashboard that is the new one, which
verifies as soon as its rotation is stored (what was refused in between, Meta delivers
again). A delivery signed with the old secret before the reset and retried after the
rotation would be refused, if Meta does not sign a retry again (it does not say): that is
the price of the choice, since a secret is mostly rotated because it may have leaked, and
a grace period would let the leaked secret forge webhooks for its length.
The old plaintext is dropped at once in the process that rotates (and from
`ServedAppSecrets`, which then reloads), elsewhere at that account's next webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable

from cachetools import LRUCache

from application.errors import InvalidSignature, StorageUnavailable
from application.ledger import Ledger
from application.ports import SecretBox
from domain.account import Account

SIGNATURE_PREFIX = "sha256="
RELOAD_AFTER = 1.0
"""Seconds between two reloads of the secrets from the store when a body matches none
(an account registered by another process, say): forged bodies cannot make every
request a read of every account."""
APP_SECRETS_KEPT = 10_000
"""Accounts whose decrypted app secret the ingest keeps (the least recently used go)."""


class ServedAppSecrets:
    """The distinct app secrets of the accounts that serve webhooks, kept in memory.

    Not bounded by a size: a body must be checked against all of them, and there are as
    many as the Meta apps the served accounts belong to (few; accounts of one app share
    its secret).
    """

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
        """An account changed in this process (its app secret may have been rotated):
        drop the secrets, so the next body is checked against those read again."""
        self._stale = True
        self._secrets = None


class DecryptedAppSecrets:
    """The decrypted app secret of each recently verified account: decrypting on every
    webhook would be slow.

    At most `kept` accounts (least recently used go first). Each secret is held with the
    ciphertext it came from, so a rotated or re-encrypted secret replaces the held one the
    first time the account is read afterwards, whichever process rotated it; `forget`
    drops them all (wired to account changes of this process).
    """

    def __init__(self, box: SecretBox, *, kept: int = APP_SECRETS_KEPT) -> None:
        self._box = box
        self._held: LRUCache[str, tuple[str, bytes]] = LRUCache(maxsize=kept)
        self._lock = threading.Lock()

    def of(self, account: Account) -> bytes:
        """The account's app secret, decrypted."""
        with self._lock:
            held = self._held.get(account.ig_account_id)
        if held is not None and held[0] == account.app_secret:
            return held[1]
        secret = self._box.decrypt(account.app_secret).encode()
        with self._lock:
            self._held[account.ig_account_id] = (account.app_secret, secret)
        return secret

    def forget(self) -> None:
        """Drop every held secret (an account changed: its app secret may be rotated)."""
        with self._lock:
            self._held.clear()

    def __len__(self) -> int:
        return len(self._held)


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
