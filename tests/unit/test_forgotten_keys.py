"""A long conversation keeps only its recent keys (and snapshots only those); the store's
index of keys answers for the older ones, so what Meta delivers again is still refused
after a restart, whatever the kind of item, on every backend."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from application.errors import InvalidInput
from application.ledger import Ledger
from application.ledger_writer import Changes, LedgerWriter
from domain.conversation import Conversation
from domain.identity import conversation_id
from domain.recorded_keys import RECENT_KEYS, OlderKeys, OlderKeysUnknown
from infrastructure.persistence import persistence_env

ACCOUNT, PARTICIPANT = "17841400000000001", "5500000000000001"
CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)

Item = Callable[[Conversation], bool]
SENT = 1_700_000_000_000
"""Meta's time (ms) of message 0: the n-th is sent at SENT + n."""

ITEMS: dict[str, Item] = {
    "message": lambda c: c.receive_message(mid="old", sent_at=5, text="hi"),
    "echo": lambda c: c.record_echo(mid="old-echo", sent_at=5, text="ours"),
    "postback without a mid": lambda c: c.receive_postback(
        mid=None, title="Hours?", payload="HOURS", sent_at=5
    ),
    "postback": lambda c: c.receive_postback(mid="pb", title="Hours?", payload="H", sent_at=5),
    "referral": lambda c: c.receive_referral(referral={"ref": "r1", "source": "ADS"}, sent_at=5),
    "reaction": lambda c: c.add_reaction(
        mid="m000001", sender_id=PARTICIPANT, reaction="love", emoji="\u2764", reacted_at=5
    ),
    "reaction removed": lambda c: c.remove_reaction(
        mid="m000001", sender_id=PARTICIPANT, reaction="love", emoji=None, removed_at=6
    ),
    "read": lambda c: c.mark_seen(mid="m000001", seen_at=5),
    "edit": lambda c: c.edit_message(mid="m000001", text="again", edit_count=1, edited_at=5),
    "unsend": lambda c: c.unsend(mid="m000002", unsent_at=5),
    "handover": lambda c: c.record_thread_control(
        action="pass", previous_owner_app_id="1", new_owner_app_id="2", metadata=None, at=5
    ),
    "unrecognised": lambda c: c.record_unrecognised(item={"x": 1}, fingerprint="f1", sent_at=5),
    "auto-reply skipped": lambda c: c.skip_auto_reply(
        key="auto:m000001", in_reply_to="m000001", rule_id=None, reason="paused"
    ),
    "reply queued": lambda c: c.queue_reply(
        reply_id="r1",
        text="hello",
        key="request:abc",
        automated=False,
        in_reply_to=None,
        rule_id=None,
        rule_version=None,
        trigger_at=None,
        by="crm",
    ),
}


def on_conversation(item: Item) -> Callable[[Changes], bool]:
    def command(changes: Changes) -> bool:
        conversation = changes.get(CONVERSATION, Conversation)
        if conversation is None:
            conversation = Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)
            changes.add(conversation)
        return item(conversation)

    return command


def message(n: int) -> Callable[[Changes], bool]:
    return on_conversation(lambda c: c.receive_message(mid=f"m{n:06d}", sent_at=SENT + n, text="x"))


def messages(start: int, stop: int) -> list[Callable[[Changes], bool]]:
    return [message(n) for n in range(start, stop)]


@pytest.fixture(
    params=[
        "memory",
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def restart(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Ledger]]:
    """Opens the store as a process that has just started would (nothing cached). In
    memory, the one ledger, read by a new writer."""
    if request.param == "memory":
        only = Ledger(env=persistence_env("memory://"))
        yield lambda: only
        only.close()
        return
    url = (
        f"sqlite:///{tmp_path}/ledger.sqlite3"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    opened: list[Ledger] = []

    def open_ledger() -> Ledger:
        opened.append(Ledger(env=persistence_env(url)))
        return opened[-1]

    yield open_ledger
    for ledger in opened:
        ledger.close()


def events_of(ledger: Ledger, kind: str) -> list[Any]:
    return [e for e in ledger.events.get(CONVERSATION) if type(e).__name__ == kind]


def run(writer: LedgerWriter, commands: list[Callable[[Changes], bool]]) -> list[bool]:
    return [f.result() for f in writer.run_all(commands)]


@pytest.mark.parametrize("kind", list(ITEMS))
def test_an_item_delivered_again_after_its_key_was_forgotten_is_refused_after_a_restart(
    restart: Callable[[], Ledger], kind: str
) -> None:
    # given an item, then enough messages for its key to leave the conversation's recent
    # keys and for the conversation to be snapshotted
    ledger = restart()
    writer = LedgerWriter(ledger)
    assert run(writer, [message(1), message(2), on_conversation(ITEMS[kind])])[2] is True
    assert all(run(writer, messages(3, 3 + 600)))
    stored = len(list(ledger.events.get(CONVERSATION)))
    assert ledger.snapshots is not None
    assert list(ledger.snapshots.get(CONVERSATION))

    # when it is delivered again to a process that has just started
    again = LedgerWriter(restart())

    # then it is refused, and nothing is stored
    assert again.run_now(on_conversation(ITEMS[kind])) is False
    assert len(list(again.ledger.events.get(CONVERSATION))) == stored
    # and a new item of the kind is still taken
    assert again.run_now(message(10_000)) is True


def test_a_redelivery_within_one_batch_of_a_key_the_batch_forgot_is_refused(
    restart: Callable[[], Ledger],
) -> None:
    # given one batch that records more keys than a conversation keeps, then one again
    writer = LedgerWriter(restart())
    results = run(writer, [*messages(0, RECENT_KEYS + 10), message(0)])

    # then the redelivery is refused though the key is not among the recent ones
    assert results[-1] is False
    assert len(events_of(writer.ledger, "MessageReceived")) == RECENT_KEYS + 10


def test_unsending_a_forgotten_message_after_a_restart_knows_when_it_was_sent(
    restart: Callable[[], Ledger],
) -> None:
    # given a message whose key the conversation has forgotten
    writer = LedgerWriter(restart())
    run(writer, messages(1, RECENT_KEYS + 20))

    # when it is unsent, in a process that has just started
    again = LedgerWriter(restart())
    assert again.run_now(on_conversation(lambda c: c.unsend(mid="m000001", unsent_at=9))) is True

    # then the unsend says when the message was sent (as the conversation list needs)
    [unsent] = events_of(again.ledger, "MessageUnsent")
    assert unsent.sent_at == SENT + 1


def test_a_message_unsent_before_it_arrived_long_ago_keeps_no_content_after_a_restart(
    restart: Callable[[], Ledger],
) -> None:
    # given an unsend that came before its message (Meta keeps no order), long ago
    writer = LedgerWriter(restart())
    writer.run_now(on_conversation(lambda c: c.unsend(mid="late", unsent_at=1)))
    run(writer, messages(1, RECENT_KEYS + 20))

    # when the message arrives, in a process that has just started
    again = LedgerWriter(restart())
    arrived = again.run_now(
        on_conversation(lambda c: c.receive_message(mid="late", sent_at=0, text="secret"))
    )

    # then it is recorded without its content
    assert arrived is True
    [late] = [e for e in events_of(again.ledger, "MessageReceived") if e.mid == "late"]
    assert late.text is None


def stored_snapshot_size(ledger: Ledger) -> tuple[int, int]:
    """The version and size in bytes of the conversation's latest stored snapshot."""
    assert ledger.snapshots is not None
    [latest] = ledger.snapshots.recorder.select_events(CONVERSATION, desc=True, limit=1)
    return latest.originator_version, len(latest.state)


def test_a_conversations_snapshot_does_not_grow_with_its_messages(
    restart: Callable[[], Ledger],
) -> None:
    # given a conversation snapshotted at 600 messages, then at 1,200
    writer = LedgerWriter(restart())
    run(writer, messages(0, 600))
    at_600 = stored_snapshot_size(writer.ledger)
    run(writer, messages(600, 1_200))
    at_1200 = stored_snapshot_size(writer.ledger)

    # then the later snapshot is no larger (its keys are the recent ones, as many)
    assert at_600[0] > 500
    assert at_1200[0] > 1_000
    assert at_1200[1] <= at_600[1] + 64
    assert at_600[1] < 20_000


class AskedLedger(Ledger):
    """A ledger in memory that keeps what the store was asked of recorded keys."""

    def __init__(self) -> None:
        super().__init__(env=persistence_env("memory://"))
        self.asked: list[dict[UUID, set[str]]] = []

    def recorded_keys(
        self, asked: Mapping[UUID, Collection[str]]
    ) -> dict[UUID, dict[str, int | None]]:
        self.asked.append({aggregate_id: set(keys) for aggregate_id, keys in asked.items()})
        return super().recorded_keys(asked)


def test_the_writer_asks_the_store_once_per_batch() -> None:
    # given a long conversation, and a store that counts the questions
    ledger = AskedLedger()
    writer = LedgerWriter(ledger)
    run(writer, messages(0, RECENT_KEYS + 10))
    ledger.asked.clear()
    asked = ledger.asked

    # when a batch brings it twenty new messages and two old ones
    results = run(writer, [*messages(1_000, 1_020), message(1), message(2)])

    # then the store was asked once for all the keys, and again after the batch ran
    # with what it knew
    assert results == [True] * 20 + [False, False]
    assert len(asked) == 2
    assert {"message:m000001", "message:m001000"} <= asked[0][CONVERSATION]


def test_a_conversation_keeps_its_recent_keys_and_asks_about_older_ones() -> None:
    conversation = Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)
    conversation.older_keys = OlderKeys()
    for n in range(RECENT_KEYS + 5):
        assert conversation.receive_message(mid=f"m{n}", sent_at=n)

    assert len(conversation.recorded) == RECENT_KEYS
    assert conversation.forgotten == 5
    # what it forgot before its batch is stored is known in memory meanwhile
    assert conversation.older_keys.found["message:m0"] == 0
    assert not conversation.receive_message(mid="m0", sent_at=0)
    # without the store's answers, it does not guess
    conversation.older_keys = None
    with pytest.raises(OlderKeysUnknown):
        conversation.has_recorded("message:m0")
    conversation.older_keys = OlderKeys({"message:m0": 0})
    assert conversation.has_recorded("message:m0")
    assert not conversation.has_recorded("message:unknown")
    assert conversation.older_keys.asked == {"message:unknown"}


def test_a_snapshot_of_an_older_release_holding_every_key_still_refuses_them() -> None:
    # given a conversation as an older release's snapshot loads it: every key, nothing
    # forgotten (the class default)
    conversation = Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)
    conversation.recorded = {f"message:m{n}": n for n in range(1_000)}
    conversation.__dict__.pop("forgotten", None)

    # then it refuses what it holds without asking the store
    assert not conversation.receive_message(mid="m3", sent_at=3)
    # and once it records something, it keeps only its recent keys
    conversation.older_keys = OlderKeys()
    assert conversation.receive_message(mid="new", sent_at=2_000)
    assert len(conversation.recorded) == RECENT_KEYS
    assert conversation.forgotten == 1_001 - RECENT_KEYS
    assert conversation.older_keys.found["message:m3"] == 3


def test_a_batch_run_again_for_a_forgotten_key_answers_its_refused_command_once(
    restart: Callable[[], Ledger],
) -> None:
    # given a conversation whose first message's key left its recent keys, after a restart
    ledger = restart()
    assert all(run(LedgerWriter(ledger), messages(0, RECENT_KEYS + 10)))
    again = LedgerWriter(restart())

    def refuse(_: Changes) -> bool:
        raise InvalidInput("text", "refused")

    # when one batch holds a refused command, the forgotten message delivered again (the
    # batch runs again with the store's answer) and a new message
    refused, redelivered, new = again.run_all([refuse, message(0), message(100_000)])

    # then the refusal is answered once, the others as they would be alone: nothing is a 503
    with pytest.raises(InvalidInput):
        refused.result()
    assert redelivered.result() is False
    assert new.result() is True
    assert len(events_of(again.ledger, "MessageReceived")) == RECENT_KEYS + 11
