"""One mapping from errors to RFC 9457 problem+json responses, for every route."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import eventsourcing.persistence
import psycopg
import sqlalchemy.exc
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from application import log_context
from application.errors import (
    AccountAlreadyRegistered,
    AccountNotFound,
    ApplicationError,
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidSignature,
    MalformedWebhook,
    NotFound,
    StorageUnavailable,
    Unauthenticated,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_STATUS: dict[type[ApplicationError], tuple[int, str]] = {
    MalformedWebhook: (HTTP_400_BAD_REQUEST, "malformed-webhook"),
    InvalidSignature: (HTTP_401_UNAUTHORIZED, "invalid-signature"),
    AccountNotFound: (HTTP_404_NOT_FOUND, "not-found"),
    NotFound: (HTTP_404_NOT_FOUND, "not-found"),
    Unauthenticated: (HTTP_401_UNAUTHORIZED, "unauthenticated"),
    Forbidden: (HTTP_403_FORBIDDEN, "forbidden"),
    AccountAlreadyRegistered: (HTTP_409_CONFLICT, "conflict"),
    Conflict: (HTTP_409_CONFLICT, "conflict"),
    InvalidInput: (HTTP_422_UNPROCESSABLE_ENTITY, "invalid-input"),
    StorageUnavailable: (HTTP_503_SERVICE_UNAVAILABLE, "storage-unavailable"),
}


def problem(
    status: int,
    title: str,
    detail: str,
    kind: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    """A problem+json response, with the request's id (`X-Request-ID`) when it has one,
    and `headers` (a 405's `Allow`, say)."""
    body = {"type": f"https://dmledger.dev/problems/{kind}", "title": title, "status": status}
    body["detail"] = detail
    body.update(extra)
    if (request_id := log_context.request_id.get()) is not None:
        body["request_id"] = request_id
    answered = dict(headers or {})
    if status == HTTP_503_SERVICE_UNAVAILABLE:
        answered["Retry-After"] = "5"
    if kind == "unauthenticated":
        answered["WWW-Authenticate"] = 'Bearer realm="dmledger"'
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=answered or None)


def _application_error(_: Request[Any, Any, Any], error: ApplicationError) -> Response[Any]:
    status, kind = HTTP_500_INTERNAL_SERVER_ERROR, "internal-error"
    for cls in type(error).__mro__:
        if cls in _STATUS:
            status, kind = _STATUS[cls]
            break
    extra: dict[str, Any] = {"field": error.field} if isinstance(error, InvalidInput) else {}
    return problem(status, _title(status), error.detail, kind, **extra)


def _http_error(_: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    if isinstance(error, ValidationException):
        return _invalid_parameters(error)
    # Litestar's own headers of the answer: a 405's `Allow` (RFC 9110 15.5.6).
    headers = {str(k): str(v) for k, v in (error.headers or {}).items()}
    return problem(
        error.status_code,
        _title(error.status_code),
        str(error.detail),
        "http-error",
        headers=headers,
    )


def _invalid_parameters(error: ValidationException) -> Response[Any]:
    """Litestar's validation errors, as a 422 that names the field at fault."""
    errors = error.extra if isinstance(error.extra, list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    field = first.get("key") or None
    message = first.get("message") or str(error.detail)
    detail = f"{field}: {message}" if field else message
    return problem(
        HTTP_422_UNPROCESSABLE_ENTITY,
        _title(HTTP_422_UNPROCESSABLE_ENTITY),
        detail,
        "invalid-input",
        field=field,
        errors=errors,
    )


def _storage_away(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """The database did not answer: nothing was changed, and the request may be made again."""
    log.warning("a request found the database away: %s", type(error).__name__)
    return problem(
        HTTP_503_SERVICE_UNAVAILABLE,
        _title(HTTP_503_SERVICE_UNAVAILABLE),
        "the database is unavailable; nothing was changed, try again",
        "storage-unavailable",
    )


STORAGE_AWAY: tuple[type[Exception], ...] = (
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
"""What the event store's and the read models' drivers raise when the database is away
(connections refused, cut, or the pool empty): a 503, like `StorageUnavailable`."""


def _unexpected(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("unexpected error", exc_info=error)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        _title(HTTP_500_INTERNAL_SERVER_ERROR),
        "dmledger failed to handle this request; the error is in its log",
        "internal-error",
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


exception_handlers: dict[Any, Any] = {
    ApplicationError: _application_error,
    HTTPException: _http_error,
    **dict.fromkeys(STORAGE_AWAY, _storage_away),
    Exception: _unexpected,
}

__all__ = ["PROBLEM_JSON", "MediaType", "exception_handlers", "problem"]
