"""Each HTTP request's id (`X-Request-ID`), and the account and conversation of its path,
for the log (`application/log_context.py`) and for problem+json bodies.

A client's `X-Request-ID` is kept when it is a sane token (1 to 128 letters, digits and
`.`, `_`, `:`, `-`), so a caller can follow its request through our log; otherwise a new
id is made. Every response carries the id back. This wraps Litestar's whole handler, so
requests no route matches (404, 405) get an id too.
"""

from __future__ import annotations

import os
import re
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from application import log_context

HEADER = b"x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ACCOUNT = re.compile(r"/accounts/([0-9]{1,32})(?:/|$)")
_CONVERSATION = re.compile(r"/conversations/([0-9a-fA-F-]{36})(?:/|$)")


class RequestContext:
    """ASGI middleware: sets the request's ids for its duration, echoes `X-Request-ID`."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        request_id = _request_id(scope)
        path = scope.get("path", "")
        # Most paths (every webhook's) name neither: no search for them.
        account = _ACCOUNT.search(path) if "/accounts/" in path else None
        conversation = _CONVERSATION.search(path) if "/conversations/" in path else None
        request_token = log_context.request_id.set(request_id)
        account_token = log_context.account_id.set(account and account[1])
        conversation_token = log_context.conversation_id.set(conversation and conversation[1])
        echoed = (HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers") or []
                    if name.lower() != HEADER
                ]
                headers.append(echoed)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            log_context.conversation_id.reset(conversation_token)
            log_context.account_id.reset(account_token)
            log_context.request_id.reset(request_token)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name.lower() == HEADER:
            given: Any = value.decode("latin-1")
            if _SANE.fullmatch(given):
                return str(given)
            break
    return new_request_id()


def new_request_id() -> str:
    """A random (version 4) UUID in hex, as `uuid.uuid4().hex` makes it in a fifth of the
    time (no `UUID` object): one for every request that brings none."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()
