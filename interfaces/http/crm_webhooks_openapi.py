"""The OpenAPI document's `webhooks` section: every CRM notification and its payload.

Generated from the Structs the outbox builds each notification's data from
(`projections.outbox.payloads`), so a CRM developer can generate a client from
`/schema/openapi.json` alone, and the document cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
)

from projections.outbox.payloads import PAYLOADS

HEADERS = (
    "Signed as Standard Webhooks say: `webhook-id` (stable: a redelivery has the same), "
    "`webhook-timestamp`, `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of "
    "`id.timestamp.body` with the endpoint's `whsec_` secret)."
)


def crm_webhooks() -> dict[str, PathItem | Reference]:
    """The `webhooks` of the document, each with its payload's schema inline (a Struct
    nested in the data, such as its `participant`, inline too: each schema stands alone)."""
    webhooks: dict[str, PathItem | Reference] = {}
    for kind, struct in PAYLOADS.items():
        envelope = Schema(
            type=OpenAPIType.OBJECT,
            required=["type", "timestamp", "data"],
            properties={
                "type": Schema(type=OpenAPIType.STRING, const=kind),
                "timestamp": Schema(type=OpenAPIType.STRING, format=None, description="RFC 3339"),
                "data": _standalone(struct),
            },
        )
        webhooks[kind] = PathItem(
            post=Operation(
                summary=(struct.__doc__ or kind).strip().split("\n")[0],
                description=HEADERS,
                tags=["crm webhooks"],
                request_body=RequestBody(
                    required=True,
                    content={"application/json": OpenAPIMediaType(schema=envelope)},
                ),
                responses={
                    "2XX": OpenAPIResponse(description="Received: not sent again."),
                    "410": OpenAPIResponse(description="Gone: the endpoint is disabled."),
                },
            )
        )
    return webhooks


def _standalone(struct: type[Any]) -> Schema | Reference:
    """The struct's JSON Schema with every `$ref` (msgspec's, into `$defs`) inlined."""
    found = msgspec.json.schema(struct)
    defined: dict[str, Any] = found.get("$defs", {})
    return _schema(defined.get(struct.__name__, found), defined)


def _schema(value: dict[str, Any], defined: dict[str, Any]) -> Schema | Reference:
    """A JSON Schema (as msgspec writes it) as Litestar's OpenAPI objects."""
    if "$ref" in value:
        name = value["$ref"].rsplit("/", 1)[-1]
        if name in defined:
            return _schema(defined[name], defined)
        return Reference(ref=value["$ref"])
    kinds = value.get("type")
    return Schema(
        type=OpenAPIType(kinds) if isinstance(kinds, str) else None,
        title=value.get("title"),
        description=value.get("description"),
        properties={k: _schema(v, defined) for k, v in value["properties"].items()}
        if "properties" in value
        else None,
        required=value.get("required"),
        items=_schema(value["items"], defined) if "items" in value else None,
        any_of=[_schema(v, defined) for v in value["anyOf"]] if "anyOf" in value else None,
        additional_properties=value.get("additionalProperties"),
        format=value.get("format"),
        default=value.get("default"),
    )
