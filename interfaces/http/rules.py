"""`/api/v1/accounts/{account_id}/rules`: the account's auto-reply rules."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from application.api_keys import Principal
from application.ledger_writer import LedgerWriter
from application.rule_management import Rule, Rules, RuleTest, RuleTestResult
from application.rules import RuleDefinition
from interfaces.http.openapi import problems


def _by(principal: Principal) -> str:
    return f"api-key:{principal.key_id}"


class RuleController(Controller):
    """Rules: which messages get which automated reply."""

    path = "/api/v1/accounts/{account_id:str}/rules"
    tags = ["rules"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get(responses=problems(401, 404))
    async def list_rules(
        self, account: NamedDependency[str], rules: NamedDependency[Rules]
    ) -> list[Rule]:
        """List the rules in the order they are tried (priority, then age)."""
        return await asyncio.to_thread(rules.list, account)

    @post(status_code=HTTP_201_CREATED, responses=problems(400, 401, 403, 404, 422, 503))
    async def add_rule(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        data: JSONBody[RuleDefinition],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> Rule:
        """Add a rule (`RuleAdded`). An unknown placeholder or a broken regular expression
        is a 422 naming the field."""
        return await writer.run(rules.add(writable_account, data, by=_by(principal)))

    @post("/test", status_code=HTTP_200_OK, responses=problems(400, 401, 404, 422))
    async def test_rules(
        self, account: NamedDependency[str], data: JSONBody[RuleTest], rules: NamedDependency[Rules]
    ) -> RuleTestResult:
        """Which rule would answer this message now, and its reply; nothing is stored."""
        return await asyncio.to_thread(rules.test, account, data)

    @get("/{rule_id:str}", responses=problems(401, 404))
    async def get_rule(
        self, account: NamedDependency[str], rule_id: FromPath[str], rules: NamedDependency[Rules]
    ) -> Rule:
        """Show a rule."""
        return await asyncio.to_thread(rules.get, account, rule_id)

    @put("/{rule_id:str}", responses=problems(400, 401, 403, 404, 422, 503))
    async def replace_rule(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        rule_id: FromPath[str],
        data: JSONBody[RuleDefinition],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> Rule:
        """Replace a rule (`RuleChanged`, its version goes up)."""
        return await writer.run(rules.replace(writable_account, rule_id, data, by=_by(principal)))

    @delete("/{rule_id:str}", status_code=HTTP_204_NO_CONTENT, responses=problems(401, 403, 404))
    async def remove_rule(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        rule_id: FromPath[str],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> None:
        """Remove a rule (`RuleRemoved`)."""
        await writer.run(rules.remove(writable_account, rule_id, by=_by(principal)))

    @post("/{rule_id:str}/enable", status_code=HTTP_200_OK, responses=problems(401, 403, 404))
    async def enable_rule(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        rule_id: FromPath[str],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> Rule:
        """Enable a rule (`RuleEnabled`)."""
        command = rules.switch(writable_account, rule_id, enabled=True, by=_by(principal))
        return await writer.run(command)

    @post("/{rule_id:str}/disable", status_code=HTTP_200_OK, responses=problems(401, 403, 404))
    async def disable_rule(
        self,
        writable_account: NamedDependency[str],
        principal: NamedDependency[Principal],
        rule_id: FromPath[str],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> Rule:
        """Disable a rule (`RuleDisabled`)."""
        command = rules.switch(writable_account, rule_id, enabled=False, by=_by(principal))
        return await writer.run(command)
