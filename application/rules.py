"""Auto-reply rules: their definition, validation, matching and reply templates.

Matching is pure and deterministic given a message and the time Meta gave it, so the
rules test endpoint and the decision on a real message agree.
"""

from __future__ import annotations

import logging
import string
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import regex

from application.errors import InvalidInput
from application.reply_messages import (
    GenericTemplate,
    QuickReply,
    ReplyMessage,
    TemplateReply,
    TextReply,
    check_elements,
    check_quick_replies,
)
from domain.account_values import AccountRule, AccountSettings, RuleSpec, RuleTrigger

log = logging.getLogger(__name__)

REGEX_TIMEOUT_SECONDS = 0.05
"""A regular expression that takes longer on one message does not match it."""
PLACEHOLDERS = ("username", "first_name", "account_username")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

TriggerType = Literal[
    "keyword",
    "phrase",
    "regex",
    "postback",
    "story_mention",
    "story_reply",
    "first_message",
    "comment",
    "live_comment",
]
COMMENT_TRIGGERS = ("comment", "live_comment")
"""Triggers on a comment (see `application.comment_rules`): they answer with a private
reply, never a message of a conversation."""


class Trigger(msgspec.Struct, forbid_unknown_fields=True):
    """What makes a rule answer. `value` is the keyword, phrase, pattern or payload (a
    comment trigger's keyword: none answers every comment)."""

    type: TriggerType
    value: str | None = None
    media_id: str | None = None
    """A comment trigger's media (post, reel, live); none: any of the account's."""


class Conditions(msgspec.Struct, forbid_unknown_fields=True):
    """When a matching rule may answer."""

    business_hours: Literal["inside", "outside"] | None = None
    once_per_hours: int | None = None
    """Answer a conversation at most once in this many hours."""


class RuleDefinition(msgspec.Struct, forbid_unknown_fields=True):
    """A rule as an operator writes it."""

    name: str
    triggers: list[Trigger]
    reply: str = ""
    """The text template; none when the rule answers with a `template`."""
    priority: int = 0
    """Higher first; among equals, the older rule first."""
    conditions: Conditions = msgspec.field(default_factory=Conditions)
    enabled: bool = True
    public_reply: str | None = None
    """On a comment trigger: also answer the comment publicly with this text."""
    quick_replies: list[QuickReply] | None = None
    """Up to 13 buttons under the reply's text."""
    template: GenericTemplate | None = None
    """A generic template (carousel) to answer with, in place of a text."""


def validate_rule(definition: RuleDefinition) -> RuleSpec:
    """The rule as the account holds it, or `InvalidInput` naming the field at fault."""
    if not definition.name.strip():
        raise InvalidInput("name", "a rule needs a name")
    if not definition.triggers:
        raise InvalidInput("triggers", "a rule needs at least one trigger")
    for index, trigger in enumerate(definition.triggers):
        field = f"triggers[{index}].value"
        needs_value = trigger.type in ("keyword", "phrase", "regex", "postback")
        if needs_value and not (trigger.value or "").strip():
            raise InvalidInput(field, f"a {trigger.type} trigger needs a value")
        if trigger.type in COMMENT_TRIGGERS and trigger.value and not words(trigger.value):
            # It would answer every comment: say so with no value instead.
            raise InvalidInput(field, "a comment trigger's keyword needs a word or an emoji")
        if trigger.media_id is not None and trigger.type not in COMMENT_TRIGGERS:
            raise InvalidInput(
                f"triggers[{index}].media_id", "only a comment trigger names a media"
            )
        if trigger.type == "regex":
            try:
                regex.compile(trigger.value or "", regex.IGNORECASE)
            except regex.error as error:
                raise InvalidInput(field, f"not a valid regular expression: {error}") from None
    if definition.template is None:
        check_template(definition.reply, "reply")
        check_quick_replies(definition.quick_replies or [])
    else:
        if definition.reply or definition.quick_replies:
            field = "reply" if definition.reply else "quick_replies"
            raise InvalidInput(field, "a rule answers with a text or a template, not both")
        check_elements(definition.template.elements)
    rich = "template" if definition.template else "quick_replies"
    if (definition.template or definition.quick_replies) and any(
        t.type in COMMENT_TRIGGERS for t in definition.triggers
    ):
        raise InvalidInput(rich, "a private reply to a comment is a text")
    if definition.public_reply is not None:
        if not any(t.type in COMMENT_TRIGGERS for t in definition.triggers):
            raise InvalidInput(
                "public_reply", "only a rule with a comment trigger replies publicly"
            )
        check_template(definition.public_reply, "public_reply")
    hours = definition.conditions.once_per_hours
    if hours is not None and not 1 <= hours <= 24 * 365:
        raise InvalidInput("conditions.once_per_hours", "once_per_hours must be 1 to 8760")
    # Rules without quick replies or a template are stored as before (RuleSpec.to_json).
    return RuleSpec.from_json(msgspec.to_builtins(definition))


MAX_REPLY_BYTES = 1000
"""Meta's limit on a text message, in bytes of UTF-8."""


def check_template(template: str, field: str) -> None:
    """Refuse an empty template, one with a placeholder we cannot fill, one with a format
    spec or conversion (`{first_name:>50000000}` would render 50 MB into an event), and
    one whose fixed text alone is over Meta's limit."""
    if not template.strip():
        raise InvalidInput(field, "the reply must not be empty")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        raise InvalidInput(field, f"the reply is not a valid template: {error}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise InvalidInput(field, f"unknown placeholder {{{name}}}; use {known} (or {{{{ }}}})")
        if spec or conversion:
            raise InvalidInput(
                field, f"placeholders take no format spec or conversion: write {{{name}}}"
            )
    fixed = sum(len(literal.encode()) for literal, _, _, _ in parts)
    if fixed > MAX_REPLY_BYTES:
        raise InvalidInput(
            field,
            f"the reply's text is {fixed} bytes of UTF-8 before any placeholder is filled; "
            f"Instagram takes at most {MAX_REPLY_BYTES}",
        )


def render(template: str, *, profile: dict[str, Any], account_username: str) -> str:
    """Fill a template; unknown names fall back to the username, then to "there"."""
    username = profile.get("username") or ""
    name = (profile.get("name") or "").strip()
    values = {
        "username": username or "there",
        "first_name": name.split()[0] if name else (username or "there"),
        "account_username": account_username,
    }
    # Placeholder by placeholder, never `format_map`: a rule stored before specs were
    # refused must not render one.
    return "".join(
        literal + (values.get(name, "") if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(template)
    )


# -- matching --------------------------------------------------------------------------


@dataclass(frozen=True)
class Inbound:
    """What a rule is matched against."""

    text: str | None
    postback_payload: str | None = None
    story_mention: bool = False
    story_reply: bool = False
    first_message: bool = False
    sent_at: int = 0
    """Meta's time of the message, ms: business hours are judged by it."""


@dataclass(frozen=True)
class Match:
    """The rule that answers, and its reply template."""

    rule_id: str | None
    """None for the account's fallback reply."""
    rule_version: int | None
    name: str
    template: str
    once_per_hours: int | None
    rule: RuleSpec | None = None
    """The rule (None for the fallback): its `quick_replies` or `template`."""

    def message(self, text: str) -> ReplyMessage:
        """The reply the rule answers with, given its rendered `text`."""
        rule = self.rule
        if rule is not None and rule.template:
            return msgspec.convert(rule.template, TemplateReply)
        quick_replies = msgspec.convert(
            (rule.quick_replies if rule is not None else None) or [], list[QuickReply]
        )
        return TextReply(text=text, quick_replies=quick_replies)


def normalise(text: str) -> str:
    """Case-folded, without accents, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.split())


_WORD = regex.compile(r"[\w]+|[^\w\s\p{P}]", regex.UNICODE)


def words(text: str) -> list[str]:
    """Whole words (and emoji), punctuation left out."""
    return [w for w in _WORD.findall(normalise(text)) if w != "\ufe0f"]


def _contains(haystack: list[str], needle: list[str]) -> bool:
    if not needle:
        return False
    width = len(needle)
    return any(haystack[i : i + width] == needle for i in range(len(haystack) - width + 1))


def trigger_matches(trigger: RuleTrigger, inbound: Inbound) -> bool:
    kind, value = trigger.type, trigger.value or ""
    if kind == "postback":
        return inbound.postback_payload == value
    if kind == "story_mention":
        return inbound.story_mention
    if kind == "story_reply":
        return inbound.story_reply
    if kind == "first_message":
        return inbound.first_message
    if inbound.text is None:
        return False
    if kind == "keyword":
        return _contains(words(inbound.text), words(value))
    if kind == "phrase":
        return normalise(inbound.text).strip(" .!?") == normalise(value).strip(" .!?")
    if kind == "regex":
        try:
            return bool(
                regex.search(value, inbound.text, regex.IGNORECASE, timeout=REGEX_TIMEOUT_SECONDS)
            )
        except TimeoutError:
            log.warning("a rule's regular expression timed out on a message; no match")
            return False
    return False


def in_business_hours(settings: AccountSettings, at_ms: int) -> bool:
    try:
        zone = ZoneInfo(settings.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
    spans = settings.business_hours.get(WEEKDAYS[local.weekday()], ())
    now = local.time()
    return any(time.fromisoformat(start) <= now < time.fromisoformat(end) for start, end in spans)


def choose(
    rules: Mapping[str, AccountRule],
    settings: AccountSettings,
    inbound: Inbound,
    *,
    replied_at: dict[str, int],
) -> Match | None:
    """The enabled rule that answers `inbound`, else the fallback reply, else None.

    `replied_at` holds, per rule id ("" for the fallback), when the conversation last got
    that rule's automated reply (ms), for `once_per_hours`.
    """
    for rule_id, rule in ordered_rules(rules):
        spec = rule.spec
        if not spec.enabled:
            continue
        if not any(trigger_matches(t, inbound) for t in spec.triggers):
            continue
        hours = spec.conditions.business_hours
        if hours is not None and (hours == "inside") != in_business_hours(
            settings, inbound.sent_at
        ):
            continue
        once = spec.conditions.once_per_hours
        if once is not None and _too_soon(replied_at.get(rule_id), once, inbound.sent_at):
            continue
        return Match(rule_id, rule.version, spec.name, spec.reply, once, spec)
    fallback = settings.fallback_reply
    # The fallback answers messages (not taps) of a conversation at most once a day.
    if (
        fallback
        and inbound.text is not None
        and not _too_soon(replied_at.get(""), 24, inbound.sent_at)
    ):
        return Match(None, None, "fallback", fallback, 24)
    return None


def _too_soon(last: int | None, hours: int, now: int) -> bool:
    return last is not None and now - last < hours * 3_600_000


def ordered_rules(rules: Mapping[str, AccountRule]) -> Iterable[tuple[str, AccountRule]]:
    """Rules in the order they are tried."""
    return sorted(rules.items(), key=lambda item: (-item[1].spec.priority, item[1].order))
