"""Operators manage accounts and rules over REST; a matching message gets its reply queued."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    ACCESS_TOKEN,
    ACCOUNT,
    APP_SECRET,
    PARTICIPANT,
    VERIFY_TOKEN,
    bearer,
    eventually,
    issue_key,
    meta_body,
    meta_json,
    signed_headers,
    stored_events,
)
from tests.support.fake_graph import FakeGraphApi

Client = AsyncTestClient[Any]
CONVERSATION = str(conversation_id(ACCOUNT, PARTICIPANT))
RULES = f"/api/v1/accounts/{ACCOUNT}/rules"
REGISTER = {
    "ig_account_id": ACCOUNT,
    "username": "myshop",
    "app_secret": APP_SECRET,
    "access_token": ACCESS_TOKEN,
    "verify_token": VERIFY_TOKEN,
}
SHIPPING = {
    "name": "shipping",
    "triggers": [{"type": "keyword", "value": "ship"}],
    "reply": "Hi {first_name}! {account_username} ships worldwide.",
    "priority": 10,
}


@pytest.fixture
def bare(
    database_url: str, make_services: Callable[..., Services], graph: FakeGraphApi
) -> Services:
    """Services with no account yet, whose Graph API is the fake."""
    return make_services(database_url, graph_api_url=graph.url)


@pytest.fixture
async def api(bare: Services) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(bare)) as client:
        yield client


@pytest.fixture
def admin(bare: Services) -> dict[str, str]:
    return bearer(issue_key(bare, "admin"))


async def register(api: Client, admin: dict[str, str]) -> dict[str, Any]:
    response = await api.post("/api/v1/accounts", headers=admin, json=REGISTER)
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered


def message(text: str, mid: str | None = None) -> bytes:
    """A text message from the participant, sent now (so inside the 24-hour window)."""
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = int(time.time() * 1000)
    item["message"]["text"] = text
    if mid is not None:
        item["message"]["mid"] = mid
    return json.dumps(body).encode()


def types_of(services: Services) -> list[str]:
    return [kind for kind, _ in stored_events(services)]


async def test_done_when_register_add_a_rule_dry_run_and_a_matching_webhook_queues_the_reply(
    api: Client, admin: dict[str, str], bare: Services, graph: FakeGraphApi
) -> None:
    # an operator registers an account and adds a rule over REST
    await register(api, admin)
    added = await api.post(RULES, headers=admin, json=SHIPPING)
    assert added.status_code == 201, added.text
    rule = added.json()

    # dry-runs it
    trial = await api.post(
        f"{RULES}/test", headers=admin, json={"text": "Do you SHIP to Munich?", "username": "anna"}
    )
    assert trial.json() == {
        "matched": True,
        "rule_id": rule["id"],
        "rule_name": "shipping",
        "rule_version": 1,
        "reply": "Hi anna! myshop ships worldwide.",
        "message": {"type": "text", "text": "Hi anna! myshop ships worldwide."},
    }
    assert "Conversation.ReplyQueued" not in types_of(bare)

    # and a signed webhook with a matching text queues the rendered reply
    raw = message("Hello, do you ship to Munich?")
    assert (
        await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    ).status_code == 200

    def queued() -> dict[str, Any]:
        found = [data for kind, data in stored_events(bare) if kind == "Conversation.ReplyQueued"]
        assert found
        return found[0]

    reply = await eventually(queued)
    assert reply["text"] == "Hi Anna! myshop ships worldwide."
    assert (reply["rule_id"], reply["rule_version"], reply["automated"]) == (rule["id"], 1, True)
    assert reply["in_reply_to"] == json.loads(raw)["entry"][0]["messaging"][0]["message"]["mid"]
    assert graph.requests[0]["path"].endswith(f"/{PARTICIPANT}")
    assert ACCESS_TOKEN not in json.dumps(graph.requests[0]["query"])  # sent as a header


async def test_echoes_reactions_and_reads_never_trigger_rules(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    await register(api, admin)
    await api.post(
        RULES, headers=admin, json={**SHIPPING, "triggers": [{"type": "regex", "value": "."}]}
    )
    for kind in ("echo", "reaction", "read", "unsend", "edit"):
        raw = meta_body(kind)
        assert (
            await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
        ).status_code == 200
    bare.read_models.wait_for("auto_reply")

    assert not [t for t in types_of(bare) if "Reply" in t]


async def test_a_suspended_account_stores_messages_and_records_why_it_did_not_answer(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    await register(api, admin)
    await api.post(RULES, headers=admin, json=SHIPPING)
    suspended = await api.post(
        f"/api/v1/accounts/{ACCOUNT}/suspend", headers=admin, json={"reason": "unpaid"}
    )
    assert suspended.json()["status"] == "suspended"
    body = meta_json("text")
    body["entry"][0]["messaging"][0]["message"]["text"] = "ship?"
    raw = json.dumps(body).encode()

    assert (
        await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    ).status_code == 200

    def skipped() -> dict[str, Any]:
        found = [d for k, d in stored_events(bare) if k == "Conversation.AutoReplySkipped"]
        assert found
        return found[0]

    assert (await eventually(skipped))["reason"] == "account_suspended"
    assert "Conversation.MessageReceived" in types_of(bare)


async def test_handover_pauses_automation_until_resumed(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    await register(api, admin)
    await api.post(RULES, headers=admin, json=SHIPPING)
    base = f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}"

    async def say(mid: str) -> None:
        raw = message("ship?", mid)
        assert (
            await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
        ).status_code == 200
        bare.read_models.wait_for("auto_reply")
        bare.read_models.wait_for("conversation_list")

    await say("m-1")
    paused = await api.post(f"{base}/handover", headers=admin)
    assert paused.json()["automation_paused"] is True
    await say("m-2")
    resumed = await api.post(f"{base}/resume", headers=admin)
    assert resumed.json()["automation_paused"] is False
    await say("m-3")

    decisions = [
        (k, d.get("in_reply_to"), d.get("reason"))
        for k, d in stored_events(bare)
        if k in ("Conversation.ReplyQueued", "Conversation.AutoReplySkipped")
    ]
    assert decisions == [
        ("Conversation.ReplyQueued", "m-1", None),
        ("Conversation.AutoReplySkipped", "m-2", "automation_paused"),
        ("Conversation.ReplyQueued", "m-3", None),
    ]


async def test_rules_can_be_listed_replaced_disabled_enabled_and_removed(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    await register(api, admin)
    rule = (await api.post(RULES, headers=admin, json=SHIPPING)).json()
    path = f"{RULES}/{rule['id']}"

    replaced = await api.put(path, headers=admin, json={**SHIPPING, "reply": "We ship!"})
    disabled = await api.post(f"{path}/disable", headers=admin)
    trial_off = await api.post(f"{RULES}/test", headers=admin, json={"text": "ship"})
    enabled = await api.post(f"{path}/enable", headers=admin)
    listed = await api.get(RULES, headers=admin)
    removed = await api.delete(path, headers=admin)
    gone = await api.get(path, headers=admin)

    assert (replaced.json()["version"], replaced.json()["reply"]) == (2, "We ship!")
    assert disabled.json()["enabled"] is False
    assert trial_off.json()["matched"] is False
    assert enabled.json()["enabled"] is True
    assert [r["id"] for r in listed.json()] == [rule["id"]]
    assert removed.status_code == 204
    assert gone.status_code == 404
    assert [t for t in types_of(bare) if t.startswith("Account.Rule")] == [
        "Account.RuleAdded",
        "Account.RuleChanged",
        "Account.RuleDisabled",
        "Account.RuleEnabled",
        "Account.RuleRemoved",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SHIPPING, "reply": "Hi {nickname}"}, "reply"),
        ({**SHIPPING, "triggers": [{"type": "regex", "value": "[a-"}]}, "triggers[0].value"),
        ({**SHIPPING, "triggers": []}, "triggers"),
        # a format spec would render a 50 MB reply into an event
        ({**SHIPPING, "reply": "Hi {first_name:>50000000}"}, "reply"),
        ({**SHIPPING, "reply": "Hi {first_name!r}"}, "reply"),
        ({**SHIPPING, "reply": "Hi {first_name[0]}"}, "reply"),
        ({**SHIPPING, "reply": "x" * 1001}, "reply"),
    ],
)
async def test_an_invalid_rule_is_a_422_naming_the_field(
    api: Client, admin: dict[str, str], bare: Services, body: dict[str, Any], field: str
) -> None:
    await register(api, admin)

    response = await api.post(RULES, headers=admin, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert "Account.RuleAdded" not in types_of(bare)


async def test_account_management_endpoints(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    await register(api, admin)
    account = f"/api/v1/accounts/{ACCOUNT}"

    changed = await api.patch(
        account,
        headers=admin,
        json={
            "display_name": "My Shop",
            "settings": {
                "timezone": "Europe/Berlin",
                "business_hours": {"mon": [["09:00", "17:00"]]},
                "fallback_reply": "Thanks, {first_name}! We answer soon.",
                "auto_resume_after_hours": 12,
            },
        },
    )
    rotated = await api.post(
        f"{account}/credentials", headers=admin, json={"access_token": "IGAA-new-token"}
    )
    listed = await api.get("/api/v1/accounts", headers=admin)
    deactivated = await api.delete(account, headers=admin)
    reactivated = await api.post(f"{account}/reactivate", headers=admin)

    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "My Shop"
    assert changed.json()["settings"]["timezone"] == "Europe/Berlin"
    credentials = rotated.json()["credentials"]
    assert credentials["access_token"]["set"] is True
    assert credentials["access_token"]["rotated_at"] is not None
    assert credentials["app_secret"]["rotated_at"] is None
    assert [a["ig_account_id"] for a in listed.json()] == [ACCOUNT]
    assert (deactivated.json()["status"], reactivated.json()["status"]) == ("deactivated", "active")
    rotated_event = next(d for k, d in stored_events(bare) if k == "Account.CredentialsRotated")
    assert rotated_event["access_token"].startswith("gAAAA")
    assert rotated_event["app_secret"] is None


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/api/v1/accounts", {**REGISTER, "ig_account_id": "abc"}, 422, "ig_account_id"),
        ("POST", "/api/v1/accounts", REGISTER, 409, None),
        ("POST", "/api/v1/accounts", {"username": "x"}, 400, None),
        (
            "PATCH",
            f"/api/v1/accounts/{ACCOUNT}",
            {"settings": {"timezone": "Mars/Olympus"}},
            422,
            "settings.timezone",
        ),
        (
            "PATCH",
            f"/api/v1/accounts/{ACCOUNT}",
            {"settings": {"business_hours": {"mon": [["18:00", "09:00"]]}}},
            422,
            "settings.business_hours.mon",
        ),
        (
            "PATCH",
            f"/api/v1/accounts/{ACCOUNT}",
            {"settings": {"fallback_reply": "{oops}"}},
            422,
            "settings.fallback_reply",
        ),
        ("POST", f"/api/v1/accounts/{ACCOUNT}/credentials", {}, 422, "credentials"),
        ("GET", "/api/v1/accounts/17841499999999999", None, 404, None),
        ("POST", "/api/v1/accounts/17841499999999999/suspend", None, 404, None),
    ],
)
async def test_account_errors(
    api: Client,
    admin: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    field: str | None,
) -> None:
    await register(api, admin)

    response = await api.request(method, path, headers=admin, json=body)

    assert response.status_code in ((400, 422) if status == 400 else (status,)), response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert response.json()["field"] == field


async def test_only_admins_manage_accounts_and_account_keys_manage_only_their_rules(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    await register(api, admin)
    crm = bearer(issue_key(bare, "account", ACCOUNT))
    auditor = bearer(issue_key(bare, "auditor", ACCOUNT))

    assert (await api.post("/api/v1/accounts", headers=crm, json=REGISTER)).status_code == 403
    assert (await api.get("/api/v1/accounts", headers=crm)).status_code == 403
    assert (await api.post(f"/api/v1/accounts/{ACCOUNT}/suspend", headers=crm)).status_code == 403
    assert (await api.post(RULES, headers=crm, json=SHIPPING)).status_code == 201
    assert (await api.post(RULES, headers=auditor, json=SHIPPING)).status_code == 403
    assert (await api.get(RULES, headers=auditor)).status_code == 200


async def test_no_secret_appears_in_any_response_or_log_record(
    api: Client, admin: dict[str, str], bare: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    new_token = "IGAA-rotated-secret-token"
    responses = [
        await api.post("/api/v1/accounts", headers=admin, json=REGISTER),
        await api.post("/api/v1/accounts", headers=admin, json=REGISTER),
        await api.get(f"/api/v1/accounts/{ACCOUNT}", headers=admin),
        await api.get("/api/v1/accounts", headers=admin),
        await api.post(
            f"/api/v1/accounts/{ACCOUNT}/credentials",
            headers=admin,
            json={"access_token": new_token},
        ),
        await api.post(
            f"/api/v1/accounts/{ACCOUNT}/credentials", headers=admin, json={"access_token": " bad "}
        ),
    ]

    seen = caplog.text + "".join(r.text for r in responses)
    for secret in (APP_SECRET, ACCESS_TOKEN, VERIFY_TOKEN, new_token):
        assert secret not in seen


async def test_replaying_the_account_reproduces_its_rules_and_the_decisions_stand(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    await register(api, admin)
    rule = (await api.post(RULES, headers=admin, json=SHIPPING)).json()
    await api.put(f"{RULES}/{rule['id']}", headers=admin, json={**SHIPPING, "priority": 3})
    raw = message("ship?")
    await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    bare.read_models.wait_for("auto_reply")
    before = stored_events(bare)

    # replay: the account rebuilt from its events has the same rules
    replayed = bare.ledger.account(ACCOUNT)
    assert replayed is not None
    assert replayed.rules[rule["id"]].spec.priority == 3
    assert replayed.rules[rule["id"]].version == 2

    # running the decision again over the whole log adds nothing
    def decisions() -> list[Any]:
        wanted = ("Conversation.ReplyQueued", "Conversation.AutoReplySkipped")
        return [(k, d) for k, d in stored_events(bare) if k in wanted]

    before_decisions = [
        (k, d)
        for k, d in before
        if k in ("Conversation.ReplyQueued", "Conversation.AutoReplySkipped")
    ]
    policy = bare.read_models.runners["auto_reply"]
    policy.view.drop()
    policy.catch_up()
    assert before_decisions
    assert decisions() == before_decisions


async def test_a_message_answered_after_the_24_hour_window_is_skipped_with_the_reason(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    # Meta's timestamp says the message is two days old (a redelivery after an outage)
    await register(api, admin)
    await api.post(RULES, headers=admin, json=SHIPPING)
    raw = meta_body("text").replace(b'"text": "Hi!', b'"text": "ship? Hi!')

    assert (
        await api.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    ).status_code == 200
    bare.read_models.wait_for("auto_reply")

    skipped = [d for k, d in stored_events(bare) if k == "Conversation.AutoReplySkipped"]
    assert [d["reason"] for d in skipped] == ["window_closed"]


async def test_an_accounts_sending_state_is_shown_to_operators(
    api: Client, admin: dict[str, str], bare: Services
) -> None:
    from datetime import datetime, timedelta

    from application.delivery import MetaError
    from application.sending import sends_paused, token_refresh_failed, token_rejected

    # given a registered account whose token works
    registered = await register(api, admin)
    path = f"/api/v1/accounts/{ACCOUNT}"
    fresh = (await api.get(path, headers=admin)).json()["sending"]
    assert fresh["token_rejected"] is False
    assert fresh["sends_paused_until"] is None
    assert fresh["token_refresh_failed_at"] is None
    expires = datetime.fromisoformat(fresh["token_expires_at"])
    since = expires - datetime.fromisoformat(registered["registered_at"])
    assert abs(since - timedelta(days=60)) < timedelta(milliseconds=1)
    assert fresh["token_expiring"] is False

    # when Meta rejects the token, pauses the account's sends and refuses a refresh
    now = int(time.time() * 1000)
    bare.writer.run_now(token_rejected(ACCOUNT, MetaError(190, None, "invalid token"), now))
    bare.writer.run_now(sends_paused(ACCOUNT, until=now + 3_600_000, code=4, reason="limit"))
    bare.writer.run_now(token_refresh_failed(ACCOUNT, "refresh refused", now))

    # then the account says so, shown alone and in the list
    shown = (await api.get(path, headers=admin)).json()["sending"]
    listed = (await api.get("/api/v1/accounts", headers=admin)).json()[0]["sending"]
    assert shown == listed
    assert shown["token_rejected"] is True
    paused = datetime.fromisoformat(shown["sends_paused_until"])
    assert int(paused.timestamp() * 1000) == now + 3_600_000
    assert int(datetime.fromisoformat(shown["token_refresh_failed_at"]).timestamp()) == now // 1000
