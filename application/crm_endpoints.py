"""Where an account's CRM gets its webhooks, and with which secret."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from application.errors import InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.ports import SecretBox
from domain.account import Account
from domain.identity import account_id

EVENT_TYPES = (
    "message.received",
    "message.echoed",
    "message.unsent",
    "message.edited",
    "reaction.added",
    "reaction.removed",
    "messages.seen",
    "reply.sent",
    "reply.failed",
    "conversation.updated",
    "comment.received",
    "account.token_rejected",
    "account.sends_paused",
    "account.sends_resumed",
    "account.token_refresh_failed",
)


class CrmEndpointView(msgspec.Struct, frozen=True):
    """The endpoint; `secret` only once, when it is new."""

    url: str
    event_types: list[str]
    enabled: bool
    secret: str | None = None


class CrmEndpoints:
    """Use cases on an account's CRM endpoint."""

    def __init__(
        self,
        ledger: Ledger,
        box: SecretBox,
        new_secret: Callable[[], str],
        problem_with_url: Callable[[str], str | None],
    ) -> None:
        """`problem_with_url` says why a URL may not be an endpoint (one on our own
        network, say), or None; it may resolve the URL's host, so `set` blocks."""
        self._ledger = ledger
        self._box = box
        self._new_secret = new_secret
        self._problem_with_url = problem_with_url

    def set(
        self,
        ig_account_id: str,
        *,
        url: str,
        event_types: list[str] | None,
        rotate_secret: bool,
        by: str,
    ) -> Command[CrmEndpointView]:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise InvalidInput("url", "the endpoint must be an http(s) URL")
        chosen = list(event_types) if event_types is not None else list(EVENT_TYPES)
        unknown = sorted(set(chosen) - set(EVENT_TYPES))
        if unknown:
            raise InvalidInput("event_types", f"unknown event types: {', '.join(unknown)}")
        problem = self._problem_with_url(url)
        if problem is not None:
            raise InvalidInput("url", f"{problem}: {url}")
        secret = self._new_secret()
        sealed = self._box.encrypt(secret)

        def set_endpoint(changes: Changes) -> CrmEndpointView:
            account = changes.get(account_id(ig_account_id), Account, fresh=True)
            if account is None:
                raise NotFound(f"there is no Instagram account {ig_account_id}")
            fresh_secret = rotate_secret or account.crm_endpoint is None
            account.set_crm_endpoint(
                url=url, event_types=chosen, secret=sealed if fresh_secret else None, by=by
            )
            return CrmEndpointView(url, chosen, True, secret if fresh_secret else None)

        return set_endpoint

    def get(self, ig_account_id: str) -> CrmEndpointView:
        account = self._ledger.account(ig_account_id)
        if account is None or account.crm_endpoint is None:
            raise NotFound("this account has no CRM endpoint")
        endpoint = account.crm_endpoint
        return CrmEndpointView(endpoint["url"], endpoint["event_types"], endpoint["enabled"])

    def remove(self, ig_account_id: str, *, by: str) -> Command[None]:
        def remove(changes: Changes) -> None:
            account = changes.get(account_id(ig_account_id), Account, fresh=True)
            if account is None or not account.remove_crm_endpoint(by=by):
                raise NotFound("this account has no CRM endpoint")

        return remove
