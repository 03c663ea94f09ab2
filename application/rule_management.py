"""Managing an account's auto-reply rules, and trying them without storing anything."""

from __future__ import annotations

import secrets
from typing import Any, Literal

import msgspec

from application.auto_reply import preview
from application.comment_rules import CommentInbound, choose_for_comment
from application.errors import InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.ports import Clock, ParticipantProfiles, SecretBox
from application.reply_messages import GenericTemplate, QuickReply, as_json
from application.rules import (
    Conditions,
    Inbound,
    RuleDefinition,
    Trigger,
    ordered_rules,
    render,
    validate_rule,
)
from domain.account import Account, AccountError
from domain.account_values import AccountRule
from domain.identity import account_id


class Rule(msgspec.Struct, frozen=True):
    """A rule as stored, with its id and version (which a `ReplyQueued` names)."""

    id: str
    name: str
    triggers: list[Trigger]
    reply: str
    priority: int
    conditions: Conditions
    enabled: bool
    version: int
    public_reply: str | None = None
    """On a comment trigger: the public answer to the comment, besides the private reply."""
    quick_replies: list[QuickReply] | None = None
    template: GenericTemplate | None = None

    @classmethod
    def of(cls, rule_id: str, rule: AccountRule) -> Rule:
        stored = {**rule.spec.to_json(), "version": rule.version, "id": rule_id}
        return msgspec.convert(stored, cls, strict=False)


class RuleTest(msgspec.Struct, forbid_unknown_fields=True):
    """A message to try the rules on."""

    text: str | None = None
    kind: Literal[
        "message", "postback", "story_mention", "story_reply", "comment", "live_comment"
    ] = "message"
    payload: str | None = None
    """The postback payload, for kind `postback`."""
    media_id: str | None = None
    """The commented media, for kinds `comment` and `live_comment`."""
    first_message: bool = False
    username: str | None = None
    """The participant's username, to render `{username}` and `{first_name}`."""


class RuleTestResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """Which rule would answer, and what it would say."""

    matched: bool
    rule_id: str | None
    rule_name: str | None
    rule_version: int | None
    reply: str | None
    public_reply: str | None = None
    """A comment rule's public answer under the comment, rendered (left out: none)."""
    message: dict[str, Any] | None = None
    """The whole reply it would send (`type` text, with its quick replies, or template)."""


class Rules:
    """Use cases on an account's rules."""

    def __init__(
        self,
        ledger: Ledger,
        profiles: ParticipantProfiles | None,
        box: SecretBox,
        clock: Clock,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._profiles = profiles
        self._box = box

    def list(self, ig_account_id: str) -> list[Rule]:
        """The account's rules in the order they are tried."""
        account = self._account(ig_account_id)
        return [Rule.of(rule_id, rule) for rule_id, rule in ordered_rules(account.rules)]

    def get(self, ig_account_id: str, rule_id: str) -> Rule:
        account = self._account(ig_account_id)
        if rule_id not in account.rules:
            raise NotFound(f"there is no rule {rule_id}")
        return Rule.of(rule_id, account.rules[rule_id])

    def add(self, ig_account_id: str, definition: RuleDefinition, *, by: str) -> Command[Rule]:
        rule = validate_rule(definition)
        rule_id = secrets.token_hex(6)

        def add(changes: Changes) -> Rule:
            account = self._changing(changes, ig_account_id)
            account.add_rule(rule_id=rule_id, rule=rule, by=by)
            return Rule.of(rule_id, account.rules[rule_id])

        return add

    def replace(
        self, ig_account_id: str, rule_id: str, definition: RuleDefinition, *, by: str
    ) -> Command[Rule]:
        rule = validate_rule(definition)

        def replace(changes: Changes) -> Rule:
            account = self._changing(changes, ig_account_id)
            self._apply(lambda: account.change_rule(rule_id=rule_id, rule=rule, by=by))
            return Rule.of(rule_id, account.rules[rule_id])

        return replace

    def remove(self, ig_account_id: str, rule_id: str, *, by: str) -> Command[None]:
        def remove(changes: Changes) -> None:
            account = self._changing(changes, ig_account_id)
            self._apply(lambda: account.remove_rule(rule_id=rule_id, by=by))

        return remove

    def switch(self, ig_account_id: str, rule_id: str, *, enabled: bool, by: str) -> Command[Rule]:
        """Enable or disable a rule."""

        def switch(changes: Changes) -> Rule:
            account = self._changing(changes, ig_account_id)
            if enabled:
                self._apply(lambda: account.enable_rule(rule_id=rule_id, by=by))
            else:
                self._apply(lambda: account.disable_rule(rule_id=rule_id, by=by))
            return Rule.of(rule_id, account.rules[rule_id])

        return switch

    def test(self, ig_account_id: str, trial: RuleTest) -> RuleTestResult:
        """Which rule would answer `trial` now, rendered; nothing is stored."""
        account = self._account(ig_account_id)
        if trial.kind == "postback" and not trial.payload:
            raise InvalidInput("payload", "a postback needs its payload")
        if trial.kind == "message" and not trial.text:
            raise InvalidInput("text", "give the message text to try")
        if trial.kind in ("comment", "live_comment"):
            return self._test_comment(account, trial)
        inbound = Inbound(
            text=trial.text if trial.kind != "postback" else None,
            postback_payload=trial.payload if trial.kind == "postback" else None,
            story_mention=trial.kind == "story_mention",
            story_reply=trial.kind == "story_reply",
            first_message=trial.first_message,
            sent_at=self._clock.now_ms(),
        )
        profile = {"username": trial.username} if trial.username else {}
        match, reply = preview(account, inbound, profile)
        if match is None:
            return RuleTestResult(False, None, None, None, None)
        message = as_json(match.message(reply or ""))
        return RuleTestResult(
            True, match.rule_id, match.name, match.rule_version, reply, message=message
        )

    @staticmethod
    def _test_comment(account: Account, trial: RuleTest) -> RuleTestResult:
        """Which rule would answer this comment with a private reply, rendered."""
        if not trial.media_id:
            raise InvalidInput("media_id", "give the commented media's id to try a comment")
        comment = CommentInbound(trial.text, trial.media_id, live=trial.kind == "live_comment")
        match = choose_for_comment(account.rules, comment)
        if match is None:
            return RuleTestResult(False, None, None, None, None)
        profile = {"username": trial.username} if trial.username else {}

        def rendered(template: str) -> str:
            return render(template, profile=profile, account_username=account.username)

        return RuleTestResult(
            True,
            match.rule_id,
            match.name,
            match.rule_version,
            rendered(match.private_reply),
            rendered(match.public_reply) if match.public_reply else None,
        )

    def _account(self, ig_account_id: str) -> Account:
        account = self._ledger.account(ig_account_id)
        if account is None:
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        return account

    @staticmethod
    def _changing(changes: Changes, ig_account_id: str) -> Account:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        return account

    @staticmethod
    def _apply(change: Any) -> None:
        try:
            change()
        except AccountError as error:
            if error.field == "rule_id":
                raise NotFound(error.detail) from None
            raise InvalidInput(error.field, error.detail) from None
