"""Requests generated from the served `/schema/openapi.json` (schemathesis), valid and not,
against `dmledger serve` on loopback (SQLite and PostgreSQL) with an admin key: no input
gets a 5xx, every answer's status, content type and body are the ones the document gives
for it, and every read model holds what the requests stored (nothing parked).

The account's id is the registered account's in every path that names one, so the
generated requests reach the handlers rather than the 404 of an unknown account. The
examples are derandomized: a run finds what the previous one found.
`DMLEDGER_FUZZ_EXAMPLES` asks for more of them than CI's 15 an operation (60 passed on
both backends when this was written).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from schemathesis import checks
from schemathesis.core.result import Err

from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    PARTICIPANT,
    deliver,
    issue_key,
    register_account,
)
from tests.support.generated import assert_holding_everything, derandomized, followed_read_models
from tests.support.served import Served, serve
from tests.support.webhooks import OTHER

pytestmark = pytest.mark.heavy  # ~700 requests a backend, ~500 more for isolation: ~45 s

EXAMPLES = int(os.environ.get("DMLEDGER_FUZZ_EXAMPLES", "15"))
"""Generated requests per operation."""
ISOLATION_EXAMPLES = int(os.environ.get("DMLEDGER_FUZZ_EXAMPLES", "10"))
"""Generated requests per operation on another account's paths, each sent with two keys."""

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
def served(
    sql_url: str, tmp_path: Path, make_services: Callable[..., Services]
) -> Iterator[tuple[Served, str]]:
    """`dmledger serve` on the backend's database holding the tests' account; an admin key."""
    url = sql_url
    services = make_services(url)
    register_account(services)
    token = issue_key(services)
    services.close()
    server = serve(url, tmp_path / "var")
    yield server, token
    server.stop()


def test_no_generated_request_gets_a_5xx_or_an_answer_the_document_does_not_give(
    served: tuple[Served, str],
) -> None:
    server, token = served
    schema = schemathesis.openapi.from_url(server.url + "/schema/openapi.json")
    headers = {"authorization": f"Bearer {token}"}
    failures: list[str] = []
    tried = 0

    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation the document describes unreadably
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()

        @given(case=operation.as_strategy())
        @derandomized(EXAMPLES)
        def answers_as_documented(case: schemathesis.Case[Any]) -> None:
            nonlocal tried
            tried += 1
            if case.path_parameters and "account_id" in case.path_parameters:
                case.path_parameters["account_id"] = ACCOUNT
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

        try:
            answers_as_documented()
        # Each operation's failures (schemathesis groups them), all reported at once.
        except (Exception, BaseExceptionGroup) as failure:
            failures.append(f"{operation.label}: {failure}")

    assert tried > 20 * EXAMPLES, tried  # every operation was tried (47 today)
    assert failures == [], "\n\n".join(failures)
    # and what the API stored, every read model holds: each follows to the head, parking
    # nothing (the changes generated requests made: rules, replies, settings, keys...)
    assert_holding_everything(followed_read_models(server.url))


@pytest.fixture
def two_accounts(
    tmp_path: Path, make_services: Callable[..., Services]
) -> Iterator[tuple[Served, dict[str, str]]]:
    """`dmledger serve` on SQLite with two accounts, a message in the other's conversation,
    and keys scoped to the tests' account: an account key and an auditor's."""
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    services = make_services(url)
    register_account(services)
    register_account(services, OTHER)
    deliver(services, OTHER, "mid-other-1", "the other account's customer")
    keys = {
        role: issue_key(services, role, ig_account_id=ACCOUNT) for role in ("account", "auditor")
    }
    services.close()
    server = serve(url, tmp_path / "var")
    yield server, keys
    server.stop()


def test_a_key_of_one_account_gets_nothing_of_another_whatever_it_sends(
    two_accounts: tuple[Served, dict[str, str]],
) -> None:
    # given generated requests to every operation on the other account's paths (its
    # conversation's id in those that name one), with keys scoped to the tests' account
    server, keys = two_accounts
    schema = schemathesis.openapi.from_url(server.url + "/schema/openapi.json")
    others = {"account_id": OTHER, "conversation_id": str(conversation_id(OTHER, PARTICIPANT))}
    answered: list[str] = []
    tried = 0

    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the first test reports it
            continue
        operation = result.ok()
        if "{account_id}" not in operation.path:
            continue

        @given(case=operation.as_strategy())
        @derandomized(ISOLATION_EXAMPLES)
        def refused(case: schemathesis.Case[Any]) -> None:
            nonlocal tried
            for name, value in others.items():
                if case.path_parameters and name in case.path_parameters:
                    case.path_parameters[name] = value
            for role, token in keys.items():
                tried += 1
                response = case.call(
                    base_url=server.url, headers={"authorization": f"Bearer {token}"}
                )
                # then none is answered with anything but a refusal (or a malformed input's)
                if response.status_code < 400 or response.status_code >= 500:
                    answered.append(
                        f"{role} key: {case.method} {case.formatted_path} -> "
                        f"{response.status_code} {response.text[:200]}"
                    )

        refused()

    assert tried > 20 * ISOLATION_EXAMPLES, tried
    assert answered == [], "\n".join(answered)
