"""Webhooks as Meta posts them: bodies built from the recorded ones (`tests/fixtures/meta`),
delivered to `/webhooks/instagram` signed with the account's app secret."""

from __future__ import annotations

import json
import time
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import ACCOUNT, PARTICIPANT, meta_json, signed_headers

Client = AsyncTestClient[Any]

OTHER = "17841400000000002"
"""A second business account, beside the tests' `ACCOUNT`."""


def message(text: str, mid: str, *, at: int | None = None) -> bytes:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["timestamp"] = at if at is not None else int(time.time() * 1000)
    item["message"] = {"mid": mid, "text": text}
    return json.dumps(body).encode()


def from_participant(text: str, mid: str, participant: str) -> bytes:
    body = json.loads(message(text, mid))
    body["entry"][0]["messaging"][0]["sender"]["id"] = participant
    return json.dumps(body).encode()


def text_body(
    mid: str, *, sent_at: int, participant: str = PARTICIPANT, account: str = ACCOUNT
) -> bytes:
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["sender"]["id"] = participant
    item["recipient"]["id"] = account
    item["timestamp"] = sent_at
    item["message"] = {"mid": mid, "text": f"message {mid}"}
    return json.dumps(body).encode()


def echo(mid: str) -> bytes:
    body = meta_json("echo")
    body["entry"][0]["messaging"][0]["message"]["mid"] = mid
    return json.dumps(body).encode()


async def deliver(api: Client, *bodies: bytes) -> None:
    for body in bodies:
        response = await api.post("/webhooks/instagram", content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text
