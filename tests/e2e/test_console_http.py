"""The console's protections, over HTTP: sessions, CSRF, read-only keys, escaping, media URLs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from application.rules import RuleDefinition
from domain.identity import conversation_id
from interfaces.composition import Services
from interfaces.console.safety import meta_media_url
from interfaces.console.session import COOKIE
from interfaces.http.app import create_app
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    event_types,
    issue_key,
    meta_json,
    register_account,
    signed_headers,
)

Client = AsyncTestClient[Any]
THREAD = f"/console/accounts/{ACCOUNT}/conversations/{conversation_id(ACCOUNT, PARTICIPANT)}"


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    built = make_services("memory://")
    register_account(built)
    return built


@pytest.fixture
async def console(services: Services) -> AsyncIterator[Client]:
    app = create_app(services, run_dispatcher=False)
    async with AsyncTestClient(app=app, base_url="http://console.test") as client:
        yield client


async def deliver(console: Client, services: Services, message: dict[str, Any]) -> None:
    body = meta_json("text")
    body["entry"][0]["messaging"][0]["message"] = message
    # now: Meta takes a reply within 7 days of the participant's message, and so do we
    body["entry"][0]["messaging"][0]["timestamp"] = int(time.time() * 1000)
    raw = json.dumps(body).encode()
    answer = await console.post(
        "/webhooks/instagram", content=raw, headers=signed_headers(raw), follow_redirects=False
    )
    assert answer.status_code == 200
    services.read_models.wait_for("message_history")
    services.read_models.wait_for("conversation_list")


async def sign_in(console: Client, services: Services, role: str = "account") -> str:
    """Signs in; the CSRF token of the session."""
    token = issue_key(services, role, ACCOUNT if role != "admin" else None, name=role)
    answer = await console.post("/console/login", data={"api_key": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = await console.get(f"/console/accounts/{ACCOUNT}/conversations", follow_redirects=False)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def test_signing_in_sets_an_httponly_strict_session_cookie(
    console: Client, services: Services
) -> None:
    token = issue_key(services, "account", ACCOUNT)
    answer = await console.post("/console/login", data={"api_key": token}, follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert token not in cookie  # sealed, not readable


async def test_a_wrong_key_or_a_forged_cookie_signs_nobody_in(
    console: Client, services: Services
) -> None:
    answer = await console.post(
        "/console/login", data={"api_key": "dml_nope_nope"}, follow_redirects=False
    )
    assert answer.status_code == 401
    console.cookies.set(COOKIE, "gAAAAAforged")
    answer = await console.get(f"/console/accounts/{ACCOUNT}/conversations", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


async def test_a_revoked_key_ends_its_session(console: Client, services: Services) -> None:
    await sign_in(console, services)
    for key in services.api_keys.list():
        services.writer.run_now(services.api_keys.revoke(key.key_id, by="test"))
    answer = await console.get(f"/console/accounts/{ACCOUNT}/conversations", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    console: Client, services: Services
) -> None:
    await deliver(console, services, {"mid": "mid-1", "text": "Hello"})
    csrf = await sign_in(console, services)
    before = event_types(services)

    missing = await console.post(f"{THREAD}/archive", data={}, follow_redirects=False)
    wrong = await console.post(
        f"{THREAD}/archive", data={"csrf_token": csrf + "x"}, follow_redirects=False
    )
    elsewhere = await console.post(
        f"{THREAD}/archive",
        data={"csrf_token": csrf},
        headers={"origin": "https://evil.example"},
        follow_redirects=False,
    )

    assert [missing.status_code, wrong.status_code, elsewhere.status_code] == [403, 403, 403]
    assert event_types(services) == before
    done = await console.post(
        f"{THREAD}/archive", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303
    assert event_types(services)[len(before) :] == ["Conversation.Archived"]


async def test_an_auditor_cannot_reply_even_with_a_handmade_form(
    console: Client, services: Services
) -> None:
    await deliver(console, services, {"mid": "mid-1", "text": "Hello"})
    csrf = await sign_in(console, services, "auditor")
    answer = await console.post(
        f"{THREAD}/replies",
        data={"csrf_token": csrf, "text": "hi", "idempotency_key": "k1"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "Conversation.ReplyQueued" not in event_types(services)


async def test_the_same_reply_form_sent_twice_queues_one_reply(
    console: Client, services: Services
) -> None:
    await deliver(console, services, {"mid": "mid-1", "text": "Hello"})
    csrf = await sign_in(console, services)
    form = {"csrf_token": csrf, "text": "Hi there", "idempotency_key": "submit-1"}
    for _ in range(2):
        assert (
            await console.post(f"{THREAD}/replies", data=form, follow_redirects=False)
        ).status_code == 303
    assert event_types(services).count("Conversation.ReplyQueued") == 1


async def test_message_texts_are_escaped_and_pages_carry_a_strict_csp(
    console: Client, services: Services
) -> None:
    await deliver(console, services, {"mid": "mid-1", "text": "<script>alert(1)</script>"})
    await sign_in(console, services)
    page = await console.get(THREAD, follow_redirects=False)
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe" not in policy


async def test_attachment_urls_other_than_metas_cdns_are_never_shown(
    console: Client, services: Services
) -> None:
    hostile = "javascript:alert(1)"
    plain = "http://lookaside.fbsbx.com/a.jpg"
    attachments = [{"type": "image", "payload": {"url": url}} for url in (hostile, plain)]
    await deliver(console, services, {"mid": "mid-1", "attachments": attachments})
    await sign_in(console, services)
    page = await console.get(THREAD, follow_redirects=False)
    assert "javascript:" not in page.text
    assert plain not in page.text
    assert page.text.count("not shown: no Meta CDN URL") == 2


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=x", True),
        ("https://scontent-fra5-1.cdninstagram.com/v/t51/1.jpg", True),
        ("https://scontent.xx.fbcdn.net/v/1.jpg", True),
        ("http://scontent.xx.fbcdn.net/v/1.jpg", False),
        ("https://fbcdn.net.evil.example/1.jpg", False),
        ("https://evilfbcdn.net/1.jpg", False),
        ("https://user:pw@scontent.xx.fbcdn.net/1.jpg", False),
        ("https://scontent.xx.fbcdn.net:8443/1.jpg", False),
        ("javascript:alert(1)//.fbcdn.net", False),
        ("data:image/png;base64,AAAA", False),
        (None, False),
    ],
)
def test_only_https_urls_of_metas_cdns_are_media(url: str | None, shown: bool) -> None:
    assert meta_media_url(url) == (url if shown else None)


async def test_a_failed_crm_delivery_is_listed_with_its_attempt_and_redelivered(
    console: Client, services: Services
) -> None:
    from tests.support.fake_crm import FakeCrm

    crm = FakeCrm()
    try:
        view = services.writer.run_now(
            services.crm_endpoints.set(
                ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
            )
        )
        crm.secret = view.secret
        crm.answers.append((500, {}))
        await deliver(console, services, {"mid": "mid-1", "text": "Hello"})
        for name in services.read_models.runners:
            services.read_models.wait_for(name)
        await services.dispatcher.drain()
        csrf = await sign_in(console, services)

        listed = await console.get(f"/console/accounts/{ACCOUNT}/deliveries")
        assert "message.received" in listed.text
        assert "HTTP 500" in listed.text
        assert crm.url in listed.text
        found = re.search(r"/deliveries/([^/]+)/redeliver", listed.text)
        assert found is not None

        again = await console.post(
            f"/console/accounts/{ACCOUNT}/deliveries/{found.group(1)}/redeliver",
            data={"csrf_token": csrf},
            follow_redirects=False,
        )
        assert again.status_code == 303
        await services.dispatcher.drain()
        assert [d["id"] for d in crm.delivered()] == [found.group(1)]
    finally:
        crm.close()


async def test_an_auditor_verifies_the_hash_chain_and_sees_where_it_breaks(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    services = make_services(f"sqlite:///{path}")
    register_account(services)
    app = create_app(services, run_dispatcher=False)
    async with AsyncTestClient(app=app, base_url="http://console.test") as console:
        await deliver(console, services, {"mid": "mid-1", "text": "Hello there"})
        csrf = await sign_in(console, services, "auditor")
        audit = f"{THREAD}/audit"
        assert "Not verified from the console" in (await console.get(audit)).text

        await console.post(f"{audit}/verify", data={"csrf_token": csrf}, follow_redirects=False)
        assert "intact" in (await console.get(audit)).text

        with sqlite3.connect(path) as db:
            rowid, state = next(
                (r, s)
                for r, s in db.execute("SELECT rowid, state FROM stored_events")
                if b'"mid":"mid-1"' in bytes(s)
            )
            # The text is sealed (application/content.py): edit what is in clear.
            db.execute(
                "UPDATE stored_events SET state = ? WHERE rowid = ?",
                (bytes(state).replace(b'"mid":"mid-1"', b'"mid":"mid-X"'), rowid),
            )
        await console.post(f"{audit}/verify", data={"csrf_token": csrf}, follow_redirects=False)
        assert f"BROKEN (altered) at position {rowid}" in (await console.get(audit)).text


async def test_a_message_that_came_before_the_live_stream_opened_is_announced(
    console: Client, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from interfaces.console import live as live_updates

    # The test client waits for a stream to end before it closes it.
    monkeypatch.setattr(live_updates, "STREAM_SECONDS", 1.0)

    await deliver(console, services, {"mid": "mid-1", "text": "Hello"})
    await sign_in(console, services)
    page = await console.get(THREAD, follow_redirects=False)
    found = re.search(r'data-live="([^"]+)"', page.text)
    assert found is not None
    live = found.group(1)

    # given a message that arrives after the page was rendered, before its stream opens
    await deliver(console, services, {"mid": "mid-2", "text": "Are you there?"})

    async def first_change() -> None:
        async with console.stream("GET", live) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event: changed"):
                    return
        raise AssertionError("the stream ended without announcing the change")

    await asyncio.wait_for(first_change(), timeout=5)


async def test_a_reply_of_brackets_from_the_console_is_a_text_not_a_nested_body(
    console: Client, services: Services
) -> None:
    await deliver(console, services, {"mid": "mid-1", "text": "Hello"})
    csrf = await sign_in(console, services)
    form = {"csrf_token": csrf, "text": "[" * 100, "idempotency_key": "brackets-1"}

    answer = await console.post(f"{THREAD}/replies", data=form, follow_redirects=False)

    assert answer.status_code == 303, answer.text
    assert event_types(services).count("Conversation.ReplyQueued") == 1


async def test_editing_a_rule_in_the_console_keeps_its_quick_replies_and_template(
    console: Client, services: Services
) -> None:
    quick = [{"title": "Sizes", "payload": "SIZES"}]
    definition = msgspec.convert(
        {
            "name": "menu",
            "triggers": [{"type": "keyword", "value": "help"}],
            "reply": "How can we help?",
            "quick_replies": quick,
        },
        RuleDefinition,
    )
    rule = services.writer.run_now(services.rules.add(ACCOUNT, definition, by="test"))
    csrf = await sign_in(console, services)

    answer = await console.post(
        f"/console/accounts/{ACCOUNT}/rules/{rule.id}",
        data={
            "csrf_token": csrf,
            "name": "menu",
            "triggers": "keyword: help",
            "reply": "What can we do for you?",
            "priority": "0",
            "enabled": "on",
        },
        follow_redirects=False,
    )

    assert answer.status_code == 303, answer.text
    kept = services.rules.get(ACCOUNT, rule.id)
    assert kept.reply == "What can we do for you?"
    assert msgspec.to_builtins(kept.quick_replies) == quick
