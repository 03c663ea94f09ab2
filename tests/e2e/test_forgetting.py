"""An unsent message is found nowhere afterwards, not even in the database's bytes, and the
log still verifies: on SQLite and PostgreSQL, through signed webhooks, the REST API, the
events stream, the CRM's deliveries and the CLI (`replay`, `audit verify|projections`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from application.content import ContentMapper
from application.ingest import sign
from application.reply_windows import DAY_MS
from application.retention import ContentRetention
from domain.identity import conversation_id
from infrastructure.settings import Settings
from interfaces.cli import main
from interfaces.composition import Services, build
from interfaces.http.app import create_app
from tests.conftest import (
    ACCOUNT,
    APP_SECRET,
    PARTICIPANT,
    TEST_KEY,
    bearer,
    issue_key,
    meta_json,
    register_account,
    signed_headers,
)
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi

TEXT = "meet me at the old mill 7f3a9"
URL = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=private-photo-7f3a9"
CONVERSATION = str(conversation_id(ACCOUNT, PARTICIPANT))

RawBytes = Callable[[], bytes]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RawBytes:
    """The database for the services and the CLI (in the environment); what it holds,
    as bytes: SQLite's files, or PostgreSQL's `pg_dump`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger.sqlite3"

        def raw() -> bytes:
            return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())

    else:
        url = request.getfixturevalue("postgres_url")
        base, _, schema = url.partition("?schema=")

        def raw() -> bytes:
            dumped = subprocess.run(
                ["pg_dump", "--schema", schema, "--no-owner", base],
                capture_output=True,
                check=True,
            )
            return dumped.stdout

    for name, value in {
        "DMLEDGER_DATABASE_URL": url,
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
        "DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "true",
    }.items():
        monkeypatch.setenv(name, value)
    return raw


def services_of_environment() -> Services:
    return build(Settings.from_environ(os.environ), announce=lambda _: None)


def served(crm: FakeCrm, event_types: list[str] | None = None) -> Services:
    """Services of the environment with the account registered, sending `event_types` (all,
    if None) to the fake CRM."""
    services = services_of_environment()
    register_account(services)
    view = services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=event_types, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    return services


def message(mid: str, *, deleted: bool = False, echo: bool = False) -> bytes:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    if echo:  # the business account wrote to the participant
        item["sender"], item["recipient"] = item["recipient"], item["sender"]
    item["message"] = (
        {"mid": mid, "is_deleted": True}
        if deleted
        else {
            "mid": mid,
            "text": TEXT,
            "attachments": [{"type": "image", "payload": {"url": URL}}],
            **({"is_echo": True} if echo else {}),
        }
    )
    return json.dumps(body).encode()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def settle(services: Services) -> None:
    services.read_models.catch_up()
    asyncio.run(services.dispatcher.drain())


def everything_shown(client: TestClient[Any], headers: dict[str, str]) -> str:
    """What the REST API, the events stream and a conversation's state say, as one text."""
    base = f"/api/v1/accounts/{ACCOUNT}"
    now = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    responses = [
        client.get(f"{base}/conversations", headers=headers),
        client.get(f"{base}/conversations/{CONVERSATION}", headers=headers),
        client.get(f"{base}/conversations/{CONVERSATION}/messages", headers=headers),
        client.get(f"{base}/events", headers=headers),
        client.get(
            f"{base}/conversations/{CONVERSATION}/state", params={"at": now}, headers=headers
        ),
        client.get(f"{base}/deliveries", headers=headers),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
    return "\n".join(r.text for r in responses)


Action = Callable[[TestClient[Any], dict[str, str], Services], None]


def unsend_scenario(
    crm: FakeCrm, webhooks: list[bytes], *, redeliver: bool, then: Action | None = None
) -> tuple[str, list[dict[str, Any]], str]:
    """Registers the account with the fake CRM, posts `webhooks` (signed) one by one, then
    does `then` with an admin key if given; (everything shown, the CRM deliveries made after
    the last webhook or `then`, the messages)."""
    services = served(crm)
    try:
        headers = bearer(issue_key(services))
        app = create_app(services, run_projections=False, run_dispatcher=False)
        with TestClient(app=app) as client:
            for body in webhooks if then is not None else webhooks[:-1]:
                response = client.post(
                    "/webhooks/instagram", content=body, headers=signed_headers(body)
                )
                assert response.status_code == 200
                settle(services)
            before = len(crm.received)
            if then is None:
                body = webhooks[-1]
                response = client.post(
                    "/webhooks/instagram", content=body, headers=signed_headers(body)
                )
                assert response.status_code == 200
            else:
                then(client, headers, services)
            settle(services)
            if redeliver:
                since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
                response = client.post(
                    f"/api/v1/accounts/{ACCOUNT}/deliveries/redeliver",
                    params={"since": since},
                    headers=headers,
                )
                assert response.status_code == 200, response.text
                settle(services)
            shown = everything_shown(client, headers)
            messages = (
                client.get(
                    f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}/messages",
                    headers=headers,
                )
            ).text
        return shown, crm.received[before:], messages
    finally:
        services.close()


def assert_found_nowhere(
    shown: str, deliveries: list[dict[str, Any]], raw: RawBytes, capsys: pytest.CaptureFixture[str]
) -> None:
    assert TEXT not in shown
    assert URL not in shown
    assert deliveries, "the CRM was told something after the content went"
    for delivery in deliveries:
        body = json.dumps(delivery["payload"])
        assert TEXT not in body
        assert URL not in body
    status, replayed = run(capsys, "replay", "--account", ACCOUNT, "--format", "jsonl")
    assert status == 0
    assert TEXT not in replayed
    assert URL not in replayed
    stored = raw()
    assert TEXT.encode() not in stored
    assert URL.encode() not in stored
    status, verified = run(capsys, "audit", "verify")
    assert status == 0, verified
    status, compared = run(capsys, "audit", "projections", "--account", ACCOUNT)
    assert status == 0, compared


def test_an_unsent_message_is_found_nowhere_and_the_log_still_verifies(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a message the CRM was told of, with its text and its photo's URL
    # when the participant unsends it, and every CRM notification is delivered again
    shown, deliveries, messages = unsend_scenario(
        crm, [message("m-1"), message("m-1", deleted=True)], redeliver=True
    )

    # then its text and URL are nowhere: API, stream, CRM, replay, database bytes
    assert_found_nowhere(shown, deliveries, database, capsys)
    row = next(m for m in json.loads(messages)["messages"] if m["mid"] == "m-1")
    assert row["unsent"] is True
    assert row["unsent_at"] is not None
    assert row["text"] is None
    assert row["attachments"] == []
    received = [d["payload"] for d in deliveries if d["payload"]["type"] == "message.received"]
    assert received
    assert all(p["data"]["erased"] is True for p in received)
    # the events stream shows the message's event, its content as erased, never ciphertext
    assert '"content":{"erased":true}' in shown
    assert '"sealed"' not in shown


def test_an_unsend_that_comes_before_its_message_still_leaves_no_content(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    # Meta does not keep order; the redelivered message must not bring the content back
    shown, deliveries, _ = unsend_scenario(
        crm,
        [message("m-1", deleted=True), message("m-1"), message("m-1")],
        redeliver=True,
    )

    assert_found_nowhere(shown, deliveries, database, capsys)


def test_a_message_redelivered_after_its_unsend_does_not_bring_its_content_back(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    shown, deliveries, _ = unsend_scenario(
        crm,
        [message("m-1"), message("m-1", deleted=True), message("m-1")],
        redeliver=True,
    )

    assert_found_nowhere(shown, deliveries, database, capsys)


def test_an_erased_participant_leaves_no_content_and_writes_again_as_usual(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    erased: list[dict[str, Any]] = []

    def erase(client: TestClient[Any], headers: dict[str, str], _: Services) -> None:
        response = client.delete(
            f"/api/v1/accounts/{ACCOUNT}/participants/{PARTICIPANT}", headers=headers
        )
        assert response.status_code == 200, response.text
        erased.append(response.json())

    # given what the participant sent, and what the business sent them
    # when an admin erases the participant
    shown, deliveries, messages = unsend_scenario(
        crm,
        [message("m-1"), message("m-2"), message("e-1", echo=True)],
        redeliver=True,
        then=erase,
    )

    # then the three messages' keys are destroyed, and their content is found nowhere
    assert erased == [{"participant_id": PARTICIPANT, "destroyed_keys": 3}]
    assert_found_nowhere(shown, deliveries, database, capsys)
    # the conversation is still listed, its messages too, without content
    assert CONVERSATION in shown
    assert sorted(m["mid"] for m in json.loads(messages)["messages"]) == ["e-1", "m-1", "m-2"]
    _, replayed = run(capsys, "replay", "--account", ACCOUNT, "--format", "jsonl")
    lines = [json.loads(line) for line in replayed.splitlines() if line.startswith("{")]
    erasures = [e for e in lines if e["type"] == "Conversation.ParticipantErased"]
    assert [e["data"]["destroyed"] for e in erasures] == [3]
    assert erasures[0]["data"]["by"].startswith("api-key:")


def test_dmledger_erase_destroys_a_participants_content_and_says_how_much(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    def erase_with_cli(client: TestClient[Any], headers: dict[str, str], _: Services) -> None:
        status, said = run(capsys, "erase", "--account", ACCOUNT, "--participant", PARTICIPANT)
        assert status == 0, said
        assert "2 data keys destroyed" in said

    shown, deliveries, _ = unsend_scenario(
        crm, [message("m-1"), message("m-2")], redeliver=True, then=erase_with_cli
    )

    assert_found_nowhere(shown, deliveries, database, capsys)


def test_new_messages_after_an_erasure_are_stored_and_read_as_usual(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    def erase_then_write_again(
        client: TestClient[Any], headers: dict[str, str], _: Services
    ) -> None:
        response = client.delete(
            f"/api/v1/accounts/{ACCOUNT}/participants/{PARTICIPANT}", headers=headers
        )
        assert response.status_code == 200
        body = message("m-2")
        assert (
            client.post(
                "/webhooks/instagram", content=body, headers=signed_headers(body)
            ).status_code
            == 200
        )

    _, _, messages = unsend_scenario(
        crm, [message("m-1")], redeliver=False, then=erase_then_write_again
    )

    texts = {m["mid"]: m["text"] for m in json.loads(messages)["messages"]}
    assert texts == {"m-1": None, "m-2": TEXT}


def test_erasing_needs_an_admin_key_and_a_known_participant(database: RawBytes) -> None:
    services = services_of_environment()
    try:
        register_account(services)
        app = create_app(services, run_projections=False, run_dispatcher=False)
        with TestClient(app=app) as client:
            path = f"/api/v1/accounts/{ACCOUNT}/participants"
            admin = bearer(issue_key(services))
            agent = bearer(issue_key(services, role="account", ig_account_id=ACCOUNT))
            unknown = client.delete(f"{path}/404404", headers=admin)
            forbidden = client.delete(f"{path}/{PARTICIPANT}", headers=agent)
    finally:
        services.close()

    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert forbidden.status_code == 403


def test_content_past_the_accounts_retention_is_destroyed_by_the_hourly_run(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[tuple[int, int]] = []

    def keep_30_days_then_run_retention(
        client: TestClient[Any], headers: dict[str, str], services: Services
    ) -> None:
        response = client.patch(
            f"/api/v1/accounts/{ACCOUNT}",
            json={"settings": {"content_retention_days": 30}},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        for days in (29, 31):

            def days_later(days: int = days) -> int:
                return services.clock.now_ms() + days * DAY_MS

            retention = ContentRetention(services.ledger, services.writer, days_later)
            runs.append((days, asyncio.run(retention.expire())))

    shown, deliveries, _ = unsend_scenario(
        crm, [message("m-1")], redeliver=True, then=keep_30_days_then_run_retention
    )

    # then 29 days on nothing was old enough; 31 days on, the message's key went
    assert runs == [(29, 0), (31, 1)]
    assert_found_nowhere(shown, deliveries, database, capsys)
    _, replayed = run(capsys, "replay", "--account", ACCOUNT, "--format", "jsonl")
    lines = [json.loads(line) for line in replayed.splitlines() if line.startswith("{")]
    expired = [e["data"] for e in lines if e["type"] == "Account.ContentExpired"]
    assert [(e["destroyed"], e["conversation_ids"], e["by"]) for e in expired] == [
        (1, [CONVERSATION], "retention")
    ]


def test_retention_days_out_of_range_are_refused_naming_the_field(database: RawBytes) -> None:
    services = services_of_environment()
    try:
        register_account(services)
        app = create_app(services, run_projections=False, run_dispatcher=False)
        with TestClient(app=app) as client:
            response = client.patch(
                f"/api/v1/accounts/{ACCOUNT}",
                json={"settings": {"content_retention_days": 0}},
                headers=bearer(issue_key(services)),
            )
    finally:
        services.close()

    assert response.status_code == 422
    assert "settings.content_retention_days" in response.text


def test_messages_stored_in_clear_before_this_change_are_read_as_before_and_verify(
    database: RawBytes, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a log written by a dmledger that stored content in clear (no vault), then
    # one more message by this one
    services = services_of_environment()
    try:
        register_account(services)
        mapper = services.ledger.mapper
        assert isinstance(mapper, ContentMapper)
        vault = mapper.vault
        mapper.vault = None
        old = message("m-old")
        services.writer.run_now(services.ingest.command(old, sign(old, APP_SECRET)))
        mapper.vault = vault
        new = message("m-new")
        services.writer.run_now(services.ingest.command(new, sign(new, APP_SECRET)))
        services.read_models.catch_up()
        texts = {
            m["mid"]: m["text"]
            for m in services.read_models.message_history.page(CONVERSATION, limit=10)
        }
    finally:
        services.close()

    # then both read the same, the old one in clear in the log, and the chain verifies
    assert texts == {"m-old": TEXT, "m-new": TEXT}
    assert database().count(TEXT.encode()) >= 1
    _, replayed = run(capsys, "replay", "--account", ACCOUNT, "--format", "jsonl")
    assert replayed.count(TEXT) == 2
    status, verified = run(capsys, "audit", "verify")
    assert status == 0, verified
    status, compared = run(capsys, "audit", "projections", "--account", ACCOUNT)
    assert status == 0, compared


REPLY_TEXT = "your parcel 7f3a9 leaves from the old mill"
PROFILE: dict[str, Any] = {
    "name": "Zelda Quixote 7f3a9",
    "username": "zelda.quixote.7f3a9",
    "profile_pic": "https://cdn.example/zelda-7f3a9.jpg",
    "follower_count": 12,
    "is_user_follow_business": True,
    "is_business_follow_user": False,
    "is_verified_user": False,
}


CARD_TITLE = "Zanzibar hat for Anna"
"""The title of a template we sent them: a reply's message is theirs to have erased too."""


def test_an_erasure_destroys_our_replies_to_them_and_what_we_knew_of_them(
    database: RawBytes,
    crm: FakeCrm,
    graph: FakeGraphApi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given a participant whose profile we looked up, and a reply we sent them
    graph.profiles[PARTICIPANT] = dict(PROFILE)
    monkeypatch.setenv("DMLEDGER_GRAPH_API_URL", graph.url)
    services = served(crm)
    try:
        headers = bearer(issue_key(services))
        app = create_app(services, run_projections=False, run_dispatcher=False)
        base = f"/api/v1/accounts/{ACCOUNT}"
        with TestClient(app=app) as client:
            recent = json.loads(message("m-1"))
            recent["entry"][0]["messaging"][0]["timestamp"] = int(
                datetime.now(UTC).timestamp() * 1000
            )
            body = json.dumps(recent).encode()
            assert (
                client.post(
                    "/webhooks/instagram", content=body, headers=signed_headers(body)
                ).status_code
                == 200
            )
            settle(services)
            sent = client.post(
                f"{base}/conversations/{CONVERSATION}/replies",
                json={"text": REPLY_TEXT},
                headers={**headers, "idempotency-key": "reply-1"},
            )
            assert sent.status_code == 202, sent.text
            carousel = client.post(
                f"{base}/conversations/{CONVERSATION}/replies",
                json={"template": {"elements": [{"title": CARD_TITLE}]}},
                headers={**headers, "idempotency-key": "reply-2"},
            )
            assert carousel.status_code == 202, carousel.text
            settle(services)
            assert [s["body"]["message"].get("text") for s in graph.sent] == [REPLY_TEXT, None]
            assert PROFILE["username"] in everything_shown(client, headers)

            # when an admin erases the participant
            before = len(crm.received)
            erased = client.delete(f"{base}/participants/{PARTICIPANT}", headers=headers)
            assert erased.status_code == 200, erased.text
            settle(services)
            redelivered = client.post(
                f"{base}/deliveries/redeliver",
                params={"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
                headers=headers,
            )
            assert redelivered.status_code == 200, redelivered.text
            settle(services)
            shown = everything_shown(client, headers)
            deliveries = crm.received[before:]
    finally:
        services.close()

    # then our reply's text and what we knew of them are nowhere either
    assert erased.json()["destroyed_keys"] >= 3  # their message, our reply, their profile
    secrets_of_theirs = [
        REPLY_TEXT,
        CARD_TITLE,
        PROFILE["name"],
        PROFILE["username"],
        PROFILE["profile_pic"],
    ]
    status, replayed = run(capsys, "replay", "--account", ACCOUNT, "--format", "jsonl")
    assert status == 0
    stored = database()
    assert deliveries
    for secret in secrets_of_theirs:
        assert secret not in shown, secret
        assert secret not in replayed, secret
        assert all(secret not in json.dumps(d["payload"]) for d in deliveries), secret
        assert secret.encode() not in stored, secret
    status, verified = run(capsys, "audit", "verify")
    assert status == 0, verified
    status, compared = run(capsys, "audit", "projections", "--account", ACCOUNT)
    assert status == 0, compared


def test_a_notification_sent_after_its_unsend_is_stored_carries_no_content(
    database: RawBytes, crm: FakeCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a message whose CRM notification is queued but not delivered yet
    services = served(crm, event_types=["message.received"])
    try:
        app = create_app(services, run_projections=False, run_dispatcher=False)
        with TestClient(app=app) as client:
            for body in (message("m-1"), message("m-1", deleted=True)):
                assert (
                    client.post(
                        "/webhooks/instagram", content=body, headers=signed_headers(body)
                    ).status_code
                    == 200
                )
                if b"is_deleted" not in body:
                    services.read_models.catch_up()
            # when the dispatcher sends it after the unsend is stored, before the read
            # models have followed it (or while it held the delivery's lease)
            asyncio.run(services.dispatcher.drain())
    finally:
        services.close()

    # then the CRM is told of the message without its content
    [delivery] = crm.received
    assert delivery["payload"]["type"] == "message.received"
    assert delivery["payload"]["data"]["erased"] is True
    assert TEXT not in json.dumps(delivery["payload"])
    assert URL not in json.dumps(delivery["payload"])
