"""A CRM developer finds every notification and its payload in `/schema/openapi.json`."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from application.crm_endpoints import EVENT_TYPES
from projections.outbox.payloads import PAYLOADS

Client = AsyncTestClient[Any]


async def test_every_crm_notification_and_its_payload_is_in_the_openapi_document(
    client: Client,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    webhooks = document["webhooks"]
    assert set(webhooks) == set(EVENT_TYPES) == set(PAYLOADS)
    received = webhooks["message.received"]["post"]
    body = received["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["type"]["const"] == "message.received"
    data = body["properties"]["data"]
    assert {"account_id", "conversation_id", "sequence", "mid", "text", "attachments"} <= set(
        data["properties"]
    )
    assert "account_id" in data["required"]
    # the participant's schema is inline: the document stands alone
    [participant] = [s for s in data["properties"]["participant"]["anyOf"] if "properties" in s]
    assert set(participant["properties"]) == {"id", "username", "name"}
    assert participant["required"] == ["id"]
    assert "webhook-signature" in received["description"]
