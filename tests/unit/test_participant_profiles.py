"""Knowing the participant, without services: when a conversation needs a profile lookup,
what of Meta's answer is kept, and what a lookup without an answer does."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.application import Application

from application import participant_profiles
from application.delivery import MetaError
from application.ledger import Ledger
from application.participant_profiles import RETRY_AFTER_MS, ProfileLookups
from domain.account import Account
from domain.conversation import PROFILE_REFRESH_MS, Conversation
from infrastructure.graph_api import profile_of
from interfaces.cli_dev import participant_profile

ACCOUNT, PARTICIPANT = "17841400000000001", "5500000000000001"
NOW = 1_800_000_000_000


def new_conversation() -> Conversation:
    return Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)


def test_a_profile_is_due_until_looked_up_then_again_after_a_week() -> None:
    conversation = new_conversation()
    assert conversation.profile_due(NOW)

    assert conversation.record_participant_profile(profile={"username": "a"}, looked_up_at=NOW)

    assert not conversation.profile_due(NOW + PROFILE_REFRESH_MS - 1)
    assert conversation.profile_due(NOW + PROFILE_REFRESH_MS)


def test_a_lookup_made_twice_is_recorded_once() -> None:
    conversation = new_conversation()

    first = conversation.record_participant_profile(profile={"username": "a"}, looked_up_at=NOW)
    again = conversation.record_participant_profile(profile={"username": "a"}, looked_up_at=NOW + 1)

    assert (first, again) == (True, False)


def test_a_refusal_waits_a_week_too_and_keeps_what_was_known() -> None:
    conversation = new_conversation()
    conversation.record_participant_profile(profile={"username": "zelda.q"}, looked_up_at=NOW)
    recorded_in = conversation.profile_version
    later = NOW + PROFILE_REFRESH_MS

    assert conversation.refuse_participant_profile(code=100, message="no", looked_up_at=later)
    assert not conversation.refuse_participant_profile(code=100, message="no", looked_up_at=later)

    # the profile kept is still the one recorded (in its event: the aggregate keeps no name)
    assert recorded_in == 2
    assert conversation.profile_version == recorded_in
    conversation.collect_events()
    assert "zelda.q" not in str(vars(conversation))
    assert not conversation.profile_due(later + PROFILE_REFRESH_MS - 1)


def test_a_profile_stored_before_lookup_times_were_kept_is_looked_up_again() -> None:
    # given a conversation whose profile event has no `looked_up_at` (stored before)
    application: Application[Any] = Application()
    conversation = new_conversation()
    conversation._participant_profile_recorded(profile={"username": "a"})  # the old event
    application.save(conversation)

    replayed: Conversation = application.repository.get(conversation.id)

    assert replayed.profile_version == 2
    assert replayed.profile_due(NOW)


def test_only_the_documented_fields_of_metas_answer_are_kept_with_their_types() -> None:
    answer = {
        "id": PARTICIPANT,
        "name": "Anna",
        "username": "anna",
        "profile_pic": None,  # Meta: null when the person has none
        "follower_count": "many",
        "is_user_follow_business": True,
        "is_verified_user": 1,
        "is_business_follow_user": False,
        "email": "not@asked.example",
    }

    assert profile_of(answer) == {
        "name": "Anna",
        "username": "anna",
        "is_user_follow_business": True,
        "is_business_follow_user": False,
    }
    assert profile_of({"name": "a\x00b", "follower_count": 2**63}) == {}


class _Secrets:
    def encrypt(self, plaintext: str) -> str:
        return plaintext

    def decrypt(self, ciphertext: str) -> str:
        return ciphertext


class _Profiles:
    def __init__(self, *answers: dict[str, Any] | MetaError | None) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def lookup(self, access_token: str, participant_id: str) -> dict[str, Any] | MetaError | None:
        self.asked.append(participant_id)
        return self.answers.pop(0)


class _Message:
    def __init__(self, conversation: Conversation) -> None:
        self.originator_id = conversation.id


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    ledger = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield ledger
    ledger.close()


@pytest.fixture
def conversation(ledger: Ledger) -> Conversation:
    """A conversation with its first message, of a registered account."""
    account = Account(
        ig_account_id=ACCOUNT,
        username="shop",
        app_secret="s",
        access_token="t",
        verify_token="v",
        by="test",
    )
    conversation = new_conversation()
    conversation.receive_message(mid="m-1", sent_at=NOW, text="hi")
    ledger.save(account, conversation)
    return conversation


def lookups(ledger: Ledger, profiles: _Profiles, now: list[int]) -> ProfileLookups:
    return ProfileLookups(ledger, _Secrets(), profiles, lambda: now[0])


def test_a_lookup_without_an_answer_pauses_the_accounts_lookups(
    ledger: Ledger, conversation: Conversation
) -> None:
    profiles = _Profiles(None, {"username": "anna"})
    now = [NOW]
    asking = lookups(ledger, profiles, now)
    message = _Message(conversation)

    assert asking.answer_for(message, {}, {}) is None
    now[0] += RETRY_AFTER_MS - 1
    assert asking.answer_for(message, {}, {}) is None  # not asked: the account waits
    now[0] += 1
    answer = asking.answer_for(message, {}, {})

    assert answer is not None
    assert answer.found == {"username": "anna"}
    assert len(profiles.asked) == 2


def test_a_conversation_the_log_says_was_looked_up_is_not_asked_again(
    ledger: Ledger, conversation: Conversation
) -> None:
    profiles = _Profiles({"username": "anna"})
    now = [NOW]
    asking = lookups(ledger, profiles, now)
    message = _Message(conversation)
    answer = asking.answer_for(message, {}, {})
    assert answer is not None
    answer.record_on(conversation)

    # when the policy sees the recorded event in the log
    for event in conversation.collect_events():
        asking.observe(event)

    assert asking.answer_for(message, {}, {}) is None
    assert len(profiles.asked) == 1


def test_the_fake_graph_api_is_told_a_profile_as_igsid_username_and_name() -> None:
    assert participant_profile("55=anna:Anna S") == ("55", {"username": "anna", "name": "Anna S"})
    assert participant_profile("55=anna") == ("55", {"username": "anna", "name": None})
    with pytest.raises(argparse.ArgumentTypeError, match="IGSID=USERNAME"):
        participant_profile("anna")


def test_after_a_restart_a_conversation_looked_up_this_week_is_not_asked_again(
    ledger: Ledger, conversation: Conversation
) -> None:
    conversation.record_participant_profile(profile={"username": "anna"}, looked_up_at=NOW)
    ledger.save(conversation)
    profiles = _Profiles()

    asking = lookups(ledger, profiles, [NOW + PROFILE_REFRESH_MS - 1])  # a new process

    assert asking.answer_for(_Message(conversation), {}, {}) is None
    assert profiles.asked == []


def test_lookups_remember_a_bounded_number_of_conversations_and_read_back_the_rest(
    ledger: Ledger, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (P6: a web worker's memory stays bounded however many conversations it sees)
    monkeypatch.setattr(participant_profiles, "CONVERSATIONS_KEPT", 2)
    others = [
        Conversation(ig_account_id=ACCOUNT, participant_id=p)
        for p in ("5500000000000002", "5500000000000003")
    ]
    for other in others:
        other.receive_message(mid=f"m-{other.participant_id}", sent_at=NOW)
    ledger.save(*others)
    profiles = _Profiles({"username": "a"}, {"username": "b"}, {"username": "c"})
    asking = lookups(ledger, profiles, [NOW])

    # given each conversation's profile looked up and recorded, one more than it remembers
    for each in (conversation, *others):
        answer = asking.answer_for(_Message(each), {}, {})
        assert answer is not None
        assert answer.record_on(each)
        ledger.save(each)
    assert len(asking._known) == 2

    # then the forgotten first one is read back: looked up already, not asked again
    assert asking.answer_for(_Message(conversation), {}, {}) is None
    assert profiles.asked == [PARTICIPANT, *(o.participant_id for o in others)]
    assert len(asking._known) == 2
