"""Who is calling the REST API, and which account they may see."""

# Litestar reads provider annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.params import FromPath

from application.api_keys import ApiKeys, Principal
from application.errors import Forbidden, NotFound
from application.ledger import Ledger


async def provide_principal(
    request: Request[Any, Any, Any], api_keys: NamedDependency[ApiKeys]
) -> Principal:
    """The caller, from `Authorization: Bearer <key>`; 401 otherwise."""
    return await asyncio.to_thread(api_keys.authenticate, request.headers.get("authorization"))


async def provide_readable_account(
    account_id: FromPath[str],
    principal: NamedDependency[Principal],
    ledger: NamedDependency[Ledger],
) -> str:
    """The path's account, if the caller may read it. 404, never 403, so that whether
    another account exists does not leak."""
    if not principal.may_read(account_id):
        raise NotFound(f"there is no Instagram account {account_id}")
    if await asyncio.to_thread(ledger.account, account_id) is None:
        raise NotFound(f"there is no Instagram account {account_id}")
    return account_id


async def provide_writable_account(
    account: NamedDependency[str], principal: NamedDependency[Principal]
) -> str:
    """The path's account, if the caller may also change it."""
    if not principal.may_act(account):
        raise Forbidden("this API key may read this account but not change it")
    return account
