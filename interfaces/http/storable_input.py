"""Refuses an API request body that holds what dmledger cannot store faithfully, or that
nests too deep to parse safely.

One check for every JSON body of the REST API, before any handler sees it: a NUL
character or an integer outside 64 bits in any field is a 422 naming the field (see
`application.storable`). A CRM can correct its input; a stored event that a read model
cannot hold would stop that read model. Meta's webhooks are checked by the ingest itself,
which normalises what a person wrote instead of refusing it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_422_UNPROCESSABLE_ENTITY

from application.json_nesting import MAX_DEPTH, nests_deeper_than
from application.storable import unstorable
from interfaces.http.problems import problem

_WRITES = frozenset({"POST", "PUT", "PATCH"})
_OWN_CHECKS = ("/webhooks/",)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


async def refuse_unstorable_json(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """A `before_request` hook: a 422 problem for an unstorable body, else None."""
    if request.method not in _WRITES:
        return None
    scope = request.scope
    # `request.url.path`, without building a URL (and parsing its query) for every write.
    if (scope.get("root_path", "") + scope["path"]).startswith(_OWN_CHECKS):
        return None
    if request.headers.get("content-type", "").startswith(_FORMS):
        return None  # the console's forms: fields of text, not JSON
    body = await request.body()
    if not body:
        return None
    if nests_deeper_than(body, MAX_DEPTH):
        # Before any parser sees it: msgspec, like every JSON parser, recurses.
        return problem(
            HTTP_400_BAD_REQUEST,
            "Bad Request",
            f"the body is nested more than {MAX_DEPTH} levels deep",
            "malformed-body",
        )
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None  # not JSON: the handler's own decoding says so
    found = unstorable(value)
    if found is None:
        return None
    field, reason = found
    return problem(
        HTTP_422_UNPROCESSABLE_ENTITY,
        "Unprocessable Content",
        f"{field or 'the body'} {reason}",
        "invalid-input",
        field=field or None,
    )
