"""Rule matching, conditions and templates (table-driven)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from application.errors import InvalidInput
from application.rules import (
    Inbound,
    RuleDefinition,
    choose,
    render,
    trigger_matches,
    validate_rule,
)
from domain.account_values import AccountRule, AccountSettings, RuleSpec, RuleTrigger

# 2026-01-05 was a Monday; 10:00 UTC is 11:00 in Berlin.
MONDAY_10_UTC = 1767607200000


def rule(
    *triggers: dict[str, Any],
    reply: str = "ok",
    priority: int = 0,
    order: int = 0,
    enabled: bool = True,
    **conditions: Any,
) -> AccountRule:
    spec = {
        "name": f"rule {order}",
        "triggers": list(triggers),
        "reply": reply,
        "priority": priority,
        "conditions": conditions,
        "enabled": enabled,
    }
    return AccountRule(RuleSpec.from_json(spec), version=1, order=order)


def trigger(**fields: Any) -> RuleTrigger:
    return RuleTrigger.from_json(fields)


NO_SETTINGS = AccountSettings()


@pytest.mark.parametrize(
    ("keyword", "text", "matches"),
    [
        ("ship", "Do you ship to Munich?", True),
        ("ship", "DO YOU SHIP?!", True),
        ("ship", "shipping costs?", False),
        ("ship", "relationship advice", False),
        ("price", "price?price!", True),
        ("münchen", "Do you ship to Munchen", True),
        ("cafe", "Is the Café open?", True),
        ("crème brûlée", "one CREME BRULEE please", True),
        ("crème brûlée", "crème and brûlée", False),
        ("❤️", "love it ❤️", True),
        ("❤", "love it ❤️❤️", True),
        ("👍", "love it ❤️", False),
        ("open", "", False),
        ("open", "¿Están open hoy?", True),
    ],
)
def test_keywords_match_whole_words_ignoring_case_accents_and_punctuation(
    keyword: str, text: str, matches: bool
) -> None:
    assert trigger_matches(trigger(type="keyword", value=keyword), Inbound(text=text)) is matches


@pytest.mark.parametrize(
    ("phrase", "text", "matches"),
    [
        ("opening hours", "Opening hours?", True),
        ("opening hours", "  opening   HOURS ", True),
        ("opening hours", "what are your opening hours", False),
    ],
)
def test_a_phrase_matches_the_whole_message(phrase: str, text: str, matches: bool) -> None:
    assert trigger_matches(trigger(type="phrase", value=phrase), Inbound(text=text)) is matches


def test_regex_matches_case_insensitively() -> None:
    pattern = trigger(type="regex", value=r"order\s*#?\d{4,}")

    assert trigger_matches(pattern, Inbound(text="Where is ORDER #12345?"))
    assert not trigger_matches(pattern, Inbound(text="order 12"))


def test_a_catastrophic_regex_times_out_as_no_match() -> None:
    pattern = trigger(type="regex", value=r"^(a+)+$")
    started = time.monotonic()

    matched = trigger_matches(pattern, Inbound(text="a" * 40 + "!"))

    assert matched is False
    assert time.monotonic() - started < 5  # bounded, not exponential


@pytest.mark.parametrize(
    ("stored", "inbound", "matches"),
    [
        (
            {"type": "postback", "value": "HOURS"},
            Inbound(text=None, postback_payload="HOURS"),
            True,
        ),
        ({"type": "postback", "value": "HOURS"}, Inbound(text="HOURS"), False),
        ({"type": "story_mention"}, Inbound(text=None, story_mention=True), True),
        ({"type": "story_reply"}, Inbound(text="wow", story_reply=True), True),
        ({"type": "story_reply"}, Inbound(text="wow"), False),
        ({"type": "first_message"}, Inbound(text="hi", first_message=True), True),
        ({"type": "first_message"}, Inbound(text="hi"), False),
    ],
)
def test_event_triggers(stored: dict[str, Any], inbound: Inbound, matches: bool) -> None:
    assert trigger_matches(RuleTrigger.from_json(stored), inbound) is matches


def test_the_highest_priority_then_the_oldest_enabled_rule_answers() -> None:
    rules = {
        "low": rule({"type": "keyword", "value": "ship"}, reply="low", priority=1, order=0),
        "high-old": rule(
            {"type": "keyword", "value": "ship"}, reply="high-old", priority=5, order=1
        ),
        "high-new": rule(
            {"type": "keyword", "value": "ship"}, reply="high-new", priority=5, order=2
        ),
        "off": rule(
            {"type": "keyword", "value": "ship"}, reply="off", priority=9, order=3, enabled=False
        ),
    }

    match = choose(rules, NO_SETTINGS, Inbound(text="ship?"), replied_at={})

    assert match is not None
    assert (match.rule_id, match.template) == ("high-old", "high-old")


def test_business_hours_are_judged_in_the_accounts_time_zone() -> None:
    settings = AccountSettings.from_json(
        {"timezone": "Europe/Berlin", "business_hours": {"mon": [["11:00", "12:00"]]}}
    )
    rules = {
        "in": rule(
            {"type": "keyword", "value": "hi"}, reply="in", priority=2, business_hours="inside"
        ),
        "out": rule(
            {"type": "keyword", "value": "hi"}, reply="out", priority=1, business_hours="outside"
        ),
    }

    at_eleven = choose(rules, settings, Inbound(text="hi", sent_at=MONDAY_10_UTC), replied_at={})
    at_noon = choose(
        rules, settings, Inbound(text="hi", sent_at=MONDAY_10_UTC + 3_600_000), replied_at={}
    )

    assert (at_eleven and at_eleven.rule_id, at_noon and at_noon.rule_id) == ("in", "out")


def test_once_per_hours_lets_a_lower_rule_or_nothing_answer_meanwhile() -> None:
    rules = {"greet": rule({"type": "keyword", "value": "hi"}, once_per_hours=24)}
    inbound = Inbound(text="hi", sent_at=MONDAY_10_UTC)

    soon = choose(rules, NO_SETTINGS, inbound, replied_at={"greet": MONDAY_10_UTC - 3_600_000})
    later = choose(
        rules, NO_SETTINGS, inbound, replied_at={"greet": MONDAY_10_UTC - 25 * 3_600_000}
    )

    assert soon is None
    assert later is not None


def test_the_fallback_answers_unmatched_text_at_most_once_a_day() -> None:
    settings = AccountSettings(fallback_reply="We'll get back to you.")
    inbound = Inbound(text="anything", sent_at=MONDAY_10_UTC)

    first = choose({}, settings, inbound, replied_at={})
    again = choose({}, settings, inbound, replied_at={"": MONDAY_10_UTC - 3_600_000})

    assert first is not None
    assert (first.rule_id, first.template) == (None, "We'll get back to you.")
    assert again is None


def definition(**overrides: Any) -> RuleDefinition:
    values: dict[str, Any] = {
        "name": "shipping",
        "triggers": [{"type": "keyword", "value": "ship"}],
        "reply": "Hi {first_name}!",
    }
    values.update(overrides)
    return msgspec.convert(values, RuleDefinition)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"reply": "Hi {name}!"}, "reply"),
        ({"reply": "Hi {first_name"}, "reply"),
        ({"reply": "  "}, "reply"),
        ({"triggers": [{"type": "regex", "value": "(unclosed"}]}, "triggers[0].value"),
        (
            {"triggers": [{"type": "keyword", "value": "ok"}, {"type": "keyword"}]},
            "triggers[1].value",
        ),
        ({"triggers": []}, "triggers"),
        ({"name": " "}, "name"),
        ({"conditions": {"once_per_hours": 0}}, "conditions.once_per_hours"),
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_rule(definition(**overrides))

    assert raised.value.field == field


def test_templates_fill_names_with_fallbacks() -> None:
    template = "Hi {first_name} (@{username}), this is {account_username}. {{literally}}"

    known = render(
        template, profile={"name": "Anna Schmidt", "username": "anna"}, account_username="shop"
    )
    unknown = render(template, profile={}, account_username="shop")

    assert known == "Hi Anna (@anna), this is shop. {literally}"
    assert unknown == "Hi there (@there), this is shop. {literally}"
