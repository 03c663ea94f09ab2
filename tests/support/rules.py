"""Automation rules as the tests write them: a rule as the API's JSON takes it, and the
`RuleDefinition` that `services.rules.add` takes made from one."""

from __future__ import annotations

from typing import Any

SHIPPING = {
    "name": "shipping",
    "triggers": [{"type": "keyword", "value": "ship"}],
    "reply": "Hi {first_name}! We ship worldwide.",
}
"""A rule that answers any message with "ship" in it, greeting the participant by name."""


def definition(rule: dict[str, Any]) -> Any:
    import msgspec

    from application.rules import RuleDefinition

    return msgspec.convert(rule, RuleDefinition)
