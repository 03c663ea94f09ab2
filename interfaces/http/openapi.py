"""What every endpoint documents about its errors."""

from __future__ import annotations

from http import HTTPStatus

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


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for these error statuses, each an RFC 9457 problem."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=f"{HTTPStatus(status).phrase}: {_WHEN[status]}",
            media_type="application/problem+json",
        )
        for status in statuses
    }
