"""The Conversation aggregate: each kind of item is recorded once, and replay rebuilds it."""

from __future__ import annotations

from typing import TypedDict
from uuid import UUID

from eventsourcing.application import Application

from domain.conversation import Conversation
from domain.identity import conversation_id

ACCOUNT, PARTICIPANT = "17841400000000001", "5500000000000001"


class Reaction(TypedDict):
    """What identifies a reaction, as `Conversation.add_reaction` takes it."""

    mid: str
    sender_id: str
    reaction: str | None
    emoji: str | None


def new_conversation() -> Conversation:
    return Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)


def test_conversation_id_is_derived_from_account_and_participant() -> None:
    conversation = new_conversation()

    assert conversation.id == conversation_id(ACCOUNT, PARTICIPANT)
    assert conversation.id != conversation_id(ACCOUNT, "5500000000000002")
    assert conversation.id != conversation_id("17841400000000002", PARTICIPANT)


def test_a_message_is_recorded_once_however_often_it_arrives() -> None:
    conversation = new_conversation()

    first = conversation.receive_message(mid="m1", sent_at=1, text="hi")
    again = conversation.receive_message(mid="m1", sent_at=1, text="hi")

    assert (first, again) == (True, False)
    assert [type(e).__name__ for e in conversation.collect_events()] == [
        "Started",
        "MessageReceived",
    ]


def test_an_echo_with_the_mid_of_a_stored_message_is_a_redelivery() -> None:
    conversation = new_conversation()
    conversation.record_echo(mid="m1", sent_at=1, text="hello from the shop")

    assert conversation.record_echo(mid="m1", sent_at=1, text="hello from the shop") is False


def test_unsend_and_edit_of_a_message_are_recorded_beside_it() -> None:
    conversation = new_conversation()
    conversation.receive_message(mid="m1", sent_at=1, text="helo")

    assert conversation.edit_message(mid="m1", text="hello", edit_count=1, edited_at=2)
    assert conversation.edit_message(mid="m1", text="hello!", edit_count=2, edited_at=3)
    assert not conversation.edit_message(mid="m1", text="hello", edit_count=1, edited_at=2)
    assert conversation.unsend(mid="m1", unsent_at=4)
    assert not conversation.unsend(mid="m1", unsent_at=4)


def test_reactions_are_deduplicated_on_mid_sender_action_emoji_and_time() -> None:
    conversation = new_conversation()
    react: Reaction = {"mid": "m1", "sender_id": PARTICIPANT, "reaction": "love", "emoji": "❤️"}
    laugh: Reaction = {**react, "emoji": "😂", "reaction": "laugh"}

    assert conversation.add_reaction(**react, reacted_at=10)
    assert not conversation.add_reaction(**react, reacted_at=10)
    # The same emoji again later is a new reaction (after an unreact, say).
    assert conversation.remove_reaction(**react, removed_at=11)
    assert conversation.add_reaction(**react, reacted_at=12)
    assert conversation.add_reaction(**laugh, reacted_at=12)


def test_reads_are_deduplicated_on_mid_and_time() -> None:
    conversation = new_conversation()

    assert conversation.mark_seen(mid="m1", seen_at=10)
    assert not conversation.mark_seen(mid="m1", seen_at=10)
    assert conversation.mark_seen(mid="m2", seen_at=11)


def test_postbacks_without_a_mid_are_identified_by_payload_and_time() -> None:
    conversation = new_conversation()

    assert conversation.receive_postback(mid=None, title="Hours?", payload="HOURS", sent_at=1)
    assert not conversation.receive_postback(mid=None, title="Hours?", payload="HOURS", sent_at=1)
    assert conversation.receive_postback(mid="p1", title="Hours?", payload="HOURS", sent_at=1)


def test_unrecognised_items_are_kept_and_deduplicated_by_fingerprint() -> None:
    conversation = new_conversation()
    item = {"sender": {"id": PARTICIPANT}, "some_new_field": {"x": 1}}

    assert conversation.record_unrecognised(item=item, fingerprint="abc", sent_at=None)
    assert not conversation.record_unrecognised(item=item, fingerprint="abc", sent_at=None)


def test_replaying_the_stored_events_rebuilds_the_conversation() -> None:
    # given a conversation stored in memory
    app: Application[UUID] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    conversation = new_conversation()
    conversation.receive_message(mid="m1", sent_at=1, text="hi", attachments=[{"type": "image"}])
    conversation.add_reaction(
        mid="m1", sender_id=PARTICIPANT, reaction=None, emoji=None, reacted_at=2
    )
    app.save(conversation)

    # when it is read back
    replayed: Conversation = app.repository.get(conversation.id)

    # then it knows what it recorded, so a redelivery is still refused
    assert replayed.version == conversation.version == 3
    assert replayed.recorded == conversation.recorded
    assert replayed.receive_message(mid="m1", sent_at=1, text="hi") is False


def test_a_postback_or_referral_without_a_mid_keeps_no_content_in_its_key() -> None:
    # The key stays in the log and in snapshots after the content's data key is destroyed.
    conversation = new_conversation()
    conversation.receive_postback(
        mid=None, title="Ship to", payload="ADDRESS:12 Old Mill Lane 7f3a9", sent_at=1
    )
    conversation.receive_referral(referral={"ref": "coupon-7f3a9-anna", "source": "ADS"}, sent_at=2)

    postback, referral = conversation.collect_events()[1:]
    assert isinstance(postback, Conversation.PostbackReceived)
    assert isinstance(referral, Conversation.ReferralReceived)
    assert "7f3a9" not in postback.key
    assert "7f3a9" not in referral.key
    assert all("7f3a9" not in key for key in conversation.recorded)
    # and a redelivery is still recognised, with its payload as with a key of an older release
    assert not conversation.receive_postback(
        mid=None, title="Ship to", payload="ADDRESS:12 Old Mill Lane 7f3a9", sent_at=1
    )
    assert not conversation.receive_referral(
        referral={"ref": "coupon-7f3a9-anna", "source": "ADS"}, sent_at=2
    )
    older = new_conversation()
    older.recorded["postback:HOURS:5"] = None
    assert not older.receive_postback(mid=None, title="Hours?", payload="HOURS", sent_at=5)
