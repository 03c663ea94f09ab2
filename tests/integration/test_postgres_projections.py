"""Projections on a real PostgreSQL: restarts, rebuilds, failover, NOTIFY, long histories."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from domain.identity import conversation_id
from interfaces.composition import Services
from projections.conversation_list.view import conversations
from projections.message_history.view import messages
from projections.registry import ReadModels
from tests.conftest import ACCOUNT, PARTICIPANT, TEST_KEY, meta_json, register_account

pytestmark = pytest.mark.postgres

MakeServices = Callable[..., Services]


def deliver(
    services: Services, mid: str, *, participant: str = PARTICIPANT, sent_at: int = 1
) -> None:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = participant
    item["timestamp"] = sent_at
    item["message"] = {"mid": mid, "text": f"text of {mid}"}
    services.writer.run_now(services.ingest.command(json.dumps(body).encode(), _sign(body)))


def _sign(body: dict[str, Any]) -> str:
    from application.ingest import sign
    from tests.conftest import APP_SECRET

    return sign(json.dumps(body).encode(), APP_SECRET)


def fill(services: Services, count: int, participants: int = 7) -> None:
    for i in range(count):
        deliver(services, f"m-{i}", participant=f"55{i % participants:014d}", sent_at=10_000 + i)


def snapshot(read_models: ReadModels) -> dict[str, list[dict[str, Any]]]:
    engine = read_models.conversation_list.engine
    with engine.connect() as conn:
        return {
            table.name: [
                dict(r)
                for r in conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            ]
            for table in (conversations, messages)
        }


def test_a_runner_killed_mid_batch_resumes_to_the_same_view_as_one_uninterrupted_run(
    postgres_url: str, make_services: MakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given 300 stored messages
    services = make_services(postgres_url)
    register_account(services)
    fill(services, 300)
    runner = services.read_models.runners["message_history"]
    runner.batch_size = 64

    # when the runner dies in the middle of its third batch
    calls = {"n": 0}
    real = runner.projection.project

    def dying(batch: Any, items: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # not caught anywhere: like a killed process
        real(batch, items)

    monkeypatch.setattr(runner.projection, "project", dying)
    with pytest.raises(KeyboardInterrupt):
        runner.catch_up()
    assert runner.position() == 128
    monkeypatch.undo()

    # and a new process's runner takes over
    restarted = make_services(postgres_url)
    restarted.read_models.catch_up()
    resumed = snapshot(restarted.read_models)

    # then the view is exactly what one uninterrupted run makes
    restarted.read_models.runners["message_history"].view.drop()
    restarted.read_models.runners["conversation_list"].view.drop()
    restarted.read_models.catch_up()
    assert snapshot(restarted.read_models) == resumed
    assert len(resumed["message_history"]) == 300


def test_rebuild_reproduces_the_live_view(postgres_url: str, make_services: MakeServices) -> None:
    # given runners following live while messages arrive, with reads and status changes
    services = make_services(postgres_url)
    register_account(services)
    services.read_models.start()
    fill(services, 120)
    conversation = conversation_id(ACCOUNT, "55" + "0" * 14)
    services.writer.run_now(
        services.conversations.change(
            ACCOUNT, conversation, status="archived", read=True, by="test"
        )
    )
    services.read_models.wait_for("conversation_list")
    services.read_models.wait_for("message_history")
    services.read_models.stop()
    live = snapshot(services.read_models)

    # when every projection is dropped and rebuilt from the log
    for runner in services.read_models.runners.values():
        runner.view.drop()
        runner.catch_up()

    # then the rows are identical
    assert snapshot(services.read_models) == live
    assert any(r["status"] == "archived" for r in live["conversation_list"])


def test_only_one_runner_per_projection_is_active_and_a_standby_takes_over(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given two processes running the projections
    first, second = make_services(postgres_url), make_services(postgres_url)
    register_account(first)
    first.read_models.start()
    history = "message_history"
    assert first.read_models.runners[history].following.wait(10)
    second.read_models.start()
    deliver(first, "before")
    first.read_models.wait_for(history)
    # only the first is active: the second waits for the lock as a standby
    assert not second.read_models.runners[history].following.is_set()

    # when the active one stops
    first.read_models.stop()
    deliver(first, "after")

    # then the standby carries on
    second.read_models.wait_for("message_history", timeout=10)
    assert len(snapshot(second.read_models)["message_history"]) == 2


def test_events_from_another_process_arrive_through_notify_not_polling(
    postgres_url: str, make_services: MakeServices
) -> None:
    # given a projection process that would poll only every 30 s
    writer_process, projector = make_services(postgres_url), make_services(postgres_url)
    register_account(writer_process)
    for runner in projector.read_models.runners.values():
        runner.poll_seconds = 30
    projector.read_models.start()
    assert all(r.following.wait(10) for r in projector.read_models.runners.values())

    # when another process commits a message
    deliver(writer_process, "m-notify")

    # then it is projected long before the next poll (in 30 s): a NOTIFY woke the runner
    projector.read_models.wait_for("message_history", timeout=10)


def test_a_thousand_message_conversation_pages_without_gaps_or_duplicates(
    postgres_url: str, make_services: MakeServices
) -> None:
    services = make_services(postgres_url)
    register_account(services)
    for i in range(1000):
        deliver(services, f"m-{i:04d}", sent_at=1_000_000 + (i * 7919) % 1000)
    services.read_models.catch_up()
    view = services.read_models.message_history
    conversation = str(conversation_id(ACCOUNT, PARTICIPANT))

    seen: list[str] = []
    after = None
    while page := view.page(conversation, limit=37, after=after):
        seen += [m["mid"] for m in page]
        after = (page[-1]["sent_at"], page[-1]["position"])

    assert len(seen) == len(set(seen)) == 1000
    expected = sorted((1_000_000 + (i * 7919) % 1000, f"m-{i:04d}") for i in range(1000))
    assert seen == [mid for _, mid in expected]


def test_stopping_runners_is_prompt(postgres_url: str, make_services: MakeServices) -> None:
    services = make_services(postgres_url)
    services.read_models.start()
    assert all(r.following.wait(10) for r in services.read_models.runners.values())
    done = threading.Event()

    def stop() -> None:
        services.read_models.stop()
        done.set()

    threading.Thread(target=stop).start()
    assert done.wait(5)


def test_many_rows_written_at_once_are_stored_as_written_one_at_a_time(postgres_url: str) -> None:
    from sqlalchemy import String, cast

    from projections.database import create_view_engine
    from projections.message_history.view import MessageHistoryView
    from projections.schema import upsert, upsert_many, writing

    # given rows with awkward values: JSON nulls, quotes, non-ASCII, nesting, big numbers
    engine = create_view_engine(postgres_url)
    MessageHistoryView(engine).create_tables()
    blank = {c.name: None for c in messages.columns}

    def row(key: str, **values: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            **blank,
            "conversation_id": "c",
            "message_key": key,
            "attachments": [],
        }
        return {
            **base,
            "reactions": [],
            "edit_count": 0,
            "unsent": False,
            "standby": False,
            **values,
        }

    awkward = dict(
        text='é "quoted" \\ \n\t ✓ 😀',
        attachments=[{"type": "image", "payload": {"url": 'https://x/é?a=1&b="2"'}}],
        reply_to={"mid": None, "story": {"id": "1", "url": ""}},
        quick_reply={"payload": "ü"},
        reactions=[{"sender_id": "1", "emoji": "❤️", "at": 2**62}],
        delivery_error=None,
        edit_count=3,
        unsent=True,
        sent_at=2**62,
    )

    # when the same rows are written one at a time and all at once (then again: replaced)
    with writing(engine) as conn:
        for _ in range(2):
            for suffix in ("a", "b"):
                upsert(
                    conn,
                    messages,
                    [row(f"one-{suffix}", **awkward)],
                    keys=["conversation_id", "message_key"],
                )
            upsert_many(
                conn,
                messages,
                [row("many-a", **awkward), row("many-b", **awkward)],
                keys=["conversation_id", "message_key"],
            )

    # then the stored text of every column is the same
    with engine.connect() as conn:
        stored = {
            r[0]: r[1:]
            for r in conn.execute(
                select(messages.c.message_key, *[cast(c, String) for c in messages.columns][2:])
            )
        }
    assert stored["one-a"] == stored["many-a"] == stored["many-b"]
    assert len(stored) == 4
    engine.dispose()


def test_a_rebuild_refuses_a_read_model_another_process_is_following(
    postgres_url: str,
    make_services: MakeServices,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from interfaces.cli import main

    # given a server's runners following the log (another session: another process)
    server = make_services(postgres_url)
    register_account(server)
    fill(server, 20)
    server.read_models.start()
    # every view at the head, and the head still (the automation policy may append)
    head = None
    while head != (head := server.ledger.recorder.max_notification_id()):
        for name in server.read_models.runners:
            server.read_models.wait_for(name, timeout=10)
    before = snapshot(server.read_models)
    monkeypatch.setenv("DMLEDGER_DATABASE_URL", postgres_url)
    monkeypatch.setenv("DMLEDGER_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("DMLEDGER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DMLEDGER_GRAPH_API_URL", "http://127.0.0.1:9")
    try:
        # when an operator rebuilds one of its read models
        status = main(["projections", "rebuild", "message_history"])

        # then nothing is dropped, and the operator is told why
        assert status == 2
        assert "being followed by another process" in capsys.readouterr().err
        assert snapshot(server.read_models) == before
    finally:
        server.read_models.stop()

    # and once the server has stopped, the rebuild goes through
    assert main(["projections", "rebuild", "message_history"]) == 0
    assert snapshot(server.read_models) == before
