"""What every endpoint documents about its errors."""

from __future__ import annotations

from http import HTTPStatus

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from interfaces.http.wire import Problem

_WHEN = {
    400: "The body is not what this endpoint takes.",
    401: "No API key, or one that is not valid.",
    403: "The API key may read this account but not change it.",
    404: "No such resource in an account this key may read.",
    409: "It conflicts with what is already stored.",
    413: "The body is larger than the limit.",
    422: "A parameter or field is invalid; `field` names it.",
    503: "Nothing could be stored; try again (see Retry-After).",
}


def problems(*statuses: int, **when: str) -> dict[int, ResponseSpec]:
    """OpenAPI responses for these error statuses, each an RFC 9457 problem; `when`
    (`when_401="..."`) says when one comes where the usual words do not fit."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=f"{HTTPStatus(status).phrase}: {when.get(f'when_{status}', _WHEN[status])}",
            media_type="application/problem+json",
        )
        for status in statuses
    }


MALFORMED = ResponseSpec(
    data_container=Problem,
    description="Bad Request: The request cannot be read (a malformed body or parameter).",
    media_type="application/problem+json",
)


def document_problems(app: Litestar) -> None:
    """Every route documents its 400 as the problem the API answers. Litestar adds its own
    400 to a route that takes a body or parameters (its `ValidationException`, as
    application/json), which the API never answers: its validation errors are answered as
    422 problems, a malformed body as a 400 problem (`interfaces.http.problems`). A route
    that documents its own 400 keeps it. Before the OpenAPI document is first built."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and 400 not in (handler.responses or {}):
                handler.responses = {400: MALFORMED, **(handler.responses or {})}
