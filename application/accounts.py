"""Registering and reading the Instagram accounts dmledger serves.

A little over 300 lines: the account's use cases with the query types they answer
(`AccountSummary`, `SendingState`) and the settings' validation they share.
"""

from __future__ import annotations

import hmac
import re
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from application.errors import AccountAlreadyRegistered, InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.ports import Clock, SecretBox
from application.rules import WEEKDAYS, check_template
from domain.account import (
    CREDENTIALS,
    DEFAULT_SETTINGS,
    Account,
    AccountError,
    AccountStatus,
)
from domain.identity import account_id

_IG_ID = re.compile(r"^[0-9]{1,32}$")


class Credential(msgspec.Struct, frozen=True):
    """Whether a credential is set, and when it was last rotated: never its value."""

    set: bool
    rotated_at: datetime | None


TOKEN_LIFETIME_MS = 60 * 24 * 60 * 60 * 1000
"""How long Meta's long-lived Instagram tokens last from when they were issued."""
TOKEN_EXPIRING_MS = 10 * 24 * 60 * 60 * 1000
"""A token with less than this left is expiring: the dispatcher refreshes it after 50 days,
so one this close to its end was not refreshed."""


class SendingState(msgspec.Struct, frozen=True):
    """What stands between the account and Instagram's Send API now."""

    token_rejected: bool
    """Meta refused the access token (code 190): sends wait for new credentials."""
    sends_paused_until: datetime | None
    """Meta's rate limit paused the account's sends until then (null: not paused)."""
    token_refresh_failed_at: datetime | None
    """The last refresh of the token that failed, since it was last rotated."""
    token_expires_at: datetime
    """When the access token runs out, 60 days after it was issued or refreshed."""
    token_expiring: bool
    """Less than 10 days are left: it was not refreshed in time."""

    @classmethod
    def of(cls, account: Account, now: int) -> SendingState:
        issued = account.rotated_at.get("access_token") or _ms(account.created_on)
        paused = account.sends_paused_until
        return cls(
            token_rejected=account.token_rejected,
            sends_paused_until=_time(paused) if paused is not None and paused > now else None,
            token_refresh_failed_at=_time(account.token_refresh_failed_at),
            token_expires_at=_time(issued + TOKEN_LIFETIME_MS),  # type: ignore[arg-type]
            token_expiring=issued + TOKEN_LIFETIME_MS - now < TOKEN_EXPIRING_MS,
        )


class AccountSummary(msgspec.Struct, frozen=True):
    """An account as shown to operators: never a credential, only whether each is set."""

    ig_account_id: str
    username: str
    display_name: str | None
    status: str
    """An `AccountStatus` (a plain string on the wire: the API document stays as it was)."""
    registered_at: datetime
    settings: dict[str, Any]
    credentials: dict[str, Credential]
    sending: SendingState

    @classmethod
    def of(cls, account: Account, *, now: int) -> AccountSummary:
        """The account as shown at `now` (ms since the epoch)."""
        return cls(
            ig_account_id=account.ig_account_id,
            username=account.username,
            display_name=account.display_name,
            status=str(account.status),
            registered_at=account.created_on,
            # Settings added since the account was made show their default.
            settings={**DEFAULT_SETTINGS, **account.settings},
            credentials={
                name: Credential(
                    set=bool(getattr(account, name)),
                    rotated_at=_time(account.rotated_at.get(name)),
                )
                for name in CREDENTIALS
            },
            sending=SendingState.of(account, now),
        )


class SettingsChange(msgspec.Struct, forbid_unknown_fields=True):
    """Settings to change; those left out stay as they are."""

    auto_reply: bool | msgspec.UnsetType = msgspec.UNSET
    fallback_reply: str | msgspec.UnsetType | None = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    business_hours: dict[str, list[list[str]]] | msgspec.UnsetType = msgspec.UNSET
    """mon..sun to [["09:00", "17:00"], ...], in the account's time zone."""
    auto_resume_after_hours: int | msgspec.UnsetType | None = msgspec.UNSET
    """Resume automation this many hours after a person took over (null: never)."""
    content_retention_days: int | msgspec.UnsetType | None = msgspec.UNSET
    """Destroy the content of messages older than this many days (null: keep it)."""
    primary_receiver: bool | msgspec.UnsetType = msgspec.UNSET
    """Whether dmledger is the primary receiver of Meta's handover protocol: it owns a
    thread no app passed or took. While another app owns a thread, automation holds."""


def validate_settings(change: SettingsChange) -> dict[str, Any]:
    """The changed settings, or `InvalidInput` naming the field at fault."""
    values = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not msgspec.UNSET}
    if values.get("fallback_reply"):
        check_template(values["fallback_reply"], "settings.fallback_reply")
    if "timezone" in values:
        try:
            ZoneInfo(values["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                "settings.timezone", f"{values['timezone']!r} is not an IANA time zone"
            ) from None
    for day, spans in (values.get("business_hours") or {}).items():
        field = f"settings.business_hours.{day}"
        if day not in WEEKDAYS:
            raise InvalidInput(field, f"days are {', '.join(WEEKDAYS)}")
        for span in spans:
            try:
                start, end = (time.fromisoformat(t) for t in span)
            except (ValueError, TypeError):
                raise InvalidInput(field, 'each span is ["HH:MM", "HH:MM"]') from None
            if not start < end:
                raise InvalidInput(field, "a span must end after it starts")
    hours = values.get("auto_resume_after_hours")
    if hours is not None and not 1 <= hours <= 24 * 30:
        raise InvalidInput("settings.auto_resume_after_hours", "must be 1 to 720 hours")
    days = values.get("content_retention_days")
    if days is not None and not 1 <= days <= 36_500:
        raise InvalidInput("settings.content_retention_days", "must be 1 to 36500 days")
    return values


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class Accounts:
    """Use cases on accounts."""

    def __init__(self, ledger: Ledger, secrets: SecretBox, clock: Clock) -> None:
        self._ledger = ledger
        self._secrets = secrets
        self._clock = clock

    def register(
        self,
        *,
        ig_account_id: str,
        username: str,
        app_secret: str,
        access_token: str,
        verify_token: str,
        by: str,
    ) -> Command[AccountSummary]:
        """The command that registers an account; its credentials are encrypted first."""
        ig_account_id = ig_account_id.strip()
        if not _IG_ID.match(ig_account_id):
            raise InvalidInput("ig_account_id", "the Instagram account id must be digits only")
        username = username.strip().removeprefix("@")
        if not username:
            raise InvalidInput("username", "the username must not be empty")
        for field, value in (
            ("app_secret", app_secret),
            ("access_token", access_token),
            ("verify_token", verify_token),
        ):
            if not value or value != value.strip():
                raise InvalidInput(field, f"{field} must be set, without surrounding spaces")
        sealed = {
            "app_secret": self._secrets.encrypt(app_secret),
            "access_token": self._secrets.encrypt(access_token),
            "verify_token": self._secrets.encrypt(verify_token),
        }

        def register(changes: Changes) -> AccountSummary:
            if changes.get(account_id(ig_account_id), Account, fresh=True) is not None:
                raise AccountAlreadyRegistered(
                    f"Instagram account {ig_account_id} is already registered"
                )
            account = Account(ig_account_id=ig_account_id, username=username, by=by, **sealed)
            changes.add(account)
            return AccountSummary.of(account, now=self._clock.now_ms())

        return register

    def list(self) -> list[AccountSummary]:
        """Every registered account."""
        now = self._clock.now_ms()
        return [AccountSummary.of(account, now=now) for account in self._ledger.accounts()]

    def confirm_subscription(self, verify_token: str) -> bool:
        """Whether `verify_token` is the webhook verify token of an account that is served."""
        given = verify_token.encode()
        matched = False
        for account in self._ledger.accounts():
            if not account.serves_webhooks:
                continue
            expected = self._secrets.decrypt(account.verify_token).encode()
            # Compare with every account, so the time taken says nothing about which matched.
            matched |= hmac.compare_digest(expected, given)
        return matched

    def get(self, ig_account_id: str) -> AccountSummary:
        account = self._ledger.account(ig_account_id)
        if account is None:
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        return AccountSummary.of(account, now=self._clock.now_ms())

    def update(
        self,
        ig_account_id: str,
        *,
        username: str | None,
        display_name: str | None,
        settings: SettingsChange | None,
        by: str,
    ) -> Command[AccountSummary]:
        """The command that changes the profile and/or settings of an account."""
        if username is not None:
            username = username.strip().removeprefix("@")
            if not username:
                raise InvalidInput("username", "the username must not be empty")
        changed_settings = validate_settings(settings) if settings is not None else {}

        def update(changes: Changes) -> AccountSummary:
            account = _changing(changes, ig_account_id)
            account.change_profile(username=username, display_name=display_name, by=by)
            if changed_settings:
                account.change_settings(changes=changed_settings, by=by)
            return AccountSummary.of(account, now=self._clock.now_ms())

        return update

    def set_status(
        self,
        ig_account_id: str,
        status: AccountStatus,
        *,
        by: str,
        reason: str | None = None,
    ) -> Command[AccountSummary]:
        """The command that suspends, reactivates or deactivates an account."""

        def set_status(changes: Changes) -> AccountSummary:
            account = _changing(changes, ig_account_id)
            try:
                if status == AccountStatus.SUSPENDED:
                    account.suspend(reason=reason, by=by)
                elif status == AccountStatus.ACTIVE:
                    account.reactivate(by=by)
                elif status == AccountStatus.DEACTIVATED:
                    account.deactivate(by=by)
                else:
                    raise InvalidInput("status", f"unknown status {status!r}")
            except AccountError as error:
                raise InvalidInput(error.field, error.detail) from None
            return AccountSummary.of(account, now=self._clock.now_ms())

        return set_status

    def rotate_credentials(
        self, ig_account_id: str, new: dict[str, str | None], *, at: int, by: str
    ) -> Command[AccountSummary]:
        """The command that replaces some credentials; only their ciphertext is stored."""
        given = {k: v for k, v in new.items() if v is not None}
        if not given:
            raise InvalidInput("credentials", f"give one or more of {', '.join(CREDENTIALS)}")
        for name, value in given.items():
            if not value or value != value.strip():
                raise InvalidInput(name, f"{name} must be set, without surrounding spaces")
        sealed = {name: self._secrets.encrypt(value) for name, value in given.items()}

        def rotate(changes: Changes) -> AccountSummary:
            account = _changing(changes, ig_account_id)
            account.rotate_credentials(sealed=sealed, at=at, by=by)
            return AccountSummary.of(account, now=self._clock.now_ms())

        return rotate

    def reencrypt(self, ig_account_id: str, *, by: str) -> Command[bool]:
        """The command that records the account's credentials under the newest key."""

        def reencrypt(changes: Changes) -> bool:
            account = _changing(changes, ig_account_id)
            plain = {name: self._secrets.decrypt(getattr(account, name)) for name in CREDENTIALS}
            sealed = {name: self._secrets.encrypt(value) for name, value in plain.items()}
            account.reencrypt_credentials(sealed=sealed, by=by)
            return True

        return reencrypt


def _changing(changes: Changes, ig_account_id: str) -> Account:
    account = changes.get(account_id(ig_account_id), Account, fresh=True)
    if account is None:
        raise NotFound(f"there is no Instagram account {ig_account_id}")
    return account
