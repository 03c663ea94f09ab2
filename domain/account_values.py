"""What an account holds of its auto-reply rules and settings, as typed values.

The events keep storing each as the JSON object they always stored (`RuleAdded.rule`,
`RuleChanged.rule`, `SettingsChanged.settings`): `to_json` makes that object and
`from_json` reads it back, so that the log written before these types existed loads
unchanged. Reading is lenient (a key that is missing takes its default, as older events
lack the settings added since); the application validates what goes in. What a rule's
fields mean to matching is in `application/rules.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

Spans = tuple[tuple[str, str], ...]
"""A day's business hours: ("09:00", "17:00") pairs, in the account's time zone."""


@dataclass(frozen=True)
class RuleTrigger:
    """What makes a rule answer: its `type` ("keyword", "postback", "comment", ...) and,
    for some types, the keyword, phrase, pattern or payload."""

    type: str
    value: str | None = None
    media_id: str | None = None
    """A comment trigger's media; None: any of the account's."""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value, "media_id": self.media_id}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RuleTrigger:
        return cls(type=obj["type"], value=obj.get("value"), media_id=obj.get("media_id"))


@dataclass(frozen=True)
class RuleConditions:
    """When a matching rule may answer."""

    business_hours: str | None = None
    """"inside" or "outside" the account's business hours; None: at any time."""
    once_per_hours: int | None = None
    """Answer a conversation at most once in this many hours."""

    def to_json(self) -> dict[str, Any]:
        return {"business_hours": self.business_hours, "once_per_hours": self.once_per_hours}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> RuleConditions:
        obj = obj or {}
        return cls(
            business_hours=obj.get("business_hours"), once_per_hours=obj.get("once_per_hours")
        )


@dataclass(frozen=True)
class RuleSpec:
    """A rule as an operator defines it: what `RuleAdded` and `RuleChanged` store."""

    name: str
    triggers: tuple[RuleTrigger, ...]
    reply: str
    """The reply's template."""
    priority: int = 0
    """Higher first; among equals, the older rule first."""
    conditions: RuleConditions = RuleConditions()
    enabled: bool = True
    public_reply: str | None = None
    """On a comment trigger: also answer the comment publicly with this text."""
    quick_replies: list[dict[str, Any]] | None = None
    """Buttons under the reply's text, as the Send API takes them (validated by the
    application's reply model)."""
    template: dict[str, Any] | None = None
    """A generic template to answer with in place of a text, as the Send API takes it."""

    def to_json(self) -> dict[str, Any]:
        """The stored object, its keys in the order the log has always had them; a rule
        without quick replies or a template is stored as before they existed."""
        stored: dict[str, Any] = {
            "name": self.name,
            "triggers": [t.to_json() for t in self.triggers],
            "reply": self.reply,
            "priority": self.priority,
            "conditions": self.conditions.to_json(),
            "enabled": self.enabled,
            "public_reply": self.public_reply,
        }
        if self.quick_replies is not None:
            stored["quick_replies"] = self.quick_replies
        if self.template is not None:
            stored["template"] = self.template
        return stored

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RuleSpec:
        return cls(
            name=obj["name"],
            triggers=tuple(RuleTrigger.from_json(t) for t in obj.get("triggers") or ()),
            reply=obj.get("reply") or "",
            priority=obj.get("priority", 0),
            conditions=RuleConditions.from_json(obj.get("conditions")),
            enabled=obj.get("enabled", True),
            public_reply=obj.get("public_reply"),
            quick_replies=obj.get("quick_replies"),
            template=obj.get("template"),
        )


@dataclass(frozen=True)
class AccountRule:
    """A rule as the account holds it: its definition, its `version` (1 when added, one
    more at each change; a `ReplyQueued` names it) and its `order` among the account's
    rules (when it was added: the older first among equal priorities)."""

    spec: RuleSpec
    version: int
    order: int

    def switched(self, enabled: bool) -> AccountRule:
        return replace(self, spec=replace(self.spec, enabled=enabled))


@dataclass(frozen=True)
class AccountSettings:
    """An account's settings; a new account has these defaults."""

    auto_reply: bool = True
    fallback_reply: str | None = None
    """The template that answers a message no rule answers (None: none)."""
    timezone: str = "UTC"
    business_hours: Mapping[str, Spans] = field(default_factory=dict)
    """mon..sun to their spans; a day left out has none."""
    auto_resume_after_hours: int | None = None
    """Resume automation this many hours after a person took over (None: never)."""
    content_retention_days: int | None = None
    """Destroy the content of messages older than this many days (None: keep it)."""
    primary_receiver: bool = True
    """Whether dmledger is the primary receiver of Meta's handover protocol (owns a thread
    nobody passed or took)."""

    def to_json(self) -> dict[str, Any]:
        """The stored object (and the API's `settings`), keys in their historical order."""
        return {
            "auto_reply": self.auto_reply,
            "fallback_reply": self.fallback_reply,
            "timezone": self.timezone,
            "business_hours": {
                day: [list(span) for span in spans] for day, spans in self.business_hours.items()
            },
            "auto_resume_after_hours": self.auto_resume_after_hours,
            "content_retention_days": self.content_retention_days,
            "primary_receiver": self.primary_receiver,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AccountSettings:
        default = cls()
        hours = obj.get("business_hours") or {}
        return cls(
            auto_reply=obj.get("auto_reply", default.auto_reply),
            fallback_reply=obj.get("fallback_reply"),
            timezone=obj.get("timezone", default.timezone),
            business_hours={
                day: tuple((start, end) for start, end in spans) for day, spans in hours.items()
            },
            auto_resume_after_hours=obj.get("auto_resume_after_hours"),
            content_retention_days=obj.get("content_retention_days"),
            primary_receiver=obj.get("primary_receiver", default.primary_receiver),
        )

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(AccountSettings().to_json())


@dataclass(frozen=True)
class AccountCrmEndpoint:
    """Where the account's CRM gets its webhooks."""

    url: str
    event_types: tuple[str, ...]
    secret: str
    """The signing secret's ciphertext."""
    enabled: bool = True
    """False once the endpoint answered 410 Gone, until it is set again."""
