"""Signing in to the console with an API key, and out again."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Any

from litestar import Request, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from application.api_keys import ApiKeys
from application.errors import Unauthenticated
from interfaces.console.access import Viewer, from_here
from interfaces.console.pages import page
from interfaces.console.session import COOKIE, LIFETIME_SECONDS, SessionCodec


def _cookie(request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path="/console",
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@get("/login")
async def sign_in_page() -> Template:
    """The sign-in form."""
    return page("login.html", viewer=None)


@post("/login")
async def sign_in(
    request: Request[Any, Any, Any],
    session_codec: NamedDependency[SessionCodec],
    api_keys: NamedDependency[ApiKeys],
) -> Redirect | Template:
    """Check the key, then keep it in the session cookie."""
    from_here(request)
    api_key = str((await request.form()).get("api_key") or "").strip()
    try:
        await asyncio.to_thread(api_keys.authenticate, f"Bearer {api_key}")
    except Unauthenticated:
        return page("login.html", status_code=401, viewer=None, error="This API key is not valid.")
    _, value = session_codec.new(api_key)
    return Redirect(
        "/console", status_code=303, cookies=[_cookie(request, value, LIFETIME_SECONDS)]
    )


@post("/logout")
async def sign_out(request: Request[Any, Any, Any], viewer: NamedDependency[Viewer]) -> Redirect:
    """Forget the session (its form carries the CSRF token, like every other)."""
    return Redirect("/console/login", status_code=303, cookies=[_cookie(request, "", 0)])
