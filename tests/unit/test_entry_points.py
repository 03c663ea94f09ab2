"""The account's entry points (ice breakers, persistent menu): Meta's limits checked before
anything is recorded, and the versions the dispatcher compares."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from application.entry_points import (
    RETRY_SCHEDULE_SECONDS,
    SetIceBreakers,
    SetPersistentMenu,
    check_ice_breakers,
    check_persistent_menu,
    next_attempt_at,
    push_of,
)
from application.errors import InvalidInput
from domain.account import Account
from interfaces.dev_graph_api import profile_refusal


def _question(n: int) -> dict[str, str]:
    return {"question": f"Question {n}?", "payload": f"Q{n}"}


def _ice(*locales: tuple[str, int]) -> dict[str, Any]:
    return {
        "ice_breakers": [
            {"locale": locale, "call_to_actions": [_question(n) for n in range(count)]}
            for locale, count in locales
        ]
    }


POSTBACK = {"type": "postback", "title": "Talk to us", "payload": "AGENT"}
WEB = {"type": "web_url", "title": "Shop", "url": "https://shop.example/"}


def _menu(*items: dict[str, Any], locale: str = "default") -> dict[str, Any]:
    return {"persistent_menu": [{"locale": locale, "call_to_actions": list(items)}]}


def _with(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**item, **changes}.items() if v is not None}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_ice(("default", 5)), "ice_breakers[0].call_to_actions[4]"),
        (_ice(("default", 0)), "ice_breakers[0].call_to_actions"),
        (_ice(("en_US", 2)), "ice_breakers"),
        (_ice(("default", 1), ("default", 1)), "ice_breakers[1].locale"),
        (_ice(("default", 1), ("english", 1)), "ice_breakers[1].locale"),
        (_ice(), "ice_breakers"),
        (
            {
                "ice_breakers": [
                    {
                        "locale": "default",
                        "call_to_actions": [{"question": "x" * 81, "payload": "P"}],
                    }
                ]
            },
            "ice_breakers[0].call_to_actions[0].question",
        ),
        (
            {
                "ice_breakers": [
                    {
                        "locale": "default",
                        "call_to_actions": [{"question": "Hours?", "payload": "p" * 1001}],
                    }
                ]
            },
            "ice_breakers[0].call_to_actions[0].payload",
        ),
        (
            {
                "ice_breakers": [
                    {"locale": "default", "call_to_actions": [{"question": "  ", "payload": "P"}]}
                ]
            },
            "ice_breakers[0].call_to_actions[0].question",
        ),
    ],
)
def test_ice_breakers_meta_would_refuse_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_ice_breakers(msgspec.convert(body, SetIceBreakers))
    assert refused.value.field == field


def test_ice_breakers_within_meta_limits_keep_meta_shape() -> None:
    body = _ice(("default", 4), ("en_GB", 1))
    checked = check_ice_breakers(msgspec.convert(body, SetIceBreakers))
    assert checked == body["ice_breakers"]
    assert profile_refusal({"platform": "instagram", "ice_breakers": checked}) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_menu(*[POSTBACK] * 21), "persistent_menu[0].call_to_actions[20]"),
        (_menu(_with(WEB, title="t" * 31)), "persistent_menu[0].call_to_actions[0].title"),
        (
            _menu(_with(WEB, url="http://shop.example/")),
            "persistent_menu[0].call_to_actions[0].url",
        ),
        (_menu(_with(WEB, url="https:///nohost")), "persistent_menu[0].call_to_actions[0].url"),
        (_menu(_with(WEB, url=None)), "persistent_menu[0].call_to_actions[0].url"),
        (_menu(_with(WEB, payload="X")), "persistent_menu[0].call_to_actions[0].payload"),
        (_menu(_with(POSTBACK, payload=None)), "persistent_menu[0].call_to_actions[0].payload"),
        (
            _menu(_with(POSTBACK, url="https://a.example/")),
            "persistent_menu[0].call_to_actions[0].url",
        ),
        (
            _menu(_with(POSTBACK, payload="p" * 1001)),
            "persistent_menu[0].call_to_actions[0].payload",
        ),
        (_menu(POSTBACK, locale="fr_FR"), "persistent_menu"),
        (_menu(), "persistent_menu[0].call_to_actions"),
        (
            {
                "persistent_menu": [
                    {"locale": "default", "call_to_actions": [POSTBACK]},
                    {"locale": "default", "call_to_actions": [WEB]},
                ]
            },
            "persistent_menu[1].locale",
        ),
    ],
)
def test_menus_meta_would_refuse_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_persistent_menu(msgspec.convert(body, SetPersistentMenu))
    assert refused.value.field == field


def test_a_menu_within_meta_limits_keeps_meta_shape() -> None:
    body = _menu(*[POSTBACK] * 19, WEB)
    checked = check_persistent_menu(msgspec.convert(body, SetPersistentMenu))
    assert checked == body["persistent_menu"]
    assert profile_refusal({"platform": "instagram", "persistent_menu": checked}) is None


@pytest.mark.parametrize("field", ["composer_input_disabled", "webview_height_ratio"])
def test_options_instagram_lacks_are_refused(field: str) -> None:
    body = _menu(POSTBACK)
    if field == "composer_input_disabled":
        body["persistent_menu"][0][field] = True
    else:
        body["persistent_menu"][0]["call_to_actions"][0] = {**POSTBACK, field: "full"}
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.convert(body, SetPersistentMenu)


def _account() -> Account:
    return Account(
        ig_account_id="17841400000000001",
        username="shop",
        app_secret="sealed",
        access_token="sealed",
        verify_token="sealed",
        by="test",
    )


def _names(account: Account) -> list[str]:
    return [type(e).__name__ for e in account.collect_events()]


ICE = [{"locale": "default", "call_to_actions": [_question(1)]}]


def test_a_change_equal_to_the_current_value_records_nothing() -> None:
    account = _account()
    account.collect_events()
    assert account.change_ice_breakers(ice_breakers=None, by="admin") is False
    assert account.change_ice_breakers(ice_breakers=ICE, by="admin") is True
    assert account.change_ice_breakers(ice_breakers=ICE, by="admin") is False
    assert account.change_persistent_menu(persistent_menu=None, by="admin") is False
    assert _names(account) == ["IceBreakersChanged"]
    assert push_of(account, "ice_breakers").status == "pending"
    assert push_of(account, "persistent_menu").status == "none"


def test_only_the_current_version_is_applied_or_failed() -> None:
    account = _account()
    account.change_ice_breakers(ice_breakers=ICE, by="admin")
    account.change_ice_breakers(ice_breakers=None, by="admin")  # version 2: removed
    account.collect_events()
    pushed = {"platform": "instagram", "ice_breakers": ICE}
    # An older push that fails says nothing of the current value.
    args: dict[str, Any] = {"code": 2, "subcode": None, "message": "m", "retryable": True}
    assert not account.record_entry_point_failed(
        entry_point="ice_breakers", version=1, pushed=pushed, at=1, **args
    )
    # An older push that Meta took is recorded, but the current one is still due.
    assert account.record_entry_point_applied(
        entry_point="ice_breakers", version=1, pushed=pushed, at=1
    )
    assert push_of(account, "ice_breakers").status == "pending"
    removed = {"platform": "instagram", "fields": ["ice_breakers"]}
    assert account.record_entry_point_failed(
        entry_point="ice_breakers", version=2, pushed=removed, at=10_000, **args
    )
    assert account.record_entry_point_failed(
        entry_point="ice_breakers", version=2, pushed=removed, at=50_000, **args
    )
    push = push_of(account, "ice_breakers")
    assert push.status == "failed"
    assert push.error is not None
    assert (push.error.attempt, push.error.retrying) == (2, True)
    assert account.record_entry_point_applied(
        entry_point="ice_breakers", version=2, pushed=removed, at=60_000
    )
    assert not account.record_entry_point_applied(
        entry_point="ice_breakers", version=2, pushed=removed, at=70_000
    )
    push = push_of(account, "ice_breakers")
    assert (push.status, push.error, push.applied_version) == ("applied", None, 2)


def test_the_retry_schedule_backs_off_and_waits_for_a_change_when_meta_refuses() -> None:
    failure = {"retryable": True, "attempt": 1, "at": 1_000}
    assert next_attempt_at(failure) == 1_000 + RETRY_SCHEDULE_SECONDS[0] * 1000
    assert next_attempt_at({**failure, "attempt": 2}) == 1_000 + RETRY_SCHEDULE_SECONDS[1] * 1000
    assert next_attempt_at({**failure, "attempt": 99}) == 1_000 + RETRY_SCHEDULE_SECONDS[-1] * 1000
    assert next_attempt_at({**failure, "retryable": False}) is None


def test_an_account_stored_before_entry_points_has_none() -> None:
    account = _account()
    assert "_entry_points" not in vars(account)  # registration sets none, as before
    assert account.entry_point("persistent_menu")["version"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "instagram"},
        _ice(("default", 5)),
        _ice(("en_US", 1)),
        _menu(_with(WEB, title="t" * 31)),
        _menu(_with(POSTBACK, type="nested")),
        _menu(_with(WEB, url=None)),
        _menu(*[POSTBACK] * 21),
    ],
)
def test_the_fake_graph_api_refuses_what_meta_refuses(body: dict[str, Any]) -> None:
    refusal = profile_refusal({"platform": "instagram", **body})
    assert refusal is not None
    assert refusal["error"]["code"] == 100
