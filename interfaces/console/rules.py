"""The console's rules: list, create, edit, enable or disable, delete, and the dry run."""

# Litestar reads handler annotations at run time: no `from __future__ import annotations`.

import asyncio
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from application.errors import InvalidInput, NotFound
from application.ledger_writer import LedgerWriter
from application.rule_management import Rule, Rules, RuleTest, RuleTestResult
from application.rules import RuleDefinition
from interfaces.console.access import Viewer, acting
from interfaces.console.pages import page

TRIGGER_HELP = "one a line: keyword: ship, phrase: hello, regex: ^order \\d+$, postback: PAYLOAD, "
TRIGGER_HELP += "story_mention, story_reply, first_message"


def definition_of(form: FormMultiDict) -> RuleDefinition:
    """A rule from the form's fields; `InvalidInput` naming the field that is wrong."""
    triggers = []
    for line in str(form.get("triggers") or "").splitlines():
        kind, _, value = line.strip().partition(":")
        if kind.strip():
            triggers.append({"type": kind.strip(), "value": value.strip() or None})
    if not triggers:
        raise InvalidInput("triggers", "give at least one trigger")
    conditions: dict[str, Any] = {}
    if form.get("business_hours") in ("inside", "outside"):
        conditions["business_hours"] = form.get("business_hours")
    if str(form.get("once_per_hours") or "").strip():
        conditions["once_per_hours"] = str(form.get("once_per_hours")).strip()
    raw = {
        "name": str(form.get("name") or "").strip(),
        "triggers": triggers,
        "reply": str(form.get("reply") or ""),
        "priority": str(form.get("priority") or "0").strip() or "0",
        "conditions": conditions,
        "enabled": form.get("enabled") == "on",
    }
    try:
        return msgspec.convert(raw, RuleDefinition, strict=False)
    except msgspec.ValidationError as error:
        field = str(error).rpartition("at `$.")[2].rstrip("`").split("[")[0].split(".")[0]
        raise InvalidInput(field or "rule", f"{error}") from None


def form_of(rule: Rule) -> dict[str, Any]:
    """A rule's values as its form shows them."""
    return {
        "name": rule.name,
        "priority": rule.priority,
        "reply": rule.reply,
        "triggers": "\n".join(
            f"{t.type}: {t.value}" if t.value is not None else t.type for t in rule.triggers
        ),
        "business_hours": rule.conditions.business_hours or "",
        "once_per_hours": rule.conditions.once_per_hours or "",
        "enabled": rule.enabled,
    }


EMPTY_FORM = {"priority": 0, "enabled": True, "triggers": "keyword: "}


class RulePages(Controller):
    """An account's auto-reply rules."""

    path = "/accounts/{account_id:str}/rules"

    @get()
    async def list_rules(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        rules: NamedDependency[Rules],
    ) -> Template:
        """The rules in the order they are tried, a form for a new one, and the dry run."""
        return await _rules_page(viewer, console_account, rules)

    @post()
    async def add_rule(
        self,
        request: Request[Any, Any, Any],
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> Redirect | Template:
        """Add a rule (`RuleAdded`)."""
        by = acting(viewer, console_account)
        form = await request.form()
        try:
            await writer.run(rules.add(console_account, definition_of(form), by=by))
        except InvalidInput as error:
            return await _rules_page(viewer, console_account, rules, form=dict(form), error=error)
        return Redirect(f"/console/accounts/{console_account}/rules", status_code=303)

    @post("/test")
    async def dry_run(
        self,
        request: Request[Any, Any, Any],
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        rules: NamedDependency[Rules],
    ) -> Template:
        """Which rule would answer this text now, with what reply; nothing is stored."""
        acting(viewer, console_account)
        form = await request.form()
        trial = RuleTest(
            text=str(form.get("text") or ""), username=str(form.get("username") or "") or None
        )
        try:
            result: RuleTestResult | None = await asyncio.to_thread(
                rules.test, console_account, trial
            )
        except InvalidInput as error:
            return await _rules_page(viewer, console_account, rules, trial=trial, error=error)
        return await _rules_page(viewer, console_account, rules, trial=trial, result=result)

    @get("/{rule_id:str}")
    async def edit_rule_page(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        rule_id: FromPath[str],
        rules: NamedDependency[Rules],
    ) -> Template:
        """A rule's form, filled in."""
        rule = await asyncio.to_thread(rules.get, console_account, rule_id)
        return page(
            "rule.html",
            viewer=viewer,
            account=console_account,
            rule=rule,
            form=form_of(rule),
            help=TRIGGER_HELP,
        )

    @post("/{rule_id:str}")
    async def change_rule(
        self,
        request: Request[Any, Any, Any],
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        rule_id: FromPath[str],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> Redirect | Template:
        """Replace the rule (`RuleChanged`)."""
        by = acting(viewer, console_account)
        form = await request.form()
        try:
            definition = definition_of(form)
            # The form edits no quick replies or template (REST does): the rule keeps its own.
            kept = await asyncio.to_thread(rules.get, console_account, rule_id)
            definition = msgspec.structs.replace(
                definition, quick_replies=kept.quick_replies, template=kept.template
            )
            command = rules.replace(console_account, rule_id, definition, by=by)
            await writer.run(command)
        except InvalidInput as error:
            rule = await asyncio.to_thread(rules.get, console_account, rule_id)
            return page(
                "rule.html",
                status_code=422,
                viewer=viewer,
                account=console_account,
                rule=rule,
                form=dict(form),
                help=TRIGGER_HELP,
                error=error,
            )
        return Redirect(f"/console/accounts/{console_account}/rules", status_code=303)

    @post("/{rule_id:str}/{action:str}")
    async def switch_or_remove(
        self,
        viewer: NamedDependency[Viewer],
        console_account: NamedDependency[str],
        rule_id: FromPath[str],
        action: FromPath[str],
        rules: NamedDependency[Rules],
        writer: NamedDependency[LedgerWriter],
    ) -> Redirect:
        """Enable, disable or delete a rule."""
        by = acting(viewer, console_account)
        if action in ("enable", "disable"):
            enabled = action == "enable"
            await writer.run(rules.switch(console_account, rule_id, enabled=enabled, by=by))
        elif action == "delete":
            await writer.run(rules.remove(console_account, rule_id, by=by))
        else:
            raise NotFound(f"there is no action {action!r}")
        return Redirect(f"/console/accounts/{console_account}/rules", status_code=303)


async def _rules_page(
    viewer: Viewer,
    account: str,
    rules: Rules,
    *,
    form: dict[str, Any] | None = None,
    trial: RuleTest | None = None,
    result: RuleTestResult | None = None,
    error: InvalidInput | None = None,
) -> Template:
    listed = await asyncio.to_thread(rules.list, account)
    return page(
        "rules.html",
        status_code=422 if error is not None else 200,
        viewer=viewer,
        account=account,
        rules=listed,
        form=form or EMPTY_FORM,
        help=TRIGGER_HELP,
        trial=trial,
        result=result,
        error=error,
    )
