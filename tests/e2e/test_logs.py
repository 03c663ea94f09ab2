"""The log an operator reads: every journey at DEBUG leaves no secret in any record, JSON
lines carry the request's id, and every response (problems too) names that id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from application.reply_windows import DAY_MS
from interfaces.cli import main
from interfaces.composition import Services
from interfaces.http.app import create_app
from interfaces.logging_setup import configure_logging
from tests.conftest import (
    ACCESS_TOKEN,
    ACCOUNT,
    APP_SECRET,
    PARTICIPANT,
    TEST_KEY,
    VERIFY_TOKEN,
    bearer,
    issue_key,
    meta_body,
    register_account,
    signed_headers,
)
from tests.support.clock import MovableClock
from tests.support.conversations import REPLIES, step
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import OUTSIDE_WINDOW, TEMPORARY, TOKEN_EXPIRED, FakeGraphApi
from tests.support.rules import SHIPPING, definition
from tests.support.served import ADD, Served
from tests.support.webhooks import deliver, message

REFRESHED_TOKEN = "IGAA-refreshed-token-for-tests"


class Captured(logging.Handler):
    """Keeps every record that reaches the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Iterator[tuple[io.StringIO, Captured]]:
    """The process's logging as `dmledger` sets it up, at DEBUG in JSON, into a buffer;
    and every record."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging("debug", "json", stream)
    captured = Captured()
    root.addHandler(captured)
    yield stream, captured
    root.removeHandler(captured)
    root.removeHandler(handler)
    root.setLevel(level)


def every_text(record: logging.LogRecord) -> str:
    """What a record could show: its message formatted, its parts, its error."""
    return "\n".join(
        [
            record.getMessage(),
            str(record.msg),
            repr(record.args),
            record.exc_text or "",
            record.stack_info or "",
        ]
    )


async def test_no_secret_reaches_any_log_record_at_debug(
    make_services: Callable[..., Services],
    logs: tuple[io.StringIO, Captured],
    clock: MovableClock,
) -> None:
    stream, captured = logs
    graph = FakeGraphApi(ACCESS_TOKEN, {PARTICIPANT: {"name": "Anna Schmidt", "username": "anna"}})
    crm = FakeCrm()
    try:
        # given an account with a rule, a CRM endpoint (its whsec_ secret) and an API key
        services = make_services("memory://", graph_api_url=graph.url)
        register_account(services)
        services.writer.run_now(services.rules.add(ACCOUNT, definition(SHIPPING), by="test"))
        view = services.writer.run_now(
            services.crm_endpoints.set(
                ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
            )
        )
        assert view.secret is not None  # a new endpoint's secret is shown once
        crm.secret = view.secret
        key = issue_key(services, "account", ACCOUNT)
        secrets = [APP_SECRET, ACCESS_TOKEN, VERIFY_TOKEN, TEST_KEY, view.secret, key]
        secrets.append(REFRESHED_TOKEN)

        app = create_app(services, run_projections=False, run_dispatcher=False)
        async with AsyncTestClient(app=app) as api:
            # when Meta verifies the subscription, posts a message, and a forged one
            params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}
            verified = await api.get("/webhooks/instagram", params={**params, "hub.challenge": "7"})
            await deliver(api, message("Do you ship to Munich?", "m-1"))
            body = meta_body("text")
            forged = await api.post(
                "/webhooks/instagram", content=body, headers=signed_headers(body, "wrong")
            )
            # the auto-reply goes to Meta with the token, the CRM gets signed deliveries
            await step(services)
            # the CRM replies with its API key; Meta answers with errors before taking it
            graph.answers.extend([(400, TEMPORARY), (400, OUTSIDE_WINDOW)])
            replied = await api.post(
                REPLIES,
                headers={**bearer(key), "Idempotency-Key": "reply-0001"},
                json={"text": "Thanks!"},
            )
            await step(services)
            # the token is refreshed (50 days on), then Meta rejects the next send's token
            graph.refresh_to = REFRESHED_TOKEN
            clock.advance(51 * DAY_MS)
            refreshed = await services.dispatcher.refresh_tokens()
            clock.advance(-51 * DAY_MS)
            graph.answers.append((401, TOKEN_EXPIRED))
            await api.post(
                REPLIES,
                headers={**bearer(key), "Idempotency-Key": "reply-0002"},
                json={"text": "Still there?"},
            )
            await step(services)
            bad_key = await api.get(f"/api/v1/accounts/{ACCOUNT}", headers=bearer(key + "x"))
    finally:
        graph.close()
        crm.close()

    # then the journey happened: through the token, the whsec_ secret, the refresh ...
    assert (verified.status_code, forged.status_code, replied.status_code) == (200, 401, 202)
    assert bad_key.status_code == 401
    assert graph.sent
    assert graph.sent[0]["token"] == ACCESS_TOKEN
    assert crm.delivered()
    assert crm.rejected == []
    assert refreshed == 1
    assert [r for r in graph.requests if r["path"] == "/refresh_access_token"]
    messages = [r.getMessage() for r in captured.records]
    assert any("refresh_access_token" in m for m in messages), "httpx logs the refresh"
    assert any(r.name.startswith("httpcore") for r in captured.records), "DEBUG was on"
    # ... and no record, nor any line written, shows any of the secrets
    leaks = [
        (secret, record.name, record.getMessage())
        for record in captured.records
        for secret in secrets
        if secret in every_text(record)
    ]
    assert leaks == []
    written = stream.getvalue()
    assert [secret for secret in secrets if secret in written] == []


async def test_each_response_carries_a_request_id_and_problems_name_it(
    make_services: Callable[..., Services], logs: tuple[io.StringIO, Captured]
) -> None:
    stream, _ = logs
    services = make_services("memory://")
    register_account(services)
    body = meta_body("text")
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as api:
        given = await api.post(
            "/webhooks/instagram",
            content=body,
            headers={**signed_headers(body, "wrong"), "X-Request-ID": "crm-trace.42"},
        )
        made = await api.get("/api/v1/nowhere")
        insane = await api.get("/healthz", headers={"X-Request-ID": "a b" + "x" * 200})
        accounts = await api.get(f"/api/v1/accounts/{ACCOUNT}/conversations")

    assert given.headers["x-request-id"] == "crm-trace.42"
    assert given.json()["request_id"] == "crm-trace.42"
    assert made.status_code == 404
    assert made.json()["request_id"] == made.headers["x-request-id"]
    assert len(made.headers["x-request-id"]) == 32
    assert insane.headers["x-request-id"] != "a b"
    assert len(insane.headers["x-request-id"]) == 32
    assert accounts.status_code == 401
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    refused = [line for line in lines if line.get("request_id") == "crm-trace.42"]
    assert refused, lines
    about_account = [line for line in lines if line.get("account_id") == ACCOUNT]
    assert all(line["request_id"] == accounts.headers["x-request-id"] for line in about_account)


def test_dmledger_serve_writes_json_lines_through_uvicorn_without_secrets(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an account, and `dmledger serve` logging JSON at DEBUG
    verify_token = "verify-token-of-the-served"
    secrets = ["--app-secret", APP_SECRET, "--access-token", ACCESS_TOKEN]
    assert main([*ADD, *secrets, "--verify-token", verify_token]) == 0
    served = Served({**env, "DMLEDGER_LOG_FORMAT": "json", "DMLEDGER_LOG_LEVEL": "debug"})
    try:
        # when Meta verifies the subscription and posts a forged webhook
        params = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "7"}
        verified = httpx.get(
            served.url + "/webhooks/instagram", params=params, headers={"X-Request-ID": "r-1"}
        )
        body = meta_body("text")
        forged = httpx.post(
            served.url + "/webhooks/instagram",
            content=body,
            headers={**signed_headers(body, "wrong"), "X-Request-ID": "r-2"},
        )
    finally:
        served.stop()

    # then uvicorn's access lines are JSON with the request's id, and no secret is written
    assert (verified.text, forged.json()["request_id"]) == ("7", "r-2")
    lines = [_json(line) for line in served.output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line and line["logger"] == "uvicorn.access"]
    assert {line.get("request_id") for line in access} >= {"r-1", "r-2"}, served.output
    assert any(line["logger"] == "uvicorn.error" for line in lines if line)
    assert "hub.verify_token=***" in served.output
    for secret in (verify_token, APP_SECRET, ACCESS_TOKEN, TEST_KEY):
        assert secret not in served.output


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None
