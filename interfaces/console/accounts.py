"""The console's start page and the accounts: which the viewer may see, and (admins) their state."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from application.accounts import Accounts
from application.errors import Forbidden, NotFound
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from application.ports import Clock
from domain.account import AccountStatus
from interfaces.console.access import Viewer
from interfaces.console.pages import page

CREDENTIALS = ("access_token", "app_secret", "verify_token")


@get("/")
async def start(viewer: NamedDependency[Viewer]) -> Redirect:
    """An account's key goes to its conversations; others choose an account."""
    own = viewer.principal.ig_account_id
    if own is not None:
        return Redirect(f"/console/accounts/{own}/conversations", status_code=303)
    return Redirect("/console/accounts", status_code=303)


class AccountPages(Controller):
    """The accounts this deployment serves."""

    path = "/accounts"

    @get()
    async def list_accounts(
        self,
        viewer: NamedDependency[Viewer],
        accounts: NamedDependency[Accounts],
        ledger: NamedDependency[Ledger],
        clock: NamedDependency[Clock],
    ) -> Template:
        """Every account the viewer may read, with the state of its sends."""
        listed = await asyncio.to_thread(accounts.list)
        shown = [a for a in listed if viewer.principal.may_read(a.ig_account_id)]
        health = await asyncio.to_thread(_health, ledger, [a.ig_account_id for a in shown])
        return page(
            "accounts.html",
            viewer=viewer,
            account=None,
            accounts=shown,
            health=health,
            now=clock.now_ms(),
        )

    @post("/{account_id:str}/{action:str}")
    async def act(
        self,
        request: Request[Any, Any, Any],
        viewer: NamedDependency[Viewer],
        account_id: FromPath[str],
        action: FromPath[str],
        accounts: NamedDependency[Accounts],
        writer: NamedDependency[LedgerWriter],
        clock: NamedDependency[Clock],
    ) -> Redirect:
        """Suspend, reactivate, or rotate credentials (admin keys only)."""
        if not viewer.is_admin:
            raise Forbidden("managing accounts needs an admin key")
        by = f"api-key:{viewer.principal.key_id}"
        if action in ("suspend", "reactivate"):
            status = AccountStatus.SUSPENDED if action == "suspend" else AccountStatus.ACTIVE
            await writer.run(accounts.set_status(account_id, status, by=by))
        elif action == "credentials":
            form = await request.form()
            given = {name: str(form.get(name) or "").strip() or None for name in CREDENTIALS}
            at = clock.now_ms()
            await writer.run(accounts.rotate_credentials(account_id, given, at=at, by=by))
        else:
            raise NotFound(f"there is no action {action!r}")
        return Redirect("/console/accounts", status_code=303)


def _health(ledger: Ledger, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Whether Meta rejected each account's token, and until when its sends are paused."""
    found: dict[str, dict[str, Any]] = {}
    for ig_account_id in ids:
        account = ledger.account(ig_account_id)
        if account is not None:
            found[ig_account_id] = {
                "token_rejected": bool(getattr(account, "token_rejected", False)),
                "sends_paused_until": getattr(account, "sends_paused_until", None),
            }
    return found
