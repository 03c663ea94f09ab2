"""Reading Meta's bodies: routing to account and participant, and decoding errors."""

from __future__ import annotations

import pytest

from application.errors import MalformedWebhook
from application.instagram_webhook import read_webhook, route_items
from tests.conftest import ACCOUNT, PARTICIPANT, meta_body


def test_inbound_items_belong_to_their_recipient_account() -> None:
    routed, _ = route_items(read_webhook(meta_body("text")))

    assert [(r.ig_account_id, r.participant_id) for r in routed] == [(ACCOUNT, PARTICIPANT)]


def test_echoes_belong_to_their_sender_account() -> None:
    routed, _ = route_items(read_webhook(meta_body("echo")))

    assert [(r.ig_account_id, r.participant_id) for r in routed] == [(ACCOUNT, PARTICIPANT)]


def test_routing_does_not_rely_on_entry_id() -> None:
    # Some of Meta's own examples put a scoped user id in entry[].id.
    body = meta_body("text").replace(
        f'"id": "{ACCOUNT}", "messaging"'.encode(), b'"id": "1", "messaging"'
    )

    routed, _ = route_items(read_webhook(body))

    assert routed[0].ig_account_id == ACCOUNT


def test_standby_items_are_routed_and_marked() -> None:
    routed, _ = route_items(read_webhook(meta_body("standby")))

    assert [r.standby for r in routed] == [True]


def test_items_without_sender_or_recipient_are_unroutable() -> None:
    body = b'{"object":"instagram","entry":[{"id":"1","messaging":[{"timestamp":1}]}]}'

    routed, unroutable = route_items(read_webhook(body))

    assert (routed, unroutable) == ([], [{"timestamp": 1}])


def test_numeric_ids_are_read_as_strings() -> None:
    body = (
        b'{"object":"instagram","entry":[{"id":1,"messaging":[{"sender":{"id":55},'
        b'"recipient":{"id":178},"timestamp":1,"message":{"mid":"m","text":"t"}}]}]}'
    )

    routed, _ = route_items(read_webhook(body))

    assert (routed[0].ig_account_id, routed[0].participant_id) == ("178", "55")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"object": "whatsapp_business_account", "entry": []}', "expected an Instagram webhook"),
        (b'{"object": "instagram"}', "missing required field `entry`"),
        (b'{"object": "instagram", "entry": [{"messaging": {}}]}', "entry[0].messaging"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(MalformedWebhook) as raised:
        read_webhook(body)

    assert says in raised.value.detail
