"""Comments to DMs, at unit level: the `Media` aggregate (one comment once, one private
reply per comment and per commenter, Meta's 7-day and live limits), the comment triggers,
and the decision that claims the reply on the media and queues it on the conversation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from application.comment_replies import CommentReplies
from application.comment_rules import CommentInbound, choose_for_comment, comment_trigger_matches
from application.errors import InvalidInput
from application.ingest import sign
from application.ledger_writer import Changes
from application.rules import RuleDefinition, Trigger, validate_rule
from domain.account_values import AccountRule, RuleTrigger
from domain.conversation import Conversation
from domain.identity import conversation_id, media_id
from domain.media import DAY_MS, LIVE_BROADCAST_MS, Media
from interfaces.composition import Services
from tests.conftest import ACCOUNT, APP_SECRET, register_account
from tests.support.clock import MovableClock

POST = "17900000000000001"
COMMENTER = "5500000000000009"
NOW = 1_767_225_600_000


def media_with_comment(*, live: bool = False, at: int = NOW) -> Media:
    media = Media(ig_account_id=ACCOUNT, media=POST, product_type="FEED")
    media.receive_comment(
        comment_id="c1",
        text="Price please",
        author_id=COMMENTER,
        author_username="bob",
        parent_id=None,
        product_type="FEED",
        live=live,
        commented_at=at,
    )
    return media


# -- the aggregate ----------------------------------------------------------------------


def test_a_comment_delivered_twice_is_recorded_once() -> None:
    media = media_with_comment()

    again = media.receive_comment(
        comment_id="c1",
        text="Price please",
        author_id=COMMENTER,
        author_username="bob",
        parent_id=None,
        product_type="FEED",
        live=False,
        commented_at=NOW,
    )

    assert again is False
    assert [type(e).__name__ for e in media.collect_events()] == ["Started", "CommentReceived"]


def test_one_private_reply_per_comment_is_claimed_by_the_aggregate() -> None:
    media = media_with_comment()

    first = media.claim_private_reply(comment_id="c1", reply_id="r1", rule_id="x", now=NOW)
    second = media.claim_private_reply(comment_id="c1", reply_id="r2", rule_id="x", now=NOW)

    assert (first, second) == (True, False)
    assert media.private_replies == {"c1": "r1"}
    assert media.private_reply_refusal("c1", NOW) == "already_replied"


def test_a_second_comment_of_the_same_person_on_the_media_gets_no_second_reply() -> None:
    media = media_with_comment()
    media.claim_private_reply(comment_id="c1", reply_id="r1", rule_id="x", now=NOW)
    media.receive_comment(
        comment_id="c2",
        text="Price??",
        author_id=COMMENTER,
        author_username="bob",
        parent_id=None,
        product_type="FEED",
        live=False,
        commented_at=NOW + 1,
    )

    assert media.private_reply_refusal("c2", NOW + 1) == "commenter_already_replied"
    assert media.claim_private_reply(comment_id="c2", reply_id="r2", rule_id="x", now=NOW) is False


def test_a_private_reply_goes_within_7_days_of_the_comment(clock: MovableClock) -> None:
    clock.stop(NOW)
    media = media_with_comment(at=clock.now_ms())

    clock.advance(7 * DAY_MS)
    assert media.private_reply_refusal("c1", clock.now_ms()) is None
    clock.advance(1)
    assert media.private_reply_refusal("c1", clock.now_ms()) == "comment_too_old"
    assert (
        media.claim_private_reply(comment_id="c1", reply_id="r", rule_id=None, now=clock.now_ms())
        is False
    )


def test_a_live_comment_is_answered_only_while_the_broadcast_can_last(clock: MovableClock) -> None:
    clock.stop(NOW)
    media = media_with_comment(live=True, at=clock.now_ms())

    clock.advance(LIVE_BROADCAST_MS)
    assert media.private_reply_refusal("c1", clock.now_ms()) is None
    clock.advance(1)
    assert media.private_reply_refusal("c1", clock.now_ms()) == "broadcast_over"


def test_a_removed_comment_is_not_answered_and_an_edit_after_it_is_ignored() -> None:
    media = media_with_comment()

    assert media.edit_comment(comment_id="c1", text="Price?", edited_at=NOW + 5) is True
    assert media.edit_comment(comment_id="c1", text="Price?", edited_at=NOW + 5) is False
    assert media.remove_comment(comment_id="c1", removed_at=NOW + 6) is True
    assert media.remove_comment(comment_id="c1", removed_at=NOW + 6) is False
    assert media.edit_comment(comment_id="c1", text="again", edited_at=NOW + 7) is False
    assert media.private_reply_refusal("c1", NOW + 7) == "comment_removed"


# -- the triggers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "comment", "matches"),
    [
        ({"type": "comment", "value": "price"}, CommentInbound("Price please!", POST, False), True),
        ({"type": "comment", "value": "price"}, CommentInbound("priceless", POST, False), False),
        (
            {"type": "comment", "value": "price", "media_id": POST},
            CommentInbound("price", POST, False),
            True,
        ),
        (
            {"type": "comment", "value": "price", "media_id": "other"},
            CommentInbound("price", POST, False),
            False,
        ),
        ({"type": "comment", "value": None}, CommentInbound("anything", POST, False), True),
        ({"type": "comment", "value": "price"}, CommentInbound(None, POST, False), False),
        ({"type": "comment", "value": "price"}, CommentInbound("price", POST, True), False),
        ({"type": "live_comment", "value": "price"}, CommentInbound("price", POST, True), True),
        ({"type": "live_comment", "value": "price"}, CommentInbound("price", POST, False), False),
        ({"type": "keyword", "value": "price"}, CommentInbound("price", POST, False), False),
    ],
)
def test_comment_triggers(trigger: dict[str, Any], comment: CommentInbound, matches: bool) -> None:
    assert comment_trigger_matches(RuleTrigger.from_json(trigger), comment) is matches


def rule(**overrides: Any) -> AccountRule:
    definition = {
        "name": "price",
        "triggers": [{"type": "comment", "value": "price"}],
        "reply": "Hi {username}, it is 20 EUR",
        **overrides,
    }
    import msgspec

    stored = validate_rule(msgspec.convert(definition, RuleDefinition))
    return AccountRule(stored, version=1, order=1)


def test_the_first_enabled_rule_with_a_matching_comment_trigger_answers() -> None:
    rules = {
        "off": rule(enabled=False),
        "dm": rule(triggers=[{"type": "keyword", "value": "price"}]),
        "on": rule(public_reply="Sent you a DM!"),
    }

    match = choose_for_comment(rules, CommentInbound("price?", POST, False))

    assert match is not None
    assert (match.rule_id, match.public_reply) == ("on", "Sent you a DM!")


def test_a_dm_rule_may_not_name_a_media_nor_reply_publicly() -> None:
    with pytest.raises(InvalidInput) as named:
        validate_rule(
            RuleDefinition(
                name="x", triggers=[Trigger(type="keyword", value="a", media_id=POST)], reply="r"
            )
        )
    assert named.value.field == "triggers[0].media_id"
    with pytest.raises(InvalidInput) as public:
        validate_rule(
            RuleDefinition(
                name="x", triggers=[Trigger(type="keyword", value="a")], reply="r", public_reply="p"
            )
        )
    assert public.value.field == "public_reply"
    with pytest.raises(InvalidInput) as punctuation:
        validate_rule(
            RuleDefinition(name="x", triggers=[Trigger(type="comment", value="!!")], reply="r")
        )
    assert punctuation.value.field == "triggers[0].value"


# -- ingest and the decision ------------------------------------------------------------------


def comment_body(
    comment_id: str, text: str, *, author: str = COMMENTER, field: str = "comments"
) -> bytes:
    return json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": ACCOUNT,
                    "time": NOW // 1000,
                    "changes": [
                        {
                            "field": field,
                            "value": {
                                "from": {"id": author, "username": "bob"},
                                "media": {"id": POST, "media_product_type": "FEED"},
                                "id": comment_id,
                                "text": text,
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    built = make_services("memory://")
    register_account(built)
    return built


def ingest(services: Services, body: bytes) -> Any:
    signature = sign(body, APP_SECRET)
    return services.writer.run_now(services.ingest.command(body, signature))


def test_a_signed_comments_webhook_becomes_a_comment_on_its_media_once(services: Services) -> None:
    first = ingest(services, comment_body("c1", "Price please"))
    again = ingest(services, comment_body("c1", "Price please"))

    assert (first.comments, again.comments, again.duplicates) == (1, 0, 1)
    media = services.ledger.find(media_id(ACCOUNT, POST))
    assert isinstance(media, Media)
    assert media.comments["c1"]["author_id"] == COMMENTER
    assert media.comments["c1"]["commented_at"] == NOW


def decide(services: Services, clock: MovableClock, comment_id: str) -> Any:
    media = services.ledger.find(media_id(ACCOUNT, POST))
    assert isinstance(media, Media)
    [event] = [
        e
        for e in services.ledger.events.get(media.id)
        # (the class @event("CommentReceived") makes, which mypy does not see: its fields by name)
        if type(e).__name__ == "CommentReceived" and vars(e)["comment_id"] == comment_id
    ]
    services.ledger.open_content([event])  # as the policy's runner reads it
    return services.writer.run_now(CommentReplies(services.ledger, clock).command_for(event))


def add_rule(services: Services) -> None:
    import msgspec

    services.writer.run_now(
        services.rules.add(
            ACCOUNT,
            msgspec.convert(
                {
                    "name": "price",
                    "triggers": [{"type": "comment", "value": "price"}],
                    "reply": "Hi {username}!",
                },
                RuleDefinition,
            ),
            by="test",
        )
    )


def test_the_decision_claims_the_reply_on_the_media_and_queues_it_in_the_conversation(
    services: Services, clock: MovableClock
) -> None:
    add_rule(services)
    clock.stop(NOW + 1000)
    ingest(services, comment_body("c1", "Price please"))

    assert decide(services, clock, "c1") == "queued"
    assert decide(services, clock, "c1") is None  # decided once

    conversation = services.ledger.find(conversation_id(ACCOUNT, COMMENTER))
    assert isinstance(conversation, Conversation)
    [reply] = conversation.replies.values()
    assert reply["automated"] is True
    media = services.ledger.find(media_id(ACCOUNT, POST))
    assert isinstance(media, Media)
    assert list(media.private_replies) == ["c1"]


def test_8_days_after_the_comment_the_decision_records_why_it_did_not_answer(
    services: Services, clock: MovableClock
) -> None:
    add_rule(services)
    ingest(services, comment_body("c1", "Price please"))
    clock.stop(NOW + 8 * DAY_MS)

    assert decide(services, clock, "c1") == "comment_too_old"
    assert services.ledger.find(conversation_id(ACCOUNT, COMMENTER)) is None


def test_while_another_app_owns_the_thread_a_comment_is_not_answered(
    services: Services, clock: MovableClock
) -> None:
    add_rule(services)
    clock.stop(NOW + 1000)

    def taken(changes: Changes) -> None:
        conversation = Conversation(ig_account_id=ACCOUNT, participant_id=COMMENTER)
        changes.add(conversation)
        conversation.record_thread_control(
            action="take",
            previous_owner_app_id="1",
            new_owner_app_id="2",
            metadata=None,
            at=NOW,
        )

    services.writer.run_now(taken)
    ingest(services, comment_body("c1", "Price please"))

    assert decide(services, clock, "c1") == "thread_owned_by_another_app"


# -- the comment's text is the commenter's content ----------------------------------------


@pytest.fixture
def sealed(make_services: Callable[..., Services], tmp_path: Path) -> Services:
    built = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3")
    register_account(built)
    return built


def comment_texts(services: Services) -> list[Any]:
    media = services.ledger.find(media_id(ACCOUNT, POST))
    assert media is not None
    events = [e for e in services.ledger.events.get(media.id) if hasattr(e, "text")]
    services.ledger.open_content(events)
    return [e.text for e in events]


@pytest.mark.sqlite
def test_erasing_a_commenter_erases_their_comments_even_without_a_conversation(
    sealed: Services,
) -> None:
    from application.erasure import erase_participant

    ingest(sealed, comment_body("c1", "Price please"))
    assert comment_texts(sealed) == ["Price please"]
    stored = sealed.ledger.recorder.select_notifications(start=1, limit=100)
    assert b"Price please" not in b"".join(n.state for n in stored)  # sealed at rest

    destroyed = sealed.writer.run_now(
        erase_participant(sealed.ledger, ACCOUNT, COMMENTER, by="test", now=NOW)
    )

    assert destroyed == 1
    assert comment_texts(sealed) == [None]


@pytest.mark.sqlite
def test_a_deleted_comment_loses_its_text(sealed: Services) -> None:
    ingest(sealed, comment_body("c1", "Price please"))
    ingest(sealed, comment_body("c2", "Nice!"))
    removal = json.loads(comment_body("c1", ""))
    removal["entry"][0]["changes"][0]["value"] = {
        "id": "c1",
        "media": {"id": POST},
        "verb": "remove",
    }

    report = ingest(sealed, json.dumps(removal).encode())

    assert report.comments == 1
    assert comment_texts(sealed) == [None, "Nice!"]


def test_handover_items_in_messaging_and_as_changes_are_conversation_events(
    services: Services,
) -> None:
    def item(kind: str, at: int, **control: str) -> dict[str, Any]:
        return {
            "sender": {"id": COMMENTER},
            "recipient": {"id": ACCOUNT},
            "timestamp": at,
            kind: control,
        }

    body = {
        "object": "instagram",
        "entry": [
            {
                "id": ACCOUNT,
                "time": NOW,
                "messaging": [item("take_thread_control", NOW, previous_owner_app_id="1")],
                "changes": [
                    {
                        "field": "messaging_handover",
                        "value": item("release_thread_control", NOW + 1, new_owner_app_id="1"),
                    }
                ],
            }
        ],
    }
    raw = json.dumps(body).encode()

    first = ingest(services, raw)
    again = ingest(services, raw)

    assert (first.recorded, again.duplicates, first.test_events) == (2, 2, 0)
    conversation = services.ledger.find(conversation_id(ACCOUNT, COMMENTER))
    assert isinstance(conversation, Conversation)
    assert conversation.thread_owner == "primary"
    assert conversation.owned_by_another_app(primary_receiver=True) is False
    assert conversation.owned_by_another_app(primary_receiver=False) is True


@pytest.mark.sqlite
def test_the_private_and_public_replies_are_sealed_like_any_reply_of_ours(
    sealed: Services, clock: MovableClock
) -> None:
    import msgspec

    sealed.writer.run_now(
        sealed.rules.add(
            ACCOUNT,
            msgspec.convert(
                {
                    "name": "price",
                    "triggers": [{"type": "comment", "value": "price"}],
                    "reply": "Hi {username}, it is 20 EUR",
                    "public_reply": "Sent you a DM, {username}",
                },
                RuleDefinition,
            ),
            by="test",
        )
    )
    clock.stop(NOW + 1000)
    ingest(sealed, comment_body("c1", "Price please"))

    assert decide(sealed, clock, "c1") == "queued"

    stored = sealed.ledger.recorder.select_notifications(start=1, limit=100)
    raw = b"".join(n.state for n in stored)
    assert b"Hi bob, it is 20 EUR" not in raw  # the rule's template is the rule's
    assert b"Sent you a DM, bob" not in raw
    conversation = sealed.ledger.find(conversation_id(ACCOUNT, COMMENTER))
    assert conversation is not None
    [queued] = [
        e
        for e in sealed.ledger.events.get(conversation.id)
        if isinstance(e, Conversation.ReplyQueued)
    ]
    sealed.ledger.open_content([queued])
    assert (queued.text, queued.public_reply) == ("Hi bob, it is 20 EUR", "Sent you a DM, bob")
    assert queued.comment is not None
    assert queued.comment["comment_id"] == "c1"


@pytest.mark.sqlite
def test_a_much_commented_media_loads_from_its_snapshot(sealed: Services) -> None:
    body = json.loads(comment_body("c0", "hi"))
    template = body["entry"][0]["changes"][0]
    body["entry"][0]["changes"] = [
        {**template, "value": {**template["value"], "id": f"c{i}", "text": f"hi {i}"}}
        for i in range(501)
    ]
    ingest(sealed, json.dumps(body).encode())
    snapshots = sealed.ledger.snapshots
    assert snapshots is not None

    [snapshot] = list(snapshots.get(media_id(ACCOUNT, POST)))
    media = sealed.ledger.find(media_id(ACCOUNT, POST))

    assert snapshot.originator_version == 502
    assert isinstance(media, Media)
    assert len(media.comments) == 501


@pytest.mark.sqlite
async def test_retention_destroys_the_comments_of_people_who_never_wrote(
    sealed: Services, clock: MovableClock
) -> None:
    ingest(sealed, comment_body("c1", "Price please"))
    clock.advance(31 * DAY_MS)

    sealed.writer.start()
    try:
        destroyed = await sealed.retention.expire_account(ACCOUNT, 30)
    finally:
        sealed.writer.stop()

    assert destroyed == 1
    assert comment_texts(sealed) == [None]
