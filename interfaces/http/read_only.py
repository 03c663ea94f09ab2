"""Auditor keys are read-only: every request that could change something is refused with 403.

Checked for every route by the app's one `before_request` hook (`request_checks.py`), so
that an endpoint added later cannot forget it. It looks only at the method: GET, HEAD
and OPTIONS pass; anything else with an auditor key gets 403 before the handler, its
dependencies or its body are looked at.
"""

# Litestar reads hook annotations at run time: no `from __future__ import annotations`.

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request

from application.api_keys import ApiKeys
from application.errors import Forbidden, Unauthenticated
from domain.api_key import Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def auditors_read_only(api_keys: ApiKeys) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """The check that refuses auditor keys on every unsafe method (raises `Forbidden`)."""

    async def refuse_auditors(request: Request[Any, Any, Any]) -> None:
        if request.scope["method"] in SAFE_METHODS:
            return
        authorization = request.headers.get("authorization")
        if not authorization:
            return
        try:
            principal = await asyncio.to_thread(api_keys.authenticate, authorization)
        except Unauthenticated:
            return  # the endpoint answers 401 itself
        if principal.role == Role.AUDITOR:
            raise Forbidden("an auditor key is read-only: it cannot send or change anything")

    return refuse_auditors
