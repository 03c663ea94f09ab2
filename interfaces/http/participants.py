"""`/api/v1/accounts/{account_id}/participants/{igsid}`: erasing a participant (admin keys)."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import time

import msgspec
from litestar import Controller, delete
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from application.api_keys import Principal
from application.erasure import erase_participant
from application.errors import Forbidden
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from domain.api_key import Role
from interfaces.http.openapi import problems


class ParticipantErased(msgspec.Struct):
    """What an erasure destroyed."""

    participant_id: str
    destroyed_keys: int
    """Data keys destroyed: one for each message, edit or postback of the conversation."""


class ParticipantController(Controller):
    """A participant's data, for the right to erasure."""

    path = "/api/v1/accounts/{account_id:str}/participants"
    tags = ["accounts"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @delete("/{igsid:str}", status_code=HTTP_200_OK, responses=problems(401, 403, 404))
    async def erase_participant(
        self,
        account: NamedDependency[str],
        igsid: FromPath[str],
        principal: NamedDependency[Principal],
        ledger: NamedDependency[Ledger],
        writer: NamedDependency[LedgerWriter],
    ) -> ParticipantErased:
        """Erase what this participant sent and was sent: its content is destroyed for good
        (its data keys), the conversation's ids and times stay; `ParticipantErased` records
        who asked (admin)."""
        if principal.role != Role.ADMIN:
            raise Forbidden("erasing a participant needs an admin key")
        command = erase_participant(
            ledger, account, igsid, by=f"api-key:{principal.key_id}", now=int(time.time() * 1000)
        )
        return ParticipantErased(participant_id=igsid, destroyed_keys=await writer.run(command))
