"""The account's entry points: ice breakers and the persistent menu, as Meta takes them.

Both are fields of Meta's Messenger Profile API for Instagram (`POST /{ig_id}/
messenger_profile` with `platform=instagram`; Meta sets the whole field at once). Here they
are checked against Meta's documented limits before anything is recorded, so that a value
Meta would refuse is a 422 naming the field, not a push that fails later; they are changed
as account events (`IceBreakersChanged`, `PersistentMenuChanged`), and shown with what came
of the last push (`application/entry_point_pusher.py` pushes them).

Meta's limits (Instagram Platform docs, ice breakers and persistent menu):
- ice breakers: a list of `{locale, call_to_actions: [{question, payload}]}`, at most 4
  questions per locale, a `default` locale required;
- persistent menu: a list of `{locale, call_to_actions: [{type, title, url | payload}]}`,
  `type` is `web_url` or `postback`, at most 20 items, titles of at most 30 characters,
  payloads of at most 1000, a `default` locale required; `composer_input_disabled` and
  `webview_height_ratio` are not available on Instagram (refused as unknown fields).
Meta documents no length for an ice breaker's question: we hold it to `QUESTION_MAX`.

A little over 300 lines: Meta's limits, the two use cases and their views read best beside
the checks they share (the locales, the call to actions).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from application.errors import InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from domain.account import Account
from domain.identity import account_id

ICE_BREAKER_QUESTIONS_MAX = 4
QUESTION_MAX = 80
"""Ours: Meta documents no limit, and a longer question does not fit its button."""
MENU_ITEMS_MAX = 20
MENU_TITLE_MAX = 30
PAYLOAD_MAX = 1000
URL_MAX = 2000
LOCALES_MAX = 100
_LOCALE = re.compile(r"^(default|[a-z]{2}_[A-Z]{2})$")

RETRY_SCHEDULE_SECONDS = (30, 120, 600, 3600)
"""After the n-th failed push that may succeed later, the next comes this long after it
(the last, hourly, from then on)."""


def next_attempt_at(failure: dict[str, Any]) -> int | None:
    """When (ms) a failed push is tried again, or None if only a new change retries it."""
    if not failure["retryable"]:
        return None
    delays = RETRY_SCHEDULE_SECONDS
    delay = delays[min(failure["attempt"], len(delays)) - 1]
    return int(failure["at"]) + delay * 1000


class IceBreakerQuestion(msgspec.Struct, forbid_unknown_fields=True):
    question: str
    payload: str
    """Sent back in the `postback` webhook when the question is tapped."""


class IceBreakers(msgspec.Struct, forbid_unknown_fields=True):
    """The questions shown to people in `locale` (`default`: everyone else)."""

    locale: str
    call_to_actions: list[IceBreakerQuestion]


class MenuItem(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["web_url", "postback"]
    title: str
    url: str | None = None
    """For `web_url`: the https page opened in the in-app browser."""
    payload: str | None = None
    """For `postback`: sent back in the `postback` webhook when the item is tapped."""


class PersistentMenu(msgspec.Struct, forbid_unknown_fields=True):
    """The menu shown to people in `locale` (`default`: everyone else)."""

    locale: str
    call_to_actions: list[MenuItem]


class SetIceBreakers(msgspec.Struct, forbid_unknown_fields=True):
    """The account's ice breakers, replacing the ones set before (Meta's shape)."""

    ice_breakers: list[IceBreakers]


class SetPersistentMenu(msgspec.Struct, forbid_unknown_fields=True):
    """The account's persistent menu, replacing the one set before (Meta's shape)."""

    persistent_menu: list[PersistentMenu]


def _text(value: str, field: str, limit: int) -> None:
    if not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"at most {limit} characters (Meta's limit)")
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL")


def _locales(locales: list[str], field: str) -> None:
    if not locales:
        raise InvalidInput(field, "give at least one locale (remove them with DELETE)")
    if len(locales) > LOCALES_MAX:
        raise InvalidInput(field, f"at most {LOCALES_MAX} locales")
    seen: set[str] = set()
    for index, locale in enumerate(locales):
        if not _LOCALE.match(locale):
            raise InvalidInput(f"{field}[{index}].locale", 'a locale is "default" or like en_US')
        if locale in seen:
            raise InvalidInput(f"{field}[{index}].locale", f"locale {locale} is given twice")
        seen.add(locale)
    if "default" not in seen:
        raise InvalidInput(field, 'Meta requires a "default" locale')


def check_ice_breakers(value: SetIceBreakers) -> list[dict[str, Any]]:
    """The ice breakers in Meta's shape, or `InvalidInput` naming the field at fault."""
    _locales([entry.locale for entry in value.ice_breakers], "ice_breakers")
    for index, entry in enumerate(value.ice_breakers):
        field = f"ice_breakers[{index}].call_to_actions"
        if not entry.call_to_actions:
            raise InvalidInput(field, "give at least one question")
        if len(entry.call_to_actions) > ICE_BREAKER_QUESTIONS_MAX:
            where = f"{field}[{ICE_BREAKER_QUESTIONS_MAX}]"
            raise InvalidInput(where, f"at most {ICE_BREAKER_QUESTIONS_MAX} questions (Meta's)")
        for position, question in enumerate(entry.call_to_actions):
            _text(question.question, f"{field}[{position}].question", QUESTION_MAX)
            _text(question.payload, f"{field}[{position}].payload", PAYLOAD_MAX)
    return [msgspec.to_builtins(entry) for entry in value.ice_breakers]


def check_persistent_menu(value: SetPersistentMenu) -> list[dict[str, Any]]:
    """The persistent menu in Meta's shape, or `InvalidInput` naming the field at fault."""
    _locales([entry.locale for entry in value.persistent_menu], "persistent_menu")
    menu: list[dict[str, Any]] = []
    for index, entry in enumerate(value.persistent_menu):
        field = f"persistent_menu[{index}].call_to_actions"
        if not entry.call_to_actions:
            raise InvalidInput(field, "give at least one item")
        if len(entry.call_to_actions) > MENU_ITEMS_MAX:
            raise InvalidInput(f"{field}[{MENU_ITEMS_MAX}]", f"at most {MENU_ITEMS_MAX} items")
        items = [
            _menu_item(item, f"{field}[{position}]")
            for position, item in enumerate(entry.call_to_actions)
        ]
        menu.append({"locale": entry.locale, "call_to_actions": items})
    return menu


def _menu_item(item: MenuItem, field: str) -> dict[str, Any]:
    _text(item.title, f"{field}.title", MENU_TITLE_MAX)
    if item.type == "web_url":
        if item.payload is not None:
            raise InvalidInput(f"{field}.payload", "a web_url item has a url, not a payload")
        if item.url is None:
            raise InvalidInput(f"{field}.url", "a web_url item needs a url")
        _text(item.url, f"{field}.url", URL_MAX)
        parts = urlsplit(item.url)
        if parts.scheme != "https" or not parts.hostname:
            raise InvalidInput(f"{field}.url", "the url must be https://host/...")
        return {"type": "web_url", "title": item.title, "url": item.url}
    if item.url is not None:
        raise InvalidInput(f"{field}.url", "a postback item has a payload, not a url")
    if item.payload is None:
        raise InvalidInput(f"{field}.payload", "a postback item needs a payload")
    _text(item.payload, f"{field}.payload", PAYLOAD_MAX)
    return {"type": "postback", "title": item.title, "payload": item.payload}


class PushError(msgspec.Struct, frozen=True):
    """Meta's refusal (or silence) at the last push."""

    code: int | None
    subcode: int | None
    message: str
    at: datetime
    attempt: int
    retrying: bool
    """Transient: it is pushed again at `next_attempt_at`; else it waits for a change."""
    next_attempt_at: datetime | None


class Push(msgspec.Struct, frozen=True):
    """Where the current value stands at Meta."""

    status: Literal["none", "pending", "applied", "failed"]
    """none: never set; pending: not pushed yet; applied: Meta took it; failed: see error."""
    version: int
    applied_version: int
    applied_at: datetime | None
    error: PushError | None


class IceBreakersView(msgspec.Struct, frozen=True):
    ice_breakers: list[dict[str, Any]] | None
    push: Push


class PersistentMenuView(msgspec.Struct, frozen=True):
    persistent_menu: list[dict[str, Any]] | None
    push: Push


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


def push_of(account: Account, name: str) -> Push:
    """What came of pushing the account's `name` entry point."""
    state = account.entry_point(name)
    failure = state["failure"]
    error = None
    if failure is not None:
        retry = next_attempt_at(failure)
        error = PushError(
            code=failure["code"],
            subcode=failure["subcode"],
            message=failure["message"],
            at=_time(failure["at"]),  # type: ignore[arg-type]
            attempt=failure["attempt"],
            retrying=retry is not None,
            next_attempt_at=_time(retry),
        )
    if state["version"] == 0:
        status: Literal["none", "pending", "applied", "failed"] = "none"
    elif state["applied_version"] == state["version"]:
        status = "applied"
    else:
        status = "failed" if error is not None else "pending"
    return Push(
        status=status,
        version=state["version"],
        applied_version=state["applied_version"],
        applied_at=_time(state["applied_at"]),
        error=error,
    )


class EntryPoints:
    """Use cases on the account's ice breakers and persistent menu."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def _account(self, ig_account_id: str) -> Account:
        account = self._ledger.account(ig_account_id)
        if account is None:
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        return account

    def ice_breakers(self, ig_account_id: str) -> IceBreakersView:
        account = self._account(ig_account_id)
        value = account.entry_point("ice_breakers")["value"]
        return IceBreakersView(ice_breakers=value, push=push_of(account, "ice_breakers"))

    def persistent_menu(self, ig_account_id: str) -> PersistentMenuView:
        account = self._account(ig_account_id)
        value = account.entry_point("persistent_menu")["value"]
        return PersistentMenuView(persistent_menu=value, push=push_of(account, "persistent_menu"))

    def set_ice_breakers(
        self, ig_account_id: str, value: SetIceBreakers | None, *, by: str
    ) -> Command[IceBreakersView]:
        """The command that sets (None: removes) the ice breakers; an equal value records
        nothing."""
        checked = check_ice_breakers(value) if value is not None else None

        def change(changes: Changes) -> IceBreakersView:
            account = _changing(changes, ig_account_id)
            account.change_ice_breakers(ice_breakers=checked, by=by)
            value = account.entry_point("ice_breakers")["value"]
            return IceBreakersView(ice_breakers=value, push=push_of(account, "ice_breakers"))

        return change

    def set_persistent_menu(
        self, ig_account_id: str, value: SetPersistentMenu | None, *, by: str
    ) -> Command[PersistentMenuView]:
        """The command that sets (None: removes) the persistent menu; an equal value
        records nothing."""
        checked = check_persistent_menu(value) if value is not None else None

        def change(changes: Changes) -> PersistentMenuView:
            account = _changing(changes, ig_account_id)
            account.change_persistent_menu(persistent_menu=checked, by=by)
            value = account.entry_point("persistent_menu")["value"]
            return PersistentMenuView(
                persistent_menu=value, push=push_of(account, "persistent_menu")
            )

        return change


def _changing(changes: Changes, ig_account_id: str) -> Account:
    account = changes.get(account_id(ig_account_id), Account, fresh=True)
    if account is None:
        raise NotFound(f"there is no Instagram account {ig_account_id}")
    return account
