"""Who is looking at the console, which accounts they may see, and what they may do there."""

# Litestar reads provider annotations at run time: no `from __future__ import annotations`.

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.di import NamedDependency
from litestar.params import FromPath

from application.api_keys import ApiKeys, Principal
from application.errors import ApplicationError, Forbidden, NotFound, Unauthenticated
from application.ledger import Ledger
from domain.api_key import Role
from interfaces.console.session import COOKIE, SessionCodec, same_token

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class NotSignedIn(ApplicationError):
    """No session, an expired or forged one, or one whose key was revoked: sign in again."""


@dataclass(frozen=True)
class Viewer:
    """The person at the console: their key's principal and their session's CSRF token."""

    principal: Principal
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.principal.role == Role.ADMIN

    def may_act(self, ig_account_id: str) -> bool:
        """Whether forms that change this account are offered (auditors see none)."""
        return self.principal.may_act(ig_account_id)


async def provide_viewer(
    request: Request[Any, Any, Any],
    session_codec: NamedDependency[SessionCodec],
    api_keys: NamedDependency[ApiKeys],
) -> Viewer:
    """The signed-in person; `NotSignedIn` sends them to the sign-in page.

    Requests that could change something must come from the console's own pages: the
    `Origin` (when the browser sends one) must be this host, and the form or the
    `X-CSRF-Token` header must carry the session's token.
    """
    session = session_codec.open(request.cookies.get(COOKIE))
    if session is None:
        raise NotSignedIn("sign in with an API key")
    try:
        principal = await asyncio.to_thread(api_keys.authenticate, f"Bearer {session.api_key}")
    except Unauthenticated:
        raise NotSignedIn("this API key is no longer valid: sign in again") from None
    if request.method in UNSAFE_METHODS:
        from_here(request)
        given = request.headers.get("x-csrf-token")
        if given is None:
            given = (await request.form()).get("csrf_token")
        if not same_token(session.csrf, given):
            raise Forbidden("this form is out of date or was not sent from the console: reload")
    return Viewer(principal, session.csrf)


def from_here(request: Request[Any, Any, Any]) -> None:
    """`Forbidden` unless the browser says the form came from a page of this host (or says
    nothing): a form on another site cannot post here."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("this form was not sent from the console")


async def provide_console_account(
    account_id: FromPath[str], viewer: NamedDependency[Viewer], ledger: NamedDependency[Ledger]
) -> str:
    """The path's account, if the viewer may read it (404 otherwise, as in the API)."""
    if not viewer.principal.may_read(account_id):
        raise NotFound(f"there is no Instagram account {account_id}")
    if await asyncio.to_thread(ledger.account, account_id) is None:
        raise NotFound(f"there is no Instagram account {account_id}")
    return account_id


def acting(viewer: Viewer, account: str) -> str:
    """The actor recorded on events the viewer causes; `Forbidden` if they may not act."""
    if not viewer.may_act(account):
        raise Forbidden("this API key may read this account but not change it")
    return f"api-key:{viewer.principal.key_id}"
