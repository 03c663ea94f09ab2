"""The console's routes under `/console`, with what they depend on and how errors look there."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from application.errors import (
    ApplicationError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from interfaces.composition import Services, secret_keys
from interfaces.console.access import NotSignedIn, provide_console_account, provide_viewer
from interfaces.console.accounts import AccountPages, start
from interfaces.console.audit import AuditPages
from interfaces.console.conversations import ConversationPages
from interfaces.console.deliveries import DeliveryPages
from interfaces.console.live import Announcements
from interfaces.console.pages import STATIC, page
from interfaces.console.rules import RulePages
from interfaces.console.session import SessionCodec
from interfaces.console.signin import sign_in, sign_in_page, sign_out
from interfaces.console.verification import Verifications

_STATUS: dict[type[ApplicationError], int] = {
    NotFound: 404,
    Forbidden: 403,
    InvalidInput: 422,
    Conflict: 409,
    StorageUnavailable: 503,
}


def console_router(services: Services) -> Router:
    """Every route of the console, on the services the REST API uses."""
    codec = SessionCodec(secret_keys(services.settings, announce=lambda _: None)[0])
    announcements = Announcements(services.read_models)
    verifications = Verifications(services.ledger, services.clock)
    return Router(
        path="/console",
        route_handlers=[
            start,
            sign_in_page,
            sign_in,
            sign_out,
            AccountPages,
            ConversationPages,
            RulePages,
            AuditPages,
            DeliveryPages,
            create_static_files_router(path="/static", directories=[STATIC]),
        ],
        dependencies={
            "session_codec": Provide(lambda: codec, use_cache=True, sync_to_thread=False),
            "announcements": Provide(lambda: announcements, use_cache=True, sync_to_thread=False),
            "verifications": Provide(lambda: verifications, use_cache=True, sync_to_thread=False),
            "dispatcher": Provide(
                lambda: services.dispatcher, use_cache=True, sync_to_thread=False
            ),
            "viewer": Provide(provide_viewer),
            "console_account": Provide(provide_console_account),
        },
        exception_handlers={
            NotSignedIn: _sign_in_again,
            ApplicationError: _error_page,
            HTTPException: _error_page,
        },
        include_in_schema=False,
    )


def _sign_in_again(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    if request.headers.get("hx-request"):
        return Response("", status_code=401, headers={"HX-Redirect": "/console/login"})
    return Redirect("/console/login", status_code=303)


def _error_page(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    if isinstance(error, ApplicationError):
        status = next((s for cls, s in _STATUS.items() if isinstance(error, cls)), 400)
        detail = error.detail
    elif isinstance(error, HTTPException):
        status = error.status_code
        detail = "there is no such page" if isinstance(error, NotFoundException) else error.detail
    else:
        status, detail = 500, "the console failed to show this page"
    return page("error.html", status_code=status, viewer=None, detail=detail, status=status)
