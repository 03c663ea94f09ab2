"""One account's failing CRM never holds up another account's notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from application.delivery import MetaError
from application.sending import token_rejected
from interfaces.composition import Services
from tests.conftest import ACCOUNT, register_account
from tests.support.fake_crm import FakeCrm

OTHER = "17841400000000002"


def test_an_accounts_notification_waits_behind_its_own_failures_only(
    database_url: str, make_services: Callable[..., Services], crm: FakeCrm
) -> None:
    # given two accounts: the first's CRM endpoint answers nothing, the other's works
    services = make_services(database_url)
    for account, url in ((ACCOUNT, "http://127.0.0.1:9/crm"), (OTHER, crm.url)):
        register_account(services, account)
        view = services.writer.run_now(
            services.crm_endpoints.set(
                account, url=url, event_types=None, rotate_secret=False, by="test"
            )
        )
        if account == OTHER:
            crm.secret = view.secret

    # when Meta rejects both accounts' tokens, the first account's first
    now = services.clock.now_ms()
    for account in (ACCOUNT, OTHER):
        error = MetaError(190, None, "Error validating access token")
        services.writer.run_now(token_rejected(account, error, now))
    services.read_models.catch_up()
    asyncio.run(services.dispatcher.drain())

    # then the other account's CRM is told at once, though the first's delivery failed
    delivered = [d["payload"] for d in crm.delivered()]
    assert [(p["type"], p["data"]["account_id"]) for p in delivered] == [
        ("account.token_rejected", OTHER)
    ]


def subscribed(services: Services, crm: FakeCrm) -> Services:
    """The fixtures' account, registered, its CRM endpoint at the fake CRM."""
    register_account(services)
    view = services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    return services


def test_the_crm_is_told_when_sends_pause_and_a_token_refresh_fails(
    database_url: str, make_services: Callable[..., Services], crm: FakeCrm
) -> None:
    from application.sending import sends_paused, token_refresh_failed

    services = subscribed(make_services(database_url), crm)
    now = services.clock.now_ms()

    services.writer.run_now(sends_paused(ACCOUNT, until=now + 60_000, code=4, reason="limit"))
    services.writer.run_now(token_refresh_failed(ACCOUNT, "refresh refused", now))
    services.read_models.catch_up()
    asyncio.run(services.dispatcher.drain())

    told = {d["payload"]["type"]: d["payload"]["data"] for d in crm.delivered()}
    assert told["account.sends_paused"]["account_id"] == ACCOUNT
    assert told["account.sends_paused"]["code"] == 4
    assert told["account.sends_paused"]["until"]  # when sends may go again (RFC 3339)
    assert told["account.token_refresh_failed"]["message"] == "refresh refused"


def test_the_crm_is_told_when_new_credentials_let_a_rejected_accounts_sends_resume(
    database_url: str, make_services: Callable[..., Services], crm: FakeCrm
) -> None:
    services = subscribed(make_services(database_url), crm)
    now = services.clock.now_ms()
    services.writer.run_now(token_rejected(ACCOUNT, MetaError(190, None, "bad token"), now))

    # a routine refresh of a working token resumes nothing; new credentials after a 190 do
    services.writer.run_now(
        services.accounts.rotate_credentials(
            ACCOUNT, {"access_token": "IGAA-new"}, at=now + 1, by="api-key:ops"
        )
    )
    services.writer.run_now(
        services.accounts.rotate_credentials(
            ACCOUNT, {"access_token": "IGAA-newer"}, at=now + 2, by="token-refresh"
        )
    )
    services.read_models.catch_up()
    asyncio.run(services.dispatcher.drain())

    kinds = [d["payload"]["type"] for d in crm.delivered()]
    assert kinds == ["account.token_rejected", "account.sends_resumed"]
    resumed = crm.delivered()[1]["payload"]["data"]
    assert (resumed["account_id"], resumed["by"]) == (ACCOUNT, "api-key:ops")
