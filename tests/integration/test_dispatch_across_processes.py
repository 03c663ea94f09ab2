"""The dispatcher in a process of its own records what came of each send, though another
process (the auto-reply policy in `dmledger project`) wrote the conversation since the
dispatcher last did."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from application.rules import RuleDefinition
from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    bearer,
    issue_key,
    meta_json,
    register_account,
    signed_headers,
    stored_events,
)
from tests.support.fake_graph import FakeGraphApi

pytestmark = pytest.mark.postgres

CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
SHIPPING = {
    "name": "shipping",
    "triggers": [{"type": "keyword", "value": "ship"}],
    "reply": "We ship worldwide.",
}


@pytest.fixture
def processes(
    postgres_url: str, make_services: Callable[..., Services], graph: FakeGraphApi
) -> dict[str, Services]:
    """A web, a projection and a dispatcher process, as separate services on one database."""
    web = make_services(postgres_url, graph_api_url=graph.url)
    register_account(web)
    web.writer.run_now(web.rules.add(ACCOUNT, msgspec.convert(SHIPPING, RuleDefinition), by="t"))
    project = make_services(postgres_url, graph_api_url=graph.url)
    dispatch = make_services(postgres_url, graph_api_url=graph.url)
    dispatch.writer.start()
    return {"web": web, "project": project, "dispatch": dispatch}


async def deliver(web: AsyncTestClient[Any], text: str, mid: str) -> None:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = int(time.time() * 1000)
    item["message"] = {"mid": mid, "text": text}
    raw = json.dumps(body).encode()
    response = await web.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    assert response.status_code == 200, response.text


def follow(project: Services) -> None:
    """The projections, then the policy's reply in the outbox, as `dmledger project` does."""
    project.read_models.catch_up()
    project.read_models.catch_up()


async def test_a_reply_queued_by_another_process_is_recorded_sent_by_the_dispatcher(
    processes: dict[str, Services], web: AsyncTestClient[Any], graph: FakeGraphApi
) -> None:
    project, dispatch = processes["project"], processes["dispatch"]
    # given a first reply sent by the dispatcher process, which now has the conversation
    # in memory as it left it
    await deliver(web, "Do you ship?", "m-1")
    follow(project)
    await dispatch.dispatcher.drain()
    # when the projection process queues a second reply, and the dispatcher sends it
    await deliver(web, "And do you ship to Munich?", "m-2")
    follow(project)
    await dispatch.dispatcher.drain()
    follow(project)

    # then each send is recorded in the log, and the reply's status says it was sent
    assert len(graph.sent) == 2
    queued = [d["reply_id"] for k, d in stored_events(project) if k == "Conversation.ReplyQueued"]
    sent = {
        d["reply_id"]: d["message_id"] for k, d in stored_events(project) if k.endswith("ReplySent")
    }
    assert sent == {queued[0]: graph.sent[0]["message_id"], queued[1]: graph.sent[1]["message_id"]}
    key = bearer(issue_key(processes["web"], "account", ACCOUNT))
    status = await web.get(
        f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}/replies/{queued[1]}", headers=key
    )
    assert (status.json()["status"], status.json()["message_id"]) == (
        "sent",
        graph.sent[1]["message_id"],
    )


async def test_a_person_answering_from_the_app_pauses_automation_after_a_reply_another_process_sent(
    processes: dict[str, Services], web: AsyncTestClient[Any], graph: FakeGraphApi
) -> None:
    project, dispatch = processes["project"], processes["dispatch"]
    # given an automated reply queued by the projection process and sent by the dispatcher
    await deliver(web, "Do you ship?", "m-1")
    follow(project)
    await dispatch.dispatcher.drain()
    assert len(graph.sent) == 1
    # when a person answers from the Instagram app (an echo of a message we did not send)
    body = meta_json("echo")
    body["entry"][0]["messaging"][0]["message"]["mid"] = "m-person"
    raw = json.dumps(body).encode()
    answer = await web.post("/webhooks/instagram", content=raw, headers=signed_headers(raw))
    assert answer.status_code == 200
    follow(project)

    # then automation pauses for the conversation
    kinds = [k for k, _ in stored_events(project)]
    assert "Conversation.AutomationPaused" in kinds
