"""An echo of a message the business did not send through dmledger (a person answering
from the Instagram app) pauses automation, even while one of our replies is on its way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from application.auto_reply import echo_command
from application.ledger_writer import Changes
from domain.conversation import Conversation
from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import ACCOUNT, PARTICIPANT, register_account

CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    built = make_services("memory://")
    register_account(built)

    def start(changes: Changes) -> None:
        conversation = Conversation(ig_account_id=ACCOUNT, participant_id=PARTICIPANT)
        changes.add(conversation)
        conversation.receive_message(mid="m-in", sent_at=1_000, text="Do you ship?")
        conversation.queue_reply(
            reply_id="r-1",
            text="We ship worldwide!",
            key="auto:m-in",
            automated=True,
            in_reply_to="m-in",
            rule_id="rule-1",
            rule_version=1,
            trigger_at=1_000,
            by="rule",
        )

    built.writer.run_now(start)
    return built


def echo(services: Services, mid: str, text: str) -> Any:
    def record(changes: Changes) -> Any:
        conversation = changes.get(CONVERSATION, Conversation)
        assert conversation is not None
        conversation.record_echo(mid=mid, sent_at=2_000, text=text)
        return conversation.pending_events[-1]

    return services.writer.run_now(record)


def paused(services: Services) -> bool:
    found = services.ledger.find(CONVERSATION)
    assert isinstance(found, Conversation)
    return found.automation_paused_at is not None


def test_a_foreign_echo_pauses_automation_while_our_reply_is_queued(services: Services) -> None:
    event = echo(services, "m-app", "Hi! A person here, from the app.")

    assert services.writer.run_now(echo_command(event)) is True
    assert paused(services)


def test_an_echo_with_the_text_of_our_queued_reply_may_be_ours_and_pauses_nothing(
    services: Services,
) -> None:
    event = echo(services, "m-ours", "We ship worldwide!")

    assert services.writer.run_now(echo_command(event)) is False
    assert not paused(services)
