"""`/api/v1/accounts/{account_id}/ice-breakers` and `/persistent-menu`: the account's entry
points, set by admin keys and pushed to Meta by the dispatcher."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio

from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from application.api_keys import Principal
from application.entry_points import (
    EntryPoints,
    IceBreakersView,
    PersistentMenuView,
    SetIceBreakers,
    SetPersistentMenu,
)
from application.errors import Forbidden
from application.ledger_writer import LedgerWriter
from domain.api_key import Role
from interfaces.http.openapi import problems


def _admin(principal: Principal) -> str:
    if principal.role != Role.ADMIN:
        raise Forbidden("changing an account's entry points needs an admin key")
    return f"api-key:{principal.key_id}"


class EntryPointController(Controller):
    """Ice breakers (up to 4 questions per locale) and the persistent menu (URL and
    postback items): set here, pushed to Meta's `messenger_profile` by the dispatcher; each
    answer says whether Meta took the current value (`push.status`) and its error if not."""

    path = "/api/v1/accounts/{account_id:str}"
    tags = ["entry points"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/ice-breakers", responses=problems(401, 404))
    async def get_ice_breakers(
        self, account: NamedDependency[str], entry_points: NamedDependency[EntryPoints]
    ) -> IceBreakersView:
        """The ice breakers and where they stand at Meta (none, pending, applied, failed)."""
        return await asyncio.to_thread(entry_points.ice_breakers, account)

    @put("/ice-breakers", responses=problems(400, 401, 403, 404, 422, 503))
    async def set_ice_breakers(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        data: JSONBody[SetIceBreakers],
        entry_points: NamedDependency[EntryPoints],
        writer: NamedDependency[LedgerWriter],
    ) -> IceBreakersView:
        """Replace the ice breakers (`IceBreakersChanged`; an equal value records nothing)
        (admin). A value Meta would refuse is a 422 naming the field."""
        by = _admin(principal)
        return await writer.run(entry_points.set_ice_breakers(account, data, by=by))

    @delete("/ice-breakers", status_code=HTTP_200_OK, responses=problems(401, 403, 404, 503))
    async def remove_ice_breakers(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        entry_points: NamedDependency[EntryPoints],
        writer: NamedDependency[LedgerWriter],
    ) -> IceBreakersView:
        """Remove the ice breakers (admin); the dispatcher deletes them at Meta."""
        by = _admin(principal)
        return await writer.run(entry_points.set_ice_breakers(account, None, by=by))

    @get("/persistent-menu", responses=problems(401, 404))
    async def get_persistent_menu(
        self, account: NamedDependency[str], entry_points: NamedDependency[EntryPoints]
    ) -> PersistentMenuView:
        """The persistent menu and where it stands at Meta (none, pending, applied, failed)."""
        return await asyncio.to_thread(entry_points.persistent_menu, account)

    @put("/persistent-menu", responses=problems(400, 401, 403, 404, 422, 503))
    async def set_persistent_menu(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        data: JSONBody[SetPersistentMenu],
        entry_points: NamedDependency[EntryPoints],
        writer: NamedDependency[LedgerWriter],
    ) -> PersistentMenuView:
        """Replace the persistent menu (`PersistentMenuChanged`; an equal value records
        nothing) (admin). A value Meta would refuse is a 422 naming the field."""
        by = _admin(principal)
        return await writer.run(entry_points.set_persistent_menu(account, data, by=by))

    @delete("/persistent-menu", status_code=HTTP_200_OK, responses=problems(401, 403, 404, 503))
    async def remove_persistent_menu(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        entry_points: NamedDependency[EntryPoints],
        writer: NamedDependency[LedgerWriter],
    ) -> PersistentMenuView:
        """Remove the persistent menu (admin); the dispatcher deletes it at Meta."""
        by = _admin(principal)
        return await writer.run(entry_points.set_persistent_menu(account, None, by=by))
