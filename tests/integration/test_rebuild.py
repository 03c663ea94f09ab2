"""Rebuilding every read model in one pass over the log gives the rows live runners made."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select

from application.erasure import erase_participant
from application.ingest import sign
from application.replies import ReplyRequest, request_reply
from domain.identity import conversation_id
from interfaces.composition import Services
from projections.mirror import MIRROR_LIMIT, Mirror
from projections.rebuild import rebuild
from projections.registry import ReadModels
from projections.schema import tracking
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


def stored_text(read_models: ReadModels) -> dict[str, list[str]]:
    """Every row of every rebuildable read model as PostgreSQL prints it (a JSON column's
    very text), in key order, and every view's tracking row."""
    found: dict[str, list[str]] = {}
    for runner in read_models.rebuildable().values():
        with runner.view.engine.connect() as conn:
            schema = (conn.get_execution_options().get("schema_translate_map") or {})[None]
            for table in [*runner.view.tables, tracking]:
                keys = ", ".join(c.name for c in table.primary_key.columns)
                name = f'"{schema}".{table.name}'
                query = f"SELECT t::text FROM {name} t ORDER BY {keys}"  # noqa: S608
                found[table.name] = [r[0] for r in conn.exec_driver_sql(query)]
    return found


def comment_body(comment_id: str, text: str, author: str) -> bytes:
    return json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": ACCOUNT,
                    "time": int(time.time()),
                    "changes": [
                        {
                            "field": "comments",
                            "value": {
                                "from": {"id": author, "username": f"u{author[-3:]}"},
                                "media": {"id": "1790000000001", "media_product_type": "FEED"},
                                "id": comment_id,
                                "text": text,
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def fill_with_destroyed_content(services: Services) -> None:
    """`fill`, and content sealed then destroyed: comments, replies, an unsend, and an
    erased participant whose messages, replies, comments and profile go."""
    fill(services)
    now_ms = int(time.time() * 1000)
    erased, kept = "5599000000000001", "5599000000000002"
    for n, sender in enumerate([erased, kept, erased, kept, erased]):
        body = meta_json("text")
        item = body["entry"][0]["messaging"][0]
        item["sender"]["id"] = sender
        item["timestamp"] = now_ms - 10_000 + n
        item["message"] = {
            "mid": f"live-{n}",
            "text": f"sealed text {n}",
            "attachments": [{"type": "image", "payload": {"url": f"https://cdn/x{n}.jpg"}}],
        }
        receive(services, json.dumps(body).encode())
        receive(services, comment_body(f"1800000000000{n}", f"comment {n}", sender))
    unsend = meta_json("text")
    item = unsend["entry"][0]["messaging"][0]
    item["sender"]["id"] = kept
    item["timestamp"] = now_ms
    item["message"] = {"mid": "live-1", "is_deleted": True}
    receive(services, json.dumps(unsend).encode())
    for sender in (erased, kept):
        services.writer.run_now(
            request_reply(
                ACCOUNT,
                conversation_id(ACCOUNT, sender),
                ReplyRequest(text=f"our reply to {sender}"),
                idempotency_key=f"k-{sender}",
                by="t",
                at=now_ms,
            )
        )
    services.writer.run_now(
        erase_participant(services.ledger, ACCOUNT, erased, by="t", now=now_ms + 1)
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("batch_size", "mirror_limit"),
    [(3, MIRROR_LIMIT), (10_000, MIRROR_LIMIT), (3, 5)],
    ids=["small-batches", "one-batch", "mirror-overflows"],
)
def test_a_rebuild_stores_the_very_bytes_live_runners_stored_destroyed_content_included(
    postgres_url: str,
    make_services: Callable[..., Services],
    monkeypatch: pytest.MonkeyPatch,
    batch_size: int,
    mirror_limit: int,
) -> None:
    # given live runners that followed, in small batches, a log with sealed content,
    # comments, replies, an unsend and an erased participant
    services = make_services(postgres_url)
    register_account(services)
    services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url="http://127.0.0.1:9/crm", event_types=None, rotate_secret=False, by="t"
        )
    )
    for runner in services.read_models.runners.values():
        runner.batch_size = 4
    fill_with_destroyed_content(services)
    settle(services.read_models)
    live = stored_text(services.read_models)
    assert any("instagram" in r for r in live["outbox"])  # our replies
    assert any('""erased"":true' in r for r in live["outbox"])  # forgotten notifications
    assert any("[erased]" in r for r in live["conversation_list"])
    assert any(",erased," in r for r in live["message_history"])
    assert any(",t," in r for r in live["media_comments"])  # an erased comment

    # when every read model is rebuilt in one pass (from memory and with COPY; past the
    # mirror's limit, from the database and with upserts, as a live runner does)
    monkeypatch.setattr("projections.rebuild.Mirror", partial(Mirror, limit=mirror_limit))
    rebuild(list(services.read_models.rebuildable().values()), batch_size=batch_size)

    # then each table holds the same bytes, row for row
    assert stored_text(services.read_models) == live
