"""Projections fed events directly: what the conversation list and message history show."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from eventsourcing.persistence import Tracking

from domain.conversation import Conversation
from infrastructure.clock import SystemClock
from projections.conversation_list.projection import ConversationList
from projections.conversation_list.view import ConversationListView
from projections.database import create_view_engine
from projections.message_history.projection import MessageHistory
from projections.message_history.view import MessageHistoryView

ACCOUNT, PARTICIPANT = "17841400000000001", "5500000000000001"
Projections = tuple[ConversationList, MessageHistory]


class ReactionTo(TypedDict):
    """The message and sender of a reaction, as `Conversation.add_reaction` takes them."""

    mid: str
    sender_id: str


@pytest.fixture
def projections(tmp_path: Path) -> Iterator[Projections]:
    engine = create_view_engine(f"sqlite:///{tmp_path}/views.sqlite3")
    listing, history = (
        ConversationList(ConversationListView(engine)),
        MessageHistory(MessageHistoryView(engine)),
    )
    for projection in (listing, history):
        projection.view.create_tables()
    yield listing, history
    engine.dispose()


def feed(projections: Projections, conversation: Conversation, start: int = 1) -> int:
    """Apply the conversation's new events to both projections, one event per transaction."""
    position = start
    for event in conversation.collect_events():
        for projection in projections:
            projection.process_event(event, Tracking("dmledger", position))
        position += 1
    return position


def row(projections: Projections, conversation: Conversation) -> dict[str, Any]:
    found = projections[0].view.get(ACCOUNT, str(conversation.id))
    assert found is not None
    return found


def history(projections: Projections, conversation: Conversation) -> list[dict[str, Any]]:
    return projections[1].view.page(str(conversation.id), limit=100)


def new_conversation() -> Conversation:
    return Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)


def test_unread_counts_inbound_messages_until_the_business_reads_or_replies(
    projections: Projections,
) -> None:
    conversation = new_conversation()
    conversation.receive_message(mid="m1", sent_at=1000, text="hi")
    conversation.receive_message(mid="m2", sent_at=2000, text="hello?")
    position = feed(projections, conversation)
    assert row(projections, conversation)["unread_count"] == 2

    conversation.record_echo(mid="e1", sent_at=3000, text="Hi! How can we help?")
    position = feed(projections, conversation, position)
    assert row(projections, conversation)["unread_count"] == 0

    conversation.receive_message(mid="m3", sent_at=4000, text="price?")
    conversation.mark_read(by="crm")
    feed(projections, conversation, position)
    assert row(projections, conversation)["unread_count"] == 0


def test_last_message_is_the_latest_by_metas_time_even_when_it_arrived_first(
    projections: Projections,
) -> None:
    conversation = new_conversation()
    conversation.receive_message(mid="later", sent_at=5000, text="second")
    conversation.receive_message(mid="earlier", sent_at=4000, text="first")
    feed(projections, conversation)

    listed = row(projections, conversation)
    assert (listed["last_message_preview"], listed["last_message_at"]) == ("second", 5000)
    assert [m["mid"] for m in history(projections, conversation)] == ["earlier", "later"]


def test_attachment_messages_are_previewed_by_kind(projections: Projections) -> None:
    conversation = new_conversation()
    conversation.receive_message(
        mid="m1", sent_at=1, attachments=[{"type": "image", "payload": {"url": "u"}}]
    )
    feed(projections, conversation)

    assert row(projections, conversation)["last_message_preview"] == "[image]"
    assert history(projections, conversation)[0]["kind"] == "image"


def test_story_replies_and_unsupported_messages_have_their_kind(projections: Projections) -> None:
    conversation = new_conversation()
    conversation.receive_message(
        mid="s", sent_at=1, text="nice", reply_to={"story": {"id": "1", "url": "u"}}
    )
    conversation.receive_message(mid="u", sent_at=2, unsupported=True)
    feed(projections, conversation)

    assert [m["kind"] for m in history(projections, conversation)] == ["story_reply", "unsupported"]


def test_an_edit_before_its_message_is_kept_and_shown_once_the_message_comes(
    projections: Projections,
) -> None:
    conversation = new_conversation()
    conversation.edit_message(mid="m1", text="fixed text", edit_count=2, edited_at=3)
    conversation.edit_message(mid="m1", text="older edit", edit_count=1, edited_at=2)
    position = feed(projections, conversation)
    assert history(projections, conversation) == []

    conversation.receive_message(mid="m1", sent_at=1, text="typo text")
    feed(projections, conversation, position)

    [message] = history(projections, conversation)
    assert (message["text"], message["edit_count"]) == ("fixed text", 2)


def test_a_reaction_replaces_the_senders_earlier_one_and_unreact_removes_it(
    projections: Projections,
) -> None:
    conversation = new_conversation()
    conversation.record_echo(mid="e1", sent_at=1, text="our offer")
    base: ReactionTo = {"mid": "e1", "sender_id": PARTICIPANT}
    conversation.add_reaction(**base, reaction="love", emoji="❤️", reacted_at=2)
    conversation.add_reaction(**base, reaction="laugh", emoji="😂", reacted_at=3)
    position = feed(projections, conversation)
    assert [r["emoji"] for r in history(projections, conversation)[0]["reactions"]] == ["😂"]

    conversation.remove_reaction(**base, reaction="laugh", emoji=None, removed_at=4)
    feed(projections, conversation, position)
    assert history(projections, conversation)[0]["reactions"] == []


def test_status_changes_show_in_the_list(projections: Projections) -> None:
    conversation = new_conversation()
    conversation.archive(by="crm")
    position = feed(projections, conversation)
    assert row(projections, conversation)["status"] == "archived"

    conversation.block(by="crm")
    position = feed(projections, conversation, position)
    assert row(projections, conversation)["status"] == "blocked"

    conversation.reopen(by="crm")
    feed(projections, conversation, position)
    assert row(projections, conversation)["status"] == "active"


def feed_as_one_batch(projections: Projections, conversation: Conversation, start: int = 1) -> int:
    """Apply the conversation's new events to both projections in one batch, as a runner does."""
    items = [(e, start + n) for n, e in enumerate(conversation.collect_events())]
    for projection in projections:

        def change(batch: Any, projection: Any = projection) -> None:
            projection.preload(batch, items)
            projection.project(batch, items)

        projection.view.apply(Tracking("dmledger", items[-1][1]), change)
    return start + len(items)


def queue_and_send_reply(conversation: Conversation, reply_id: str, message_id: str) -> None:
    conversation.queue_reply(
        reply_id=reply_id,
        text="We ship worldwide",
        key=f"request:{reply_id}",
        automated=False,
        in_reply_to=None,
        rule_id=None,
        rule_version=None,
        trigger_at=None,
        by="crm",
    )
    conversation.record_reply_sent(reply_id=reply_id, message_id=message_id, sent_at=5)


@pytest.mark.parametrize("batched", [False, True], ids=["event by event", "in one batch"])
def test_the_echo_of_our_reply_confirms_it_instead_of_adding_a_message(
    projections: Projections, batched: bool
) -> None:
    apply = feed_as_one_batch if batched else feed
    # given a reply we sent, and an echo of another message in a batch before
    conversation = new_conversation()
    conversation.receive_message(mid="m1", sent_at=1, text="Do you ship?")
    queue_and_send_reply(conversation, "r1", "m-reply-1")
    conversation.record_echo(mid="m-other", sent_at=4, text="sent from the phone")
    position = apply(projections, conversation)

    # when Meta's echoes of our reply and of one more phone message come, in a later batch
    conversation.record_echo(mid="m-reply-1", sent_at=6, text="We ship worldwide")
    conversation.record_echo(mid="m-phone", sent_at=7, text="anything else?")
    apply(projections, conversation, position)

    # then our reply shows once, delivered, beside the messages sent from the phone
    shown = {
        (m["mid"], m["reply_id"], m["delivery_status"]) for m in history(projections, conversation)
    }
    assert len(history(projections, conversation)) == 4
    assert shown == {
        ("m1", None, None),
        ("m-other", None, None),
        ("m-reply-1", "r1", "delivered"),
        ("m-phone", None, None),
    }


def test_the_tracking_position_moves_with_the_rows(projections: Projections) -> None:
    conversation = new_conversation()
    conversation.receive_message(mid="m1", sent_at=1, text="hi")
    feed(projections, conversation)

    assert projections[0].view.max_tracking_id("dmledger") == 2
    assert projections[1].view.max_tracking_id("dmledger") == 2


def test_a_runner_skips_an_event_type_it_does_not_know_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from uuid import uuid4

    from eventsourcing.persistence import StoredEvent

    from application.ledger import Ledger
    from infrastructure.persistence import persistence_env
    from projections.registry import ReadModels

    # given a log with an event written by a newer dmledger, between two known ones
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    from application.auto_reply import AutoReplies
    from application.ledger_writer import LedgerWriter
    from infrastructure.secret_box import FernetSecretBox

    ledger = Ledger(env=persistence_env(url))
    box = FernetSecretBox([FernetSecretBox.new_key()])
    clock = SystemClock()
    read_models = ReadModels.build(
        ledger,
        create_view_engine(url),
        LedgerWriter(ledger),
        AutoReplies(ledger, box, None, clock),
        clock=clock,
    )
    first, second = new_conversation(), Conversation(ig_account_id=ACCOUNT, participant_id="2")
    first.receive_message(mid="m1", sent_at=1, text="before")
    ledger.save(first)
    future = StoredEvent(uuid4(), 1, "dmledger:Conversation.SomethingNew", b"{}")
    ledger.recorder.insert_events([future])
    second.receive_message(mid="m2", sent_at=2, text="after")
    ledger.save(second)

    # when the runners follow it
    read_models.catch_up()

    # then the unknown event is skipped, logged, and the rest is projected
    assert "dmledger:Conversation.SomethingNew" in caplog.text
    assert read_models.conversation_list.get(ACCOUNT, str(second.id)) is not None
    assert read_models.runners["conversation_list"].position() == 5
    assert read_models.runners["auto_reply"].position() == 5
    ledger.close()


def test_two_runners_on_one_view_never_apply_a_batch_twice(tmp_path: Path) -> None:
    import threading

    from application.ledger import Ledger
    from domain.recorded_keys import OlderKeys
    from infrastructure.persistence import persistence_env
    from projections.runner import ProjectionRunner

    # given a log of 300 messages in one conversation
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    ledger = Ledger(env=persistence_env(url))
    conversation = new_conversation()
    # Past its recent keys, a conversation asks about older ones (the writer gives it this).
    conversation.older_keys = OlderKeys()
    for i in range(300):
        conversation.receive_message(mid=f"m{i}", sent_at=i, text="hi")
        if i % 50 == 49:
            ledger.save(conversation)
    engine = create_view_engine(url)
    view = ConversationListView(engine)
    view.create_tables()

    # when two runners follow it at once, in small batches
    runners = [
        ProjectionRunner(ledger, ConversationList(view), clock=SystemClock(), batch_size=7)
        for _ in range(2)
    ]
    threads = [threading.Thread(target=r.catch_up) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then every message was counted once
    listed = view.get(ACCOUNT, str(conversation.id))
    assert listed is not None
    assert listed["unread_count"] == 300
    ledger.close()


@pytest.mark.parametrize(("share", "pauses"), [(1.0, 0), (0.25, 3)])
def test_a_runner_following_a_backlog_pauses_after_each_full_batch_when_told_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, share: float, pauses: int
) -> None:
    from application.ledger import Ledger
    from infrastructure.persistence import persistence_env
    from projections import runner as runner_module
    from projections.runner import ProjectionRunner

    # given 25 events (a conversation started, then 24 messages), and a runner that counts
    # itself behind a backlog when more than one batch behind the head
    monkeypatch.setattr(runner_module, "BACKLOG_BATCHES", 1)
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    ledger = Ledger(env=persistence_env(url))
    conversation = new_conversation()
    for i in range(24):
        conversation.receive_message(mid=f"m{i}", sent_at=i, text="hi")
    ledger.save(conversation)
    view = ConversationListView(create_view_engine(url))
    view.create_tables()
    slept: list[float] = []
    monkeypatch.setattr("projections.runner.time.sleep", slept.append)

    # when a runner that may take `share` of the time follows it, five events a batch
    runner = ProjectionRunner(ledger, ConversationList(view), clock=SystemClock(), batch_size=5)
    runner.catch_up_share = share
    assert runner.catch_up() == 25

    # then it paused after each batch read more than a batch behind (at 5, 10 and 15 of
    # 25), not once it was close to the head
    assert len(slept) == pauses
    assert all(pause >= 0 for pause in slept)
    ledger.close()
