"""Pushing the accounts' ice breakers and persistent menus to Meta's `messenger_profile`.

The design, durable without a table of its own: each entry point on the `Account` aggregate
has a `version` (raised by every `IceBreakersChanged` / `PersistentMenuChanged`) and an
`applied_version` (raised by `EntryPointsApplied`). The dispatcher polls
(`push_due`, every `ENTRY_POINTS_CHECK_SECONDS` in `interfaces/dispatching.py`, and at once
after its own process changed an account): for every served account whose `version` is
ahead of `applied_version`, it pushes the current value (Meta sets the whole field; a
removed value is a DELETE of the field) and records what came of it:

- Meta answered `{"result": "success"}`: `EntryPointsApplied` (what was pushed);
- Meta refused: `EntryPointsFailed` (what was pushed, Meta's code and message, the attempt).
  A failure that may pass (no answer, a 5xx, Meta's transient, throttling or token codes)
  is pushed again after `RETRY_SCHEDULE_SECONDS` (in `application/entry_points.py`), timed
  from the stored failure, so the backoff survives a restart; any other waits for a new
  change. A refused token is also recorded on the account (`TokenRejected`, as a refused
  send records it): the account is skipped until new credentials clear it.

A process that dies between the push and its record pushes again after it restarts (the
versions still differ): harmless, as each push sets the whole value. Two dispatcher
processes may both push the same version: the first record wins, the second records
nothing. Accounts that are deactivated, or whose token Meta rejected, are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from application.delivery import RETRY_CODES, THROTTLE_CODES, TOKEN_CODES
from application.entry_points import next_attempt_at
from application.ledger import Ledger
from application.ledger_writer import Changes, Command, LedgerWriter
from application.ports import MessengerProfileApi, ProfileAnswer, SecretBox
from application.sending import token_rejected
from domain.account import ENTRY_POINTS, Account
from domain.identity import account_id

log = logging.getLogger(__name__)

_MAY_PASS = RETRY_CODES | THROTTLE_CODES | TOKEN_CODES
"""Meta's codes that say nothing is wrong with the value: pushed again later."""


class EntryPointPusher:
    """Pushes each changed entry point once, records the outcome, retries what may pass."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        writer: LedgerWriter,
        secrets: SecretBox,
        api: MessengerProfileApi | None,
        now: Callable[[], int],
    ) -> None:
        self._ledger = ledger
        self._writer = writer
        self._secrets = secrets
        self._api = api
        self._now = now

    async def push_due(self) -> int:
        """Push every entry point due now; the number pushed (applied or not)."""
        if self._api is None:
            return 0
        pushed = 0
        for account in await asyncio.to_thread(self._ledger.accounts):
            if not account.serves_webhooks or account.token_rejected:
                continue
            for name in ENTRY_POINTS:
                if not self._due(account, name):
                    continue
                try:
                    await self._push(self._api, account, name)
                except Exception:
                    # One account's trouble stops no other's; it is tried at the next poll.
                    log.exception("pushing %s of %s failed", name, account.ig_account_id)
                pushed += 1
        return pushed

    def _due(self, account: Account, name: str) -> bool:
        state = account.entry_point(name)
        if state["version"] <= state["applied_version"]:
            return False
        failure = state["failure"]
        if failure is None:
            return True
        due = next_attempt_at(failure)
        return due is not None and due <= self._now()

    async def _push(self, api: MessengerProfileApi, account: Account, name: str) -> None:
        state = account.entry_point(name)
        token = self._secrets.decrypt(account.access_token)
        body: dict[str, Any]
        if state["value"] is None:
            body = {"platform": "instagram", "fields": [name]}
            answer = await api.delete_messenger_profile(
                ig_account_id=account.ig_account_id, access_token=token, fields=[name]
            )
        else:
            body = {"platform": "instagram", name: state["value"]}
            answer = await api.set_messenger_profile(
                ig_account_id=account.ig_account_id, access_token=token, body=body
            )
        at = self._now()
        ig_id, version = account.ig_account_id, state["version"]
        if answer.applied:
            await self._writer.run(applied(ig_id, name, version, body, at))
            return
        log.warning(
            "Meta did not take %s of %s: %s",
            name,
            ig_id,
            answer.error.message if answer.error else f"HTTP {answer.status_code}",
        )
        await self._writer.run(failed(ig_id, name, version, body, answer, at))
        if answer.error is not None and answer.error.code in TOKEN_CODES:
            # As for a refused send: nothing more goes out with this token. The push waits
            # (retryable) and goes out once new credentials clear the rejection.
            await self._writer.run(token_rejected(ig_id, answer.error, at))


def applied(
    ig_account_id: str, name: str, version: int, pushed: dict[str, Any], at: int
) -> Command[bool]:
    def record(changes: Changes) -> bool:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            return False
        return account.record_entry_point_applied(
            entry_point=name, version=version, pushed=pushed, at=at
        )

    return record


def failed(
    ig_account_id: str,
    name: str,
    version: int,
    pushed: dict[str, Any],
    answer: ProfileAnswer,
    at: int,
) -> Command[bool]:
    error = answer.error
    retryable = (
        answer.status_code is None
        or answer.status_code >= 500
        or error is None
        or error.code in _MAY_PASS
    )
    if error is not None:
        message = error.message
    elif answer.status_code is None:
        message = "no answer from Meta"
    else:
        message = f"HTTP {answer.status_code}"

    def record(changes: Changes) -> bool:
        account = changes.get(account_id(ig_account_id), Account, fresh=True)
        if account is None:
            return False
        return account.record_entry_point_failed(
            entry_point=name,
            version=version,
            pushed=pushed,
            code=error.code if error else None,
            subcode=error.subcode if error else None,
            message=message[:1000],
            retryable=retryable,
            at=at,
        )

    return record
