"""The `Account` aggregate: an Instagram professional account that dmledger serves.

Over 300 lines on purpose: one aggregate per module, each command beside
the `@event` method that records it; the rules' and settings' checks that need no
aggregate are in `application/rules.py` and `application/accounts.py`. The rules, the
settings and the CRM endpoint are typed values (`domain/account_values.py`); the events
store them as the JSON objects they always stored. Events are declared as classes as in
`domain/conversation.py` (see there why).
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.account_values import AccountCrmEndpoint, AccountRule, AccountSettings, RuleSpec
from domain.identity import account_id

# The stored topic of each account event: part of the stored schema, never to change.
REGISTERED = "dmledger:Account.Registered"
PROFILE_CHANGED = "dmledger:Account.ProfileChanged"
SETTINGS_CHANGED = "dmledger:Account.SettingsChanged"
SUSPENDED = "dmledger:Account.Suspended"
REACTIVATED = "dmledger:Account.Reactivated"
DEACTIVATED = "dmledger:Account.Deactivated"
CREDENTIALS_ROTATED = "dmledger:Account.CredentialsRotated"
CREDENTIALS_REENCRYPTED = "dmledger:Account.CredentialsReencrypted"
RULE_ADDED = "dmledger:Account.RuleAdded"
RULE_CHANGED = "dmledger:Account.RuleChanged"
RULE_REMOVED = "dmledger:Account.RuleRemoved"
RULE_ENABLED = "dmledger:Account.RuleEnabled"
RULE_DISABLED = "dmledger:Account.RuleDisabled"
TOKEN_REJECTED = "dmledger:Account.TokenRejected"  # noqa: S105 - a topic
TOKEN_REFRESH_FAILED = "dmledger:Account.TokenRefreshFailed"  # noqa: S105 - a topic
SENDS_PAUSED = "dmledger:Account.SendsPaused"
SENDS_RESUMED = "dmledger:Account.SendsResumed"
CRM_ENDPOINT_SET = "dmledger:Account.CrmEndpointSet"
CRM_ENDPOINT_REMOVED = "dmledger:Account.CrmEndpointRemoved"
CRM_ENDPOINT_DISABLED = "dmledger:Account.CrmEndpointDisabled"
DELIVERIES_REDELIVERED = "dmledger:Account.DeliveriesRedelivered"
CONTENT_EXPIRED = "dmledger:Account.ContentExpired"
ICE_BREAKERS_CHANGED = "dmledger:Account.IceBreakersChanged"
PERSISTENT_MENU_CHANGED = "dmledger:Account.PersistentMenuChanged"
ENTRY_POINTS_APPLIED = "dmledger:Account.EntryPointsApplied"
ENTRY_POINTS_FAILED = "dmledger:Account.EntryPointsFailed"

CREDENTIALS = ("app_secret", "access_token", "verify_token")
ENTRY_POINTS = ("ice_breakers", "persistent_menu")
"""The account's entry points: Meta's `messenger_profile` fields dmledger manages."""


class AccountError(Exception):
    """A command on an account that cannot be carried out; `field` names the culprit."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class AccountStatus(StrEnum):
    """Whether an account's webhooks are stored and acted on."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


class Account(Aggregate):
    """An Instagram professional account, with its Meta credentials held only as ciphertext.

    `app_secret`, `access_token` and `verify_token` are ciphertexts produced by the
    application's secret box; the domain never sees a secret in clear text.
    """

    TOPIC = "dmledger:Account"

    class Event(Aggregate.Event):
        """Base of every account event."""

        TOPIC = "dmledger:Account.Event"

    class Created(Event, Aggregate.Created):
        """Base of the account's creation event."""

        TOPIC = "dmledger:Account.Created"

    @staticmethod
    def create_id(ig_account_id: str, **_: Any) -> UUID:
        """Accounts are identified by their Instagram account id."""
        return account_id(ig_account_id)

    @event("Registered", topic=REGISTERED)
    def __init__(
        self,
        ig_account_id: str,
        username: str,
        app_secret: str,
        access_token: str,
        verify_token: str,
        by: str,
    ) -> None:
        self.ig_account_id = ig_account_id
        self.username = username
        self.app_secret = app_secret
        self.access_token = access_token
        self.verify_token = verify_token
        self.status = AccountStatus.ACTIVE
        self.registered_by = by
        self.display_name: str | None = None
        self.settings = AccountSettings()
        self.rotated_at: dict[str, Any] = {}
        self.rules: dict[str, AccountRule] = {}
        """Rules by id."""
        self.token_rejected = False
        """Meta refused the access token (code 190): sends wait for new credentials."""
        self.token_refresh_failed_at: int | None = None
        self.crm_endpoint: AccountCrmEndpoint | None = None
        self.sends_paused_until: int | None = None

    @property
    def serves_webhooks(self) -> bool:
        """Whether webhooks addressed to this account are stored (history is kept either way)."""
        return self.status != AccountStatus.DEACTIVATED

    @property
    def automates(self) -> bool:
        """Whether automation may act for this account (suspended accounts only store)."""
        return self.status == AccountStatus.ACTIVE

    # -- profile, settings, status --------------------------------------------------------

    def change_profile(self, *, username: str | None, display_name: str | None, by: str) -> bool:
        new_username = username if username is not None else self.username
        new_display = display_name if display_name is not None else self.display_name
        if (new_username, new_display) == (self.username, self.display_name):
            return False
        self._profile_changed(username=new_username, display_name=new_display, by=by)
        return True

    @event("ProfileChanged", topic=PROFILE_CHANGED)
    def _profile_changed(self, username: str, display_name: str | None, by: str) -> None:
        self.username = username
        self.display_name = display_name

    def change_settings(self, *, settings: AccountSettings, by: str) -> bool:
        """Replace the settings (the event stores all of them, as a JSON object)."""
        if settings == self.settings:
            return False
        self._settings_changed(settings=settings.to_json(), by=by)
        return True

    class SettingsChanged(Event):
        """The account's settings, all of them, as `AccountSettings.to_json` makes them."""

        TOPIC = SETTINGS_CHANGED
        settings: dict[str, Any]
        by: str

        @property
        def account_settings(self) -> AccountSettings:
            return AccountSettings.from_json(self.settings)

    @event(SettingsChanged)
    def _settings_changed(self, settings: dict[str, Any], by: str) -> None:
        self.settings = AccountSettings.from_json(settings)

    def suspend(self, *, reason: str | None, by: str) -> bool:
        """Keep storing webhooks, but let no automation act."""
        self._must_not_be_deactivated()
        if self.status == AccountStatus.SUSPENDED:
            return False
        self._suspended(reason=reason, by=by)
        return True

    @event("Suspended", topic=SUSPENDED)
    def _suspended(self, reason: str | None, by: str) -> None:
        self.status = AccountStatus.SUSPENDED

    def reactivate(self, *, by: str) -> bool:
        """Serve a suspended or deactivated account fully again."""
        if self.status == AccountStatus.ACTIVE:
            return False
        self._reactivated(by=by)
        return True

    @event("Reactivated", topic=REACTIVATED)
    def _reactivated(self, by: str) -> None:
        self.status = AccountStatus.ACTIVE

    def deactivate(self, *, by: str) -> bool:
        """Stop serving the account: its history is kept, its webhooks are ignored."""
        if self.status == AccountStatus.DEACTIVATED:
            return False
        self._deactivated(by=by)
        return True

    @event("Deactivated", topic=DEACTIVATED)
    def _deactivated(self, by: str) -> None:
        self.status = AccountStatus.DEACTIVATED

    def _must_not_be_deactivated(self) -> None:
        if self.status == AccountStatus.DEACTIVATED:
            raise AccountError("status", "the account is deactivated; reactivate it first")

    # -- credentials (ciphertext only) ----------------------------------------------------

    def rotate_credentials(self, *, sealed: dict[str, str], at: int, by: str) -> None:
        """Replace some credentials with new ciphertexts; `at` is when, in ms."""
        if not sealed or set(sealed) - set(CREDENTIALS):
            raise AccountError("credentials", f"give one or more of {', '.join(CREDENTIALS)}")
        resumes = self.token_rejected and "access_token" in sealed
        self._credentials_rotated(
            app_secret=sealed.get("app_secret"),
            access_token=sealed.get("access_token"),
            verify_token=sealed.get("verify_token"),
            at=at,
            by=by,
        )
        if resumes:
            # Sends waited for a new token since Meta rejected the old one: they go again.
            self._sends_resumed(ig_account_id=self.ig_account_id, at=at, by=by)

    class SendsResumed(Event):
        """Sends go again (new credentials after a rejected token)."""

        TOPIC = SENDS_RESUMED
        ig_account_id: str
        at: int
        by: str

    @event(SendsResumed)
    def _sends_resumed(self, ig_account_id: str, at: int, by: str) -> None:
        pass

    @event("CredentialsRotated", topic=CREDENTIALS_ROTATED)
    def _credentials_rotated(
        self,
        app_secret: str | None,
        access_token: str | None,
        verify_token: str | None,
        at: int,
        by: str,
    ) -> None:
        for name, value in (
            ("app_secret", app_secret),
            ("access_token", access_token),
            ("verify_token", verify_token),
        ):
            if value is not None:
                setattr(self, name, value)
                self.rotated_at[name] = at
        if access_token is not None:
            self.token_rejected = False
            self.token_refresh_failed_at = None

    def reencrypt_credentials(self, *, sealed: dict[str, str], by: str) -> None:
        """The same credentials, encrypted under the newest key."""
        self._credentials_reencrypted(
            app_secret=sealed["app_secret"],
            access_token=sealed["access_token"],
            verify_token=sealed["verify_token"],
            by=by,
        )

    @event("CredentialsReencrypted", topic=CREDENTIALS_REENCRYPTED)
    def _credentials_reencrypted(
        self, app_secret: str, access_token: str, verify_token: str, by: str
    ) -> None:
        self.app_secret = app_secret
        self.access_token = access_token
        self.verify_token = verify_token

    # -- auto-reply rules -----------------------------------------------------------------

    # The events store a rule as the JSON object `RuleSpec.to_json` makes.

    def add_rule(self, *, rule_id: str, rule: RuleSpec, by: str) -> None:
        if rule_id in self.rules:
            raise AccountError("rule_id", f"rule {rule_id} exists already")
        self._rule_added(rule_id=rule_id, rule=rule.to_json(), by=by)

    class RuleAdded(Event):
        """A rule added, as `RuleSpec.to_json` makes it (`spec` reads it back)."""

        TOPIC = RULE_ADDED
        rule_id: str
        rule: dict[str, Any]
        by: str

        @property
        def spec(self) -> RuleSpec:
            return RuleSpec.from_json(self.rule)

    @event(RuleAdded)
    def _rule_added(self, rule_id: str, rule: dict[str, Any], by: str) -> None:
        self.rules[rule_id] = AccountRule(RuleSpec.from_json(rule), 1, len(self.rules))

    def change_rule(self, *, rule_id: str, rule: RuleSpec, by: str) -> bool:
        current = self._rule(rule_id)
        if current.spec == rule:
            return False
        self._rule_changed(rule_id=rule_id, rule=rule.to_json(), version=current.version + 1, by=by)
        return True

    class RuleChanged(Event):
        """A rule replaced, as `RuleSpec.to_json` makes it, at its new `version`."""

        TOPIC = RULE_CHANGED
        rule_id: str
        rule: dict[str, Any]
        version: int
        by: str

        @property
        def spec(self) -> RuleSpec:
            return RuleSpec.from_json(self.rule)

    @event(RuleChanged)
    def _rule_changed(self, rule_id: str, rule: dict[str, Any], version: int, by: str) -> None:
        order = self.rules[rule_id].order
        self.rules[rule_id] = AccountRule(RuleSpec.from_json(rule), version, order)

    def remove_rule(self, *, rule_id: str, by: str) -> None:
        self._rule(rule_id)
        self._rule_removed(rule_id=rule_id, by=by)

    class RuleRemoved(Event):
        """A rule removed."""

        TOPIC = RULE_REMOVED
        rule_id: str
        by: str

    @event(RuleRemoved)
    def _rule_removed(self, rule_id: str, by: str) -> None:
        del self.rules[rule_id]

    def enable_rule(self, *, rule_id: str, by: str) -> bool:
        if self._rule(rule_id).spec.enabled:
            return False
        self._rule_enabled(rule_id=rule_id, by=by)
        return True

    class RuleEnabled(Event):
        """A rule enabled."""

        TOPIC = RULE_ENABLED
        rule_id: str
        by: str

    @event(RuleEnabled)
    def _rule_enabled(self, rule_id: str, by: str) -> None:
        self.rules[rule_id] = self.rules[rule_id].switched(enabled=True)

    def disable_rule(self, *, rule_id: str, by: str) -> bool:
        if not self._rule(rule_id).spec.enabled:
            return False
        self._rule_disabled(rule_id=rule_id, by=by)
        return True

    class RuleDisabled(Event):
        """A rule disabled."""

        TOPIC = RULE_DISABLED
        rule_id: str
        by: str

    @event(RuleDisabled)
    def _rule_disabled(self, rule_id: str, by: str) -> None:
        self.rules[rule_id] = self.rules[rule_id].switched(enabled=False)

    def _rule(self, rule_id: str) -> AccountRule:
        try:
            return self.rules[rule_id]
        except KeyError:
            raise AccountError("rule_id", f"there is no rule {rule_id}") from None

    def __repr__(self) -> str:
        # Never show credentials, even as ciphertext, in logs or tracebacks.
        return f"Account(ig_account_id={self.ig_account_id!r}, username={self.username!r})"

    # -- sending -------------------------------------------------------------------------

    def reject_token(self, *, code: int, subcode: int | None, message: str, at: int) -> bool:
        """Meta refused the access token: sends pause until the credentials are rotated."""
        if self.token_rejected:
            return False
        self._token_rejected(
            ig_account_id=self.ig_account_id, code=code, subcode=subcode, message=message, at=at
        )
        return True

    class TokenRejected(Event):
        """Meta refused the access token: sends wait for new credentials."""

        TOPIC = TOKEN_REJECTED
        ig_account_id: str
        code: int
        subcode: int | None
        message: str
        at: int

    @event(TokenRejected)
    def _token_rejected(
        self, ig_account_id: str, code: int, subcode: int | None, message: str, at: int
    ) -> None:
        self.token_rejected = True

    def fail_token_refresh(self, *, message: str, at: int) -> None:
        self._token_refresh_failed(message=message, at=at)

    class TokenRefreshFailed(Event):
        """A refresh of the access token failed."""

        TOPIC = TOKEN_REFRESH_FAILED
        message: str
        at: int

    @event(TokenRefreshFailed)
    def _token_refresh_failed(self, message: str, at: int) -> None:
        self.token_refresh_failed_at = at

    def pause_sends(self, *, until: int, code: int | None, reason: str) -> None:
        """Meta asked us to slow down or lacks a permission: no sends before `until` (ms)."""
        self._sends_paused(until=until, code=code, reason=reason)

    class SendsPaused(Event):
        """Meta asked us to slow down or lacks a permission: no sends before `until`."""

        TOPIC = SENDS_PAUSED
        until: int
        code: int | None
        reason: str

    @event(SendsPaused)
    def _sends_paused(self, until: int, code: int | None, reason: str) -> None:
        self.sends_paused_until = until

    # -- the CRM's endpoint ----------------------------------------------------------------

    def set_crm_endpoint(
        self, *, url: str, event_types: list[str], secret: str | None, by: str
    ) -> None:
        """Point deliveries at `url`; `secret` (ciphertext) is kept if None is given."""
        if secret is None:
            if self.crm_endpoint is None:
                raise AccountError("secret", "a new endpoint needs a signing secret")
            secret = self.crm_endpoint.secret
        self._crm_endpoint_set(
            ig_account_id=self.ig_account_id, url=url, event_types=event_types, secret=secret, by=by
        )

    class CrmEndpointSet(Event):
        """Where the CRM gets its webhooks, and which (`secret`: ciphertext)."""

        TOPIC = CRM_ENDPOINT_SET
        ig_account_id: str
        url: str
        event_types: list[str]
        secret: str
        by: str

    @event(CrmEndpointSet)
    def _crm_endpoint_set(
        self, ig_account_id: str, url: str, event_types: list[str], secret: str, by: str
    ) -> None:
        self.crm_endpoint = AccountCrmEndpoint(url, tuple(event_types), secret)

    def remove_crm_endpoint(self, *, by: str) -> bool:
        if self.crm_endpoint is None:
            return False
        self._crm_endpoint_removed(ig_account_id=self.ig_account_id, by=by)
        return True

    class CrmEndpointRemoved(Event):
        """The CRM gets no more webhooks."""

        TOPIC = CRM_ENDPOINT_REMOVED
        ig_account_id: str
        by: str

    @event(CrmEndpointRemoved)
    def _crm_endpoint_removed(self, ig_account_id: str, by: str) -> None:
        self.crm_endpoint = None

    def disable_crm_endpoint(self, *, reason: str) -> bool:
        """The endpoint said it is gone (410): deliveries stop until it is set again."""
        if self.crm_endpoint is None or not self.crm_endpoint.enabled:
            return False
        self._crm_endpoint_disabled(ig_account_id=self.ig_account_id, reason=reason)
        return True

    class CrmEndpointDisabled(Event):
        """The endpoint answered 410 Gone: deliveries wait until it is set again."""

        TOPIC = CRM_ENDPOINT_DISABLED
        ig_account_id: str
        reason: str

    @event(CrmEndpointDisabled)
    def _crm_endpoint_disabled(self, ig_account_id: str, reason: str) -> None:
        if self.crm_endpoint is not None:
            self.crm_endpoint = replace(self.crm_endpoint, enabled=False)

    def redeliver(self, *, by: str, delivery_ids: list[str], since: int | None) -> None:
        """Someone asked for CRM deliveries again: these ids, or every one made since
        `since` (ms); recorded so that an auditor sees who did."""
        self._deliveries_redelivered(
            ig_account_id=self.ig_account_id, by=by, delivery_ids=delivery_ids, since=since
        )

    class DeliveriesRedelivered(Event):
        """Someone asked for CRM deliveries again."""

        TOPIC = DELIVERIES_REDELIVERED
        ig_account_id: str
        by: str
        delivery_ids: list[str]
        since: int | None

    @event(DeliveriesRedelivered)
    def _deliveries_redelivered(
        self, ig_account_id: str, by: str, delivery_ids: list[str], since: int | None
    ) -> None:
        pass

    def expire_content(
        self, *, before: int, conversation_ids: list[str], destroyed: int, by: str
    ) -> None:
        """Record that the content of these conversations recorded before `before` (ms)
        is destroyed (`destroyed` data keys), as `content_retention_days` asks."""
        self._content_expired(
            ig_account_id=self.ig_account_id,
            before=before,
            conversation_ids=conversation_ids,
            destroyed=destroyed,
            by=by,
        )

    class ContentExpired(Event):
        """Content recorded before `before` destroyed in these conversations (retention)."""

        TOPIC = CONTENT_EXPIRED
        ig_account_id: str
        before: int
        conversation_ids: list[str]
        destroyed: int
        by: str

    @event(ContentExpired)
    def _content_expired(
        self, ig_account_id: str, before: int, conversation_ids: list[str], destroyed: int, by: str
    ) -> None:
        pass

    # -- entry points: ice breakers and the persistent menu --------------------------------
    # Each is a whole value (Meta's shape, checked by `application/entry_points.py`) with a
    # version; the dispatcher pushes a version to Meta and records what came of it. The
    # state lives in `_entry_points`, absent from accounts stored before it existed.

    def entry_point(self, name: str) -> dict[str, Any]:
        """`value` (None: none set), `version` (0: never changed), `applied_version`,
        `applied_at` (ms) and `failure` (the last failed push of `version`, or None)."""
        found: dict[str, dict[str, Any]] = self.__dict__.get("_entry_points") or {}
        return found.get(name) or {
            "value": None,
            "version": 0,
            "applied_version": 0,
            "applied_at": None,
            "failure": None,
        }

    def _keep_entry_point(self, name: str, **changes: Any) -> None:
        found: dict[str, dict[str, Any]] = self.__dict__.get("_entry_points") or {}
        self._entry_points = {**found, name: {**self.entry_point(name), **changes}}

    def change_ice_breakers(self, *, ice_breakers: list[dict[str, Any]] | None, by: str) -> bool:
        """Set (None: remove) the ice breakers; False if they are so already."""
        current = self.entry_point("ice_breakers")
        if ice_breakers == current["value"]:
            return False
        self._ice_breakers_changed(
            ig_account_id=self.ig_account_id,
            ice_breakers=ice_breakers,
            version=current["version"] + 1,
            by=by,
        )
        return True

    @event("IceBreakersChanged", topic=ICE_BREAKERS_CHANGED)
    def _ice_breakers_changed(
        self, ig_account_id: str, ice_breakers: list[dict[str, Any]] | None, version: int, by: str
    ) -> None:
        self._keep_entry_point("ice_breakers", value=ice_breakers, version=version, failure=None)

    def change_persistent_menu(
        self, *, persistent_menu: list[dict[str, Any]] | None, by: str
    ) -> bool:
        """Set (None: remove) the persistent menu; False if it is so already."""
        current = self.entry_point("persistent_menu")
        if persistent_menu == current["value"]:
            return False
        self._persistent_menu_changed(
            ig_account_id=self.ig_account_id,
            persistent_menu=persistent_menu,
            version=current["version"] + 1,
            by=by,
        )
        return True

    @event("PersistentMenuChanged", topic=PERSISTENT_MENU_CHANGED)
    def _persistent_menu_changed(
        self,
        ig_account_id: str,
        persistent_menu: list[dict[str, Any]] | None,
        version: int,
        by: str,
    ) -> None:
        self._keep_entry_point(
            "persistent_menu", value=persistent_menu, version=version, failure=None
        )

    def record_entry_point_applied(
        self, *, entry_point: str, version: int, pushed: dict[str, Any], at: int
    ) -> bool:
        """Meta took `version` of `entry_point` (`pushed` is what was sent); False if that
        version, or a later one, is recorded as applied already."""
        current = self.entry_point(entry_point)
        if not current["applied_version"] < version <= current["version"]:
            return False
        self._entry_points_applied(
            ig_account_id=self.ig_account_id,
            entry_point=entry_point,
            version=version,
            pushed=pushed,
            at=at,
        )
        return True

    @event("EntryPointsApplied", topic=ENTRY_POINTS_APPLIED)
    def _entry_points_applied(
        self, ig_account_id: str, entry_point: str, version: int, pushed: dict[str, Any], at: int
    ) -> None:
        self._keep_entry_point(entry_point, applied_version=version, applied_at=at, failure=None)

    def record_entry_point_failed(
        self,
        *,
        entry_point: str,
        version: int,
        pushed: dict[str, Any],
        code: int | None,
        subcode: int | None,
        message: str,
        retryable: bool,
        at: int,
    ) -> bool:
        """Meta refused (or did not answer) a push of the current `version`; False if a
        later version was changed or this one applied meanwhile."""
        current = self.entry_point(entry_point)
        if version != current["version"] or version <= current["applied_version"]:
            return False
        failure = current["failure"]
        self._entry_points_failed(
            ig_account_id=self.ig_account_id,
            entry_point=entry_point,
            version=version,
            pushed=pushed,
            code=code,
            subcode=subcode,
            message=message,
            retryable=retryable,
            attempt=failure["attempt"] + 1 if failure is not None else 1,
            at=at,
        )
        return True

    @event("EntryPointsFailed", topic=ENTRY_POINTS_FAILED)
    def _entry_points_failed(
        self,
        ig_account_id: str,
        entry_point: str,
        version: int,
        pushed: dict[str, Any],
        code: int | None,
        subcode: int | None,
        message: str,
        retryable: bool,
        attempt: int,
        at: int,
    ) -> None:
        failure = {
            "code": code,
            "subcode": subcode,
            "message": message,
            "retryable": retryable,
            "attempt": attempt,
            "at": at,
        }
        self._keep_entry_point(entry_point, failure=failure)
