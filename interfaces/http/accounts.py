"""`/api/v1/accounts`: registering and managing Instagram accounts (admin keys)."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from msgspec import Meta

from application.accounts import Accounts, AccountSummary, SettingsChange
from application.api_keys import Principal
from application.errors import Forbidden, NotFound
from application.ledger_writer import LedgerWriter
from application.ports import Clock
from domain.account import AccountStatus
from domain.api_key import Role
from interfaces.http.openapi import problems


class RegisterAccount(msgspec.Struct, forbid_unknown_fields=True):
    """Register an Instagram professional account. The credentials are encrypted before
    they are stored and are never shown again."""

    ig_account_id: Annotated[str, Meta(examples=["17841400000000001"])]
    username: Annotated[str, Meta(examples=["myshop"])]
    app_secret: Annotated[str, Meta(description="The Meta app secret that signs webhooks.")]
    access_token: Annotated[str, Meta(description="The Instagram access token (Send API).")]
    verify_token: Annotated[str, Meta(description="The webhook verify token set at Meta.")]


class ChangeAccount(msgspec.Struct, forbid_unknown_fields=True):
    """Change the profile and/or settings; what is left out stays."""

    username: str | None = None
    display_name: str | None = None
    settings: SettingsChange | None = None


class RotateCredentials(msgspec.Struct, forbid_unknown_fields=True):
    """New credentials; give one or more. Only their ciphertext is stored."""

    app_secret: str | None = None
    access_token: str | None = None
    verify_token: str | None = None


class SuspendAccount(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None


def _admin(principal: Principal) -> None:
    if principal.role != Role.ADMIN:
        raise Forbidden("managing accounts needs an admin key")


def _by(principal: Principal) -> str:
    return f"api-key:{principal.key_id}"


class AccountController(Controller):
    """The accounts dmledger serves."""

    path = "/api/v1/accounts"
    tags = ["accounts"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(status_code=HTTP_201_CREATED, responses=problems(400, 401, 403, 409, 422, 503))
    async def register_account(
        self,
        principal: NamedDependency[Principal],
        data: JSONBody[RegisterAccount],
        accounts: NamedDependency[Accounts],
        writer: NamedDependency[LedgerWriter],
    ) -> AccountSummary:
        """Register an account (admin)."""
        _admin(principal)
        command = accounts.register(
            ig_account_id=data.ig_account_id,
            username=data.username,
            app_secret=data.app_secret,
            access_token=data.access_token,
            verify_token=data.verify_token,
            by=_by(principal),
        )
        return await writer.run(command)

    @get(responses=problems(401, 403))
    async def list_accounts(
        self, principal: NamedDependency[Principal], accounts: NamedDependency[Accounts]
    ) -> list[AccountSummary]:
        """List every account (admin)."""
        _admin(principal)
        return await asyncio.to_thread(accounts.list)

    @get("/{account_id:str}", responses=problems(401, 404))
    async def get_account(
        self,
        account: NamedDependency[str],
        accounts: NamedDependency[Accounts],
    ) -> AccountSummary:
        """Show an account: its settings, and whether each credential is set (never its value)."""
        return await asyncio.to_thread(accounts.get, account)

    @patch("/{account_id:str}", responses=problems(400, 401, 403, 404, 422, 503))
    async def change_account(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        data: JSONBody[ChangeAccount],
        accounts: NamedDependency[Accounts],
        writer: NamedDependency[LedgerWriter],
    ) -> AccountSummary:
        """Change the username, display name or settings (auto-reply, fallback reply,
        time zone, business hours, automatic resume after a handover) (admin)."""
        _admin(principal)
        command = accounts.update(
            account,
            username=data.username,
            display_name=data.display_name,
            settings=data.settings,
            by=_by(principal),
        )
        return await writer.run(command)

    @post(
        "/{account_id:str}/suspend", status_code=HTTP_200_OK, responses=problems(401, 403, 404, 422)
    )
    async def suspend_account(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
        writer: NamedDependency[LedgerWriter],
        data: JSONBody[SuspendAccount | None] = None,
    ) -> AccountSummary:
        """Suspend: webhooks are still stored, no automation acts (admin)."""
        _admin(principal)
        reason = data.reason if data is not None else None
        return await writer.run(
            accounts.set_status(account, AccountStatus.SUSPENDED, by=_by(principal), reason=reason)
        )

    @post(
        "/{account_id:str}/reactivate", status_code=HTTP_200_OK, responses=problems(401, 403, 404)
    )
    async def reactivate_account(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
        writer: NamedDependency[LedgerWriter],
    ) -> AccountSummary:
        """Serve a suspended or deactivated account fully again (admin)."""
        _admin(principal)
        return await writer.run(
            accounts.set_status(account, AccountStatus.ACTIVE, by=_by(principal))
        )

    @delete("/{account_id:str}", status_code=HTTP_200_OK, responses=problems(401, 403, 404))
    async def deactivate_account(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        accounts: NamedDependency[Accounts],
        writer: NamedDependency[LedgerWriter],
    ) -> AccountSummary:
        """Deactivate: the history is kept, webhooks for it are ignored (admin)."""
        _admin(principal)
        return await writer.run(
            accounts.set_status(account, AccountStatus.DEACTIVATED, by=_by(principal))
        )

    @post(
        "/{account_id:str}/credentials",
        status_code=HTTP_200_OK,
        responses=problems(400, 401, 403, 404, 422),
    )
    async def rotate_credentials(
        self,
        account: NamedDependency[str],
        principal: NamedDependency[Principal],
        data: JSONBody[RotateCredentials],
        accounts: NamedDependency[Accounts],
        writer: NamedDependency[LedgerWriter],
        clock: NamedDependency[Clock],
    ) -> AccountSummary:
        """Rotate the access token, app secret and/or verify token (admin)."""
        _admin(principal)
        command = accounts.rotate_credentials(
            account,
            msgspec.structs.asdict(data),
            at=clock.now_ms(),
            by=_by(principal),
        )
        return await writer.run(command)


__all__ = ["AccountController", "NotFound"]
