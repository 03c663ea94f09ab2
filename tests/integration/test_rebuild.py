"""Rebuilding every read model in one pass over the log gives the rows live runners made."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from application.ingest import sign
from domain.identity import conversation_id
from interfaces.composition import Services
from projections.rebuild import rebuild
from projections.registry import ReadModels
from tests.conftest import ACCOUNT, APP_SECRET, PARTICIPANT, meta_body, meta_json, register_account

KINDS = [
    "text",
    "image",
    "echo",
    "reaction",
    "unreaction",
    "edit",
    "unsend",
    "read",
    "postback_button",
    "referral_ad",
    "story_reply",
    "quick_reply",
    "batched",
]


def receive(services: Services, body: bytes) -> None:
    services.writer.run_now(services.ingest.command(body, sign(body, APP_SECRET)))


def fill(services: Services) -> None:
    """Every kind of webhook, messages of several participants, and status changes."""
    for kind in KINDS:
        receive(services, meta_body(kind))
    for i in range(60):
        body = meta_json("text")
        item = body["entry"][0]["messaging"][0]
        item["sender"]["id"] = f"55{i % 7:014d}"
        item["timestamp"] = 10_000 + i
        item["message"] = {"mid": f"m-{i}", "text": f"text {i}"}
        receive(services, json.dumps(body).encode())
    conversation = conversation_id(ACCOUNT, PARTICIPANT)
    services.writer.run_now(
        services.conversations.change(ACCOUNT, conversation, status="archived", read=True, by="t")
    )


def settle(read_models: ReadModels) -> None:
    """Catch every runner up until nothing new comes (the automation policy may append)."""
    head = None
    while head != (head := read_models.ledger.recorder.max_notification_id()):
        read_models.catch_up()


def rows(read_models: ReadModels) -> dict[str, list[dict[str, Any]]]:
    """Every row of every rebuildable read model, and where each view stands."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, runner in read_models.rebuildable().items():
        with runner.view.engine.connect() as conn:
            for table in runner.view.tables:
                query = select(table).order_by(*table.primary_key.columns)
                found[table.name] = [dict(r) for r in conn.execute(query).mappings()]
        found[f"{name} position"] = [{"at": runner.position()}]
    return found


@pytest.fixture
def filled(database_url: str, make_services: Callable[..., Services]) -> Services:
    services = make_services(database_url)
    register_account(services)
    services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url="http://127.0.0.1:9/crm", event_types=None, rotate_secret=False, by="t"
        )
    )
    fill(services)
    return services


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_one_pass_rebuild_of_every_read_model_equals_what_live_runners_made(
    filled: Services, batch_size: int
) -> None:
    # given live runners that followed the log in their own small batches
    for runner in filled.read_models.runners.values():
        runner.batch_size = 5
    settle(filled.read_models)
    live = rows(filled.read_models)
    assert all(live[table] for table in ("outbox", "message_history", "conversation_list"))

    # when every read model is dropped and rebuilt in one pass over the log
    head = filled.ledger.recorder.max_notification_id()
    applied = rebuild(list(filled.read_models.rebuildable().values()), batch_size=batch_size)

    # then the rows and positions are the same
    assert applied == head
    assert rows(filled.read_models) == live


def test_a_one_pass_rebuild_of_some_read_models_leaves_the_others_alone(filled: Services) -> None:
    settle(filled.read_models)
    live = rows(filled.read_models)

    applied = filled.read_models.rebuild(["message_history", "outbox"])

    assert applied == filled.ledger.recorder.max_notification_id()
    assert rows(filled.read_models) == live
    with pytest.raises(KeyError):
        filled.read_models.rebuild(["auto_reply"])  # a policy keeps no rows to rebuild


class Interrupted(Exception):
    """Stands for what can stop a rebuild midway: the database gone, an operator's ^C."""


def test_a_rebuild_that_stops_midway_leaves_the_live_views_as_they_were(
    filled: Services,
) -> None:
    # given read models that followed the whole log
    settle(filled.read_models)
    live = rows(filled.read_models)

    # when a rebuild of all of them stops after its first batch
    def stop_after_first_batch(position: int, head: int) -> None:
        raise Interrupted(f"stopped at {position} of {head}")

    with pytest.raises(Interrupted):
        rebuild(
            list(filled.read_models.rebuildable().values()),
            batch_size=7,
            progress=stop_after_first_batch,
        )

    # then every view still holds every row it had, at the position it had
    assert rows(filled.read_models) == live

    # and a rebuild that completes gives them again
    filled.read_models.rebuild()
    assert rows(filled.read_models) == live
