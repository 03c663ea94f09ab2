"""Backfill's parts without a network: Meta's messages as dmledger records them, and the
pace of 2 calls a second, on a fake clock (the wall clock's gaps vary with the machine's
load)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from application.backfill import Backfill, Pace, message_of
from application.ports import HistoryPage
from infrastructure.secret_box import FernetSecretBox
from interfaces.composition import Services
from tests.conftest import TEST_KEY, register_account

ACCOUNT, PARTICIPANT = "17841400000000001", "5500000000000001"


def graph_message(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": "aWdfmid1",
        "created_time": "2026-11-30T10:00:00+0000",
        "from": {"id": PARTICIPANT, "username": "anna"},
        "to": {"data": [{"id": ACCOUNT, "username": "myshop"}]},
        "message": "hello",
    }
    return {**message, **overrides}


def test_a_participants_message_is_theirs_and_the_accounts_is_an_echo() -> None:
    theirs = message_of(graph_message(), ACCOUNT)
    ours = message_of(
        graph_message(
            **{"from": {"id": ACCOUNT}, "to": {"data": [{"id": PARTICIPANT}]}, "message": "hi!"}
        ),
        ACCOUNT,
    )

    assert theirs is not None
    assert ours is not None
    assert (theirs.from_participant, theirs.participant_id, theirs.text) == (
        True,
        PARTICIPANT,
        "hello",
    )
    assert (ours.from_participant, ours.participant_id, ours.text) == (False, PARTICIPANT, "hi!")
    assert theirs.sent_at == 1_796_032_800_000


def test_attachments_become_what_webhooks_carry_urls_only() -> None:
    found = message_of(
        graph_message(
            message="",
            attachments={
                "data": [
                    {"image_data": {"url": "https://cdn.example/a.jpg", "width": 10}},
                    {"video_data": {"url": "https://cdn.example/b.mp4"}},
                    {"file_url": "https://cdn.example/c.pdf"},
                    "not an object",
                ]
            },
        ),
        ACCOUNT,
    )

    assert found is not None
    assert found.text is None
    assert found.attachments == [
        {"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}},
        {"type": "video", "payload": {"url": "https://cdn.example/b.mp4"}},
        {"type": "file", "payload": {"url": "https://cdn.example/c.pdf"}},
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": None},
        {"id": ""},
        {"created_time": "yesterday"},
        {"created_time": None},
        {"from": None},
        {"from": {"id": ACCOUNT}, "to": {"data": []}},
        {"from": {"id": ACCOUNT}, "to": {"data": [{"id": ACCOUNT}]}},
    ],
    ids=["no id", "empty id", "bad time", "no time", "no sender", "no recipient", "to itself"],
)
def test_a_message_that_cannot_be_placed_is_left_out(overrides: dict[str, Any]) -> None:
    assert message_of(graph_message(**overrides), ACCOUNT) is None


def test_a_nul_in_a_text_is_replaced_as_webhooks_do() -> None:
    found = message_of(graph_message(message="a\x00b"), ACCOUNT)

    assert found is not None
    assert found.text == "a\ufffdb"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def test_the_pace_lets_two_calls_a_second_through() -> None:
    time = FakeTime()
    pace = Pace(2.0, clock=time.clock, sleep=time.sleep)

    calls = []
    for _ in range(9):
        pace.wait()
        calls.append(time.now)

    # no second holds more than two calls: each call is half a second after the one before
    assert [round(b - a, 6) for a, b in itertools.pairwise(calls)] == [0.5] * 8
    assert calls[-1] - calls[0] == pytest.approx(4.0)


def test_a_slow_caller_is_not_held_back_further() -> None:
    time = FakeTime()
    pace = Pace(2.0, clock=time.clock, sleep=time.sleep)
    pace.wait()
    time.now += 3.0  # the call itself took 3 s

    before = time.now
    pace.wait()

    assert time.now == before


class PagedHistory:
    """Meta's Conversations API: one conversation whose two messages come a page each,
    noting the (fake) time of each call."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.calls: list[float] = []

    def conversations(self, access_token: str, *, after: str | None) -> HistoryPage:
        self.calls.append(self.time.now)
        return HistoryPage([{"id": "aWdfconv1", "updated_time": "2026-11-30T10:01:00+0000"}], None)

    def messages(
        self, access_token: str, conversation_id: str, *, after: str | None
    ) -> HistoryPage:
        self.calls.append(self.time.now)
        if after is None:
            newest = graph_message(id="aWdfmid2", created_time="2026-11-30T10:01:00+0000")
            return HistoryPage([newest], "1")
        return HistoryPage([graph_message(id="aWdfmid1")], None)


def test_a_backfill_waits_on_its_pace_before_each_call_to_meta(
    make_services: Callable[..., Services],
) -> None:
    # given an account, and Meta's history of one conversation in two pages
    services = make_services("memory://")
    register_account(services)
    time = FakeTime()
    history = PagedHistory(time)
    backfill = Backfill(
        services.ledger,
        services.writer,
        FernetSecretBox([TEST_KEY]),
        history,
        pace=lambda: Pace(2.0, clock=time.clock, sleep=time.sleep),
    )

    # when the account is backfilled
    report = backfill.run(ACCOUNT)

    # then both messages are stored, from 3 calls, each half a second after the one before
    assert (report.conversations, report.messages, report.stored) == (1, 2, 2)
    assert [b - a for a, b in itertools.pairwise(history.calls)] == [0.5, 0.5]
