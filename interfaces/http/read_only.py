"""Auditor keys are read-only: every request that could change something is refused with 403.

A guard on the whole app, so that an endpoint added later cannot forget it. It looks
only at the method: GET, HEAD and OPTIONS pass; anything else with an auditor key gets
403 before the handler, its dependencies or its body are looked at.
"""

# Litestar reads guard annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from application.api_keys import ApiKeys
from application.errors import Forbidden, Unauthenticated
from domain.api_key import Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def auditors_read_only(api_keys: ApiKeys) -> Guard:
    """The guard that refuses auditor keys on every unsafe method."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.scope.get("method", "GET") in SAFE_METHODS:
            return
        authorization = connection.headers.get("authorization")
        if not authorization:
            return
        try:
            principal = await asyncio.to_thread(api_keys.authenticate, authorization)
        except Unauthenticated:
            return  # the endpoint answers 401 itself
        if principal.role == Role.AUDITOR:
            raise Forbidden("an auditor key is read-only: it cannot send or change anything")

    return guard
