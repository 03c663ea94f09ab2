"""The account's rules, settings and CRM endpoint are typed values, stored as the JSON
objects the log has always held: what an event stores does not change, and what older
events stored still loads."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
import pytest

from application.accounts import SettingsChange, changed, validate_settings
from application.rules import RuleDefinition, validate_rule
from domain.account import Account
from domain.account_values import AccountCrmEndpoint, AccountSettings, RuleSpec, RuleTrigger

SHIPPING: dict[str, Any] = {
    "name": "shipping",
    "triggers": [{"type": "keyword", "value": "ship"}, {"type": "story_mention"}],
    "reply": "Hi {first_name}!",
    "priority": 2,
    "conditions": {"once_per_hours": 24},
}


def account() -> Account:
    return Account(
        ig_account_id="17841400000000001",
        username="shop",
        app_secret="sealed",
        access_token="sealed",
        verify_token="sealed",
        by="test",
    )


def test_a_rule_is_stored_as_the_object_the_log_has_always_held() -> None:
    definition = msgspec.convert(SHIPPING, RuleDefinition)
    shop = account()

    shop.add_rule(rule_id="r1", rule=validate_rule(definition), by="test")

    added = shop.collect_events()[-1]
    assert isinstance(added, Account.RuleAdded)
    # What the rule was stored as before it had a type: the definition's builtins (a rule
    # without quick replies or a template stores neither, as before they existed).
    stored = msgspec.to_builtins(definition)
    assert (stored.pop("quick_replies"), stored.pop("template")) == (None, None)
    assert added.rule == stored
    assert added.spec == shop.rules["r1"].spec
    assert list(added.rule) == [
        "name",
        "triggers",
        "reply",
        "priority",
        "conditions",
        "enabled",
        "public_reply",
    ]
    assert shop.rules["r1"].spec.triggers == (
        RuleTrigger("keyword", "ship"),
        RuleTrigger("story_mention", None),
    )
    assert (shop.rules["r1"].version, shop.rules["r1"].order) == (1, 0)


def test_a_rule_changed_to_what_it_is_records_nothing_and_a_change_raises_its_version() -> None:
    shop = account()
    spec = validate_rule(msgspec.convert(SHIPPING, RuleDefinition))
    shop.add_rule(rule_id="r1", rule=spec, by="test")

    assert shop.change_rule(rule_id="r1", rule=spec, by="test") is False
    assert shop.disable_rule(rule_id="r1", by="test") is True
    again = RuleSpec.from_json({**spec.to_json(), "priority": 5, "enabled": False})
    assert shop.change_rule(rule_id="r1", rule=again, by="test") is True

    assert shop.rules["r1"].spec.priority == 5
    assert (shop.rules["r1"].version, shop.rules["r1"].order) == (2, 0)


def test_settings_are_stored_whole_and_older_settings_load_with_defaults() -> None:
    shop = account()
    values = validate_settings(
        SettingsChange(timezone="Europe/Berlin", business_hours={"mon": [["09:00", "17:00"]]})
    )

    assert shop.change_settings(settings=changed(shop.settings, values), by="test") is True
    assert shop.change_settings(settings=changed(shop.settings, values), by="test") is False

    event = shop.collect_events()[-1]
    assert isinstance(event, Account.SettingsChanged)
    assert event.account_settings == shop.settings
    stored = event.settings
    assert stored == {
        "auto_reply": True,
        "fallback_reply": None,
        "timezone": "Europe/Berlin",
        "business_hours": {"mon": [["09:00", "17:00"]]},
        "auto_resume_after_hours": None,
        "content_retention_days": None,
        "primary_receiver": True,
    }
    assert shop.settings.business_hours == {"mon": (("09:00", "17:00"),)}
    # A `SettingsChanged` stored before `content_retention_days` existed.
    older = {k: v for k, v in stored.items() if k != "content_retention_days"}
    assert AccountSettings.from_json(older).content_retention_days is None
    assert AccountSettings.from_json(stored).to_json() == stored


@pytest.mark.parametrize(
    "stored",
    [
        {**SHIPPING, "enabled": True, "conditions": {"business_hours": None, "once_per_hours": 3}},
        {
            "name": "n",
            "triggers": [{"type": "postback", "value": "P"}],
            "reply": "r",
            "priority": 0,
            "conditions": {"business_hours": "inside", "once_per_hours": None},
            "enabled": False,
        },
    ],
)
def test_a_stored_rule_reads_back_to_the_same_object(stored: dict[str, Any]) -> None:
    normal = msgspec.to_builtins(msgspec.convert(stored, RuleDefinition))
    # (a rule without quick replies or a template stores neither)
    assert (normal.pop("quick_replies"), normal.pop("template")) == (None, None)

    assert RuleSpec.from_json(normal).to_json() == normal


def test_the_crm_endpoint_keeps_its_secret_when_set_again_and_is_disabled_in_place() -> None:
    shop = account()
    shop.set_crm_endpoint(url="https://crm.test/a", event_types=["reply.sent"], secret="s1", by="t")
    shop.set_crm_endpoint(url="https://crm.test/b", event_types=["reply.sent"], secret=None, by="t")

    assert shop.disable_crm_endpoint(reason="410") is True
    assert shop.crm_endpoint == AccountCrmEndpoint(
        "https://crm.test/b", ("reply.sent",), "s1", enabled=False
    )


def test_an_event_stored_before_a_field_existed_reads_that_field_as_its_default() -> None:
    """The projections read `MessageUnsent.sent_at` and `ReplyQueued.attachment` as
    attributes: events stored without them read the declared default."""
    from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent, Transcoder

    from domain.conversation import MESSAGE_UNSENT, Conversation

    transcoder: Transcoder = JSONTranscoder()
    state = {"timestamp": "2026-01-05T10:00:00+00:00", "key": "unsent:m", "mid": "m"}
    stored = StoredEvent(
        originator_id="9b1d6f49-2f58-4a8f-a3a7-3a3b0b8f9a10",
        originator_version=3,
        topic=MESSAGE_UNSENT,
        state=transcoder.encode({**state, "unsent_at": 1, "standby": False}),
    )

    event = Mapper[UUID](transcoder=transcoder).to_domain_event(stored)

    assert isinstance(event, Conversation.MessageUnsent)
    assert "sent_at" not in event.__dict__
    assert event.sent_at is None


def test_a_rules_quick_replies_and_template_are_kept_as_stored() -> None:
    quick = {**SHIPPING, "quick_replies": [{"title": "Track", "payload": "TRACK"}]}
    shop = account()

    shop.add_rule(
        rule_id="r1", rule=validate_rule(msgspec.convert(quick, RuleDefinition)), by="test"
    )

    added = shop.collect_events()[-1]
    assert isinstance(added, Account.RuleAdded)
    assert added.rule["quick_replies"] == [{"title": "Track", "payload": "TRACK"}]
    assert "template" not in added.rule
    assert shop.rules["r1"].spec.quick_replies == added.rule["quick_replies"]
