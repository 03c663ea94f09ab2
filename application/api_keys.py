"""Issuing, checking and revoking API keys.

A key reads `dml_<key id>_<secret>`. The key id finds the `ApiKey` aggregate without a
lookup table; only a SHA-256 hash of the secret is stored (the secret is 256 random bits,
so a slow hash would add nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import cast

import msgspec
from cachetools import TTLCache

from application.errors import InvalidInput, NotFound, Unauthenticated
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.ports import Clock, KeyUsage
from domain import api_key as api_key_events
from domain.api_key import ApiKey, Role, api_key_id

PREFIX = "dml_"
CACHE_SECONDS = 2.0
"""How long a checked key is trusted before it is read again (a revocation elsewhere shows
within this time; in the process that revokes it, at once)."""
USAGE_EVERY_SECONDS = 60.0
KEYS_KEPT = 10_000
"""Key ids remembered at most, checked (known or not) and recently used: the least
recently used go first."""


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the key's id, name, role and account."""

    key_id: str
    name: str
    role: Role
    ig_account_id: str | None

    def may_read(self, ig_account_id: str) -> bool:
        """Whether the caller may see this account's data."""
        if self.role == Role.ADMIN:
            return True
        return (
            self.ig_account_id in (None, ig_account_id)
            if self.role == Role.AUDITOR
            else (self.ig_account_id == ig_account_id)
        )

    def may_act(self, ig_account_id: str) -> bool:
        """Whether the caller may change this account's conversations and rules."""
        if self.role == Role.ADMIN:
            return True
        return self.role == Role.ACCOUNT and self.ig_account_id == ig_account_id


class KeySummary(msgspec.Struct, frozen=True):
    """An API key as listed: never its secret."""

    key_id: str
    name: str
    role: str
    ig_account_id: str | None
    created_at: datetime
    revoked: bool
    last_used_at: datetime | None = None


class IssuedKey(msgspec.Struct, frozen=True):
    """A new key: `token` is shown this once and never stored."""

    key: KeySummary
    token: str


class ApiKeys:
    """Use cases on API keys."""

    def __init__(self, ledger: Ledger, usage: KeyUsage, clock: Clock) -> None:
        self._ledger = ledger
        self._usage = usage
        self._clock = clock
        # A key as read (None: no such key), trusted for CACHE_SECONDS.
        self._checked: TTLCache[str, ApiKey | None] = TTLCache(
            maxsize=KEYS_KEPT, ttl=CACHE_SECONDS, timer=time.monotonic
        )
        # Keys whose use was noted within USAGE_EVERY_SECONDS.
        self._touched: TTLCache[str, bool] = TTLCache(
            maxsize=KEYS_KEPT, ttl=USAGE_EVERY_SECONDS, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def issue(
        self, *, name: str, role: str, ig_account_id: str | None, by: str
    ) -> Command[IssuedKey]:
        """The command that issues a key."""
        name = name.strip()
        if not name:
            raise InvalidInput("name", "a key needs a name, to tell it apart when listed")
        try:
            chosen = Role(role)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidInput("role", f"role must be one of {roles}") from None
        if chosen == Role.ACCOUNT and not ig_account_id:
            raise InvalidInput("account", "an account key needs the account it is for")
        if chosen == Role.ADMIN and ig_account_id:
            raise InvalidInput("account", "an admin key is for every account; name none")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)

        def issue(changes: Changes) -> IssuedKey:
            if ig_account_id is not None and self._ledger.account(ig_account_id) is None:
                raise InvalidInput(
                    "account", f"Instagram account {ig_account_id} is not registered"
                )
            key = ApiKey(
                key_id=key_id,
                name=name,
                role=chosen.value,
                ig_account_id=ig_account_id,
                secret_hash=_hash(secret),
                by=by,
            )
            changes.add(key)
            return IssuedKey(key=_summary(key), token=f"{PREFIX}{key_id}_{secret}")

        return issue

    def revoke(self, key_id: str, *, by: str) -> Command[KeySummary]:
        """The command that revokes a key."""

        def revoke(changes: Changes) -> KeySummary:
            key = changes.get(api_key_id(key_id), ApiKey, fresh=True)
            if key is None:
                raise NotFound(f"there is no API key {key_id}")
            key.revoke(by=by)
            with self._lock:
                self._checked.pop(key_id, None)
            return _summary(key)

        return revoke

    def list(self) -> list[KeySummary]:
        """Every key ever issued, revoked ones included, oldest first."""
        keys = [k for k in self._ledger.aggregates(api_key_events.ISSUED) if isinstance(k, ApiKey)]
        used = self._usage.last_used(k.key_id for k in keys)
        return [_summary(k, used.get(k.key_id)) for k in keys]

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an `Authorization: Bearer <key>` header, or `Unauthenticated`."""
        if not authorization:
            raise Unauthenticated("an API key is needed: Authorization: Bearer <key>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.startswith(PREFIX):
            raise Unauthenticated("the Authorization header must be 'Bearer dml_...'")
        key_id, _, secret = token.removeprefix(PREFIX).strip().partition("_")
        key = self._key(key_id)
        if key is None or key.revoked or not hmac.compare_digest(key.secret_hash, _hash(secret)):
            raise Unauthenticated("this API key is not valid (unknown, mistyped or revoked)")
        self._note_use(key_id)
        return Principal(
            key_id=key.key_id, name=key.name, role=Role(key.role), ig_account_id=key.ig_account_id
        )

    def _key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            cached = self._checked.get(key_id, _UNCHECKED)
        if cached is not _UNCHECKED:
            return cast(ApiKey | None, cached)
        found = self._ledger.find(api_key_id(key_id)) if key_id.isalnum() else None
        key = found if isinstance(found, ApiKey) else None
        with self._lock:
            self._checked[key_id] = key
        return key

    def _note_use(self, key_id: str) -> None:
        with self._lock:
            if key_id in self._touched:
                return
            self._touched[key_id] = True
        self._usage.touch(key_id, datetime.fromtimestamp(self._clock.now_ms() / 1000, UTC))


_UNCHECKED = object()
"""Marks a key id that was not checked recently (None means: checked, no such key)."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _summary(key: ApiKey, last_used_at: datetime | None = None) -> KeySummary:
    return KeySummary(
        key_id=key.key_id,
        name=key.name,
        role=key.role,
        ig_account_id=key.ig_account_id,
        created_at=key.created_on,
        revoked=key.revoked,
        last_used_at=last_used_at,
    )
