"""The decrypted app secrets the ingest path keeps: bounded, and a rotation lets the old go."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from application.accounts import Accounts
from application.errors import InvalidSignature
from application.ingest import WebhookIngest, sign
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from infrastructure.clock import SystemClock
from infrastructure.persistence import persistence_env
from infrastructure.secret_box import FernetSecretBox
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import (
    APP_SECRET,
    PARTICIPANT,
    TEST_KEY,
    register_account,
    signed_headers,
)

ACCOUNTS = ["17841400000000011", "17841400000000012", "17841400000000013"]


class CountingBox(FernetSecretBox):
    """The real secret box, counting what it decrypts."""

    def __init__(self) -> None:
        super().__init__([TEST_KEY])
        self.decrypted: list[str] = []

    def decrypt(self, token: str) -> str:
        self.decrypted.append(token)
        return super().decrypt(token)


def body_for(ig_account_id: str, mid: str) -> bytes:
    return json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "time": 1767225600500,
                    "id": ig_account_id,
                    "messaging": [
                        {
                            "sender": {"id": PARTICIPANT},
                            "recipient": {"id": ig_account_id},
                            "timestamp": 1767225600000,
                            "message": {"mid": mid, "text": "hi"},
                        }
                    ],
                }
            ],
        }
    ).encode()


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(env=persistence_env("memory://"))


def test_the_ingest_keeps_at_most_its_bound_of_decrypted_app_secrets(ledger: Ledger) -> None:
    # given three accounts, and an ingest that keeps two decrypted app secrets
    box = CountingBox()
    writer = LedgerWriter(ledger)
    accounts = Accounts(ledger, box, SystemClock())
    for ig_account_id in ACCOUNTS:
        writer.run_now(
            accounts.register(
                ig_account_id=ig_account_id,
                username="shop",
                app_secret=f"secret-{ig_account_id}",
                access_token="token",
                verify_token="verify",
                by="test",
            )
        )
    ingest = WebhookIngest(box, app_secrets_kept=2)
    first = ledger.account(ACCOUNTS[0])
    assert first is not None

    # when each account gets a webhook, then the first one another
    for n, ig_account_id in enumerate([*ACCOUNTS, ACCOUNTS[0]]):
        body = body_for(ig_account_id, f"m{n}")
        writer.run_now(ingest.command(body, sign(body, f"secret-{ig_account_id}")))

    # then no more than two were held, so the first account's had to be decrypted again
    assert len(ingest.app_secrets) == 2
    assert box.decrypted.count(first.app_secret) == 2


def test_a_held_app_secret_is_decrypted_once(ledger: Ledger) -> None:
    box = CountingBox()
    writer = LedgerWriter(ledger)
    writer.run_now(
        Accounts(ledger, box, SystemClock()).register(
            ig_account_id=ACCOUNTS[0],
            username="shop",
            app_secret=APP_SECRET,
            access_token="token",
            verify_token="verify",
            by="test",
        )
    )
    ingest = WebhookIngest(box)
    box.decrypted.clear()

    for n in range(3):
        body = body_for(ACCOUNTS[0], f"m{n}")
        writer.run_now(ingest.command(body, sign(body, APP_SECRET)))

    assert len(box.decrypted) == 1


def test_a_rotation_drops_the_old_app_secret_and_only_the_new_one_verifies(
    make_services: Callable[..., Services],
) -> None:
    # given an account whose app secret has verified a webhook
    services = make_services("memory://")
    register_account(services, ACCOUNTS[0])
    body = body_for(ACCOUNTS[0], "m1")
    services.writer.run_now(services.ingest.command(body, sign(body, APP_SECRET)))
    assert len(services.ingest.app_secrets) == 1

    # when its app secret is rotated in this process
    services.writer.run_now(
        services.accounts.rotate_credentials(
            ACCOUNTS[0], {"app_secret": "the-new-app-secret"}, at=1, by="test"
        )
    )

    # then the old secret is no longer held, and no longer verifies
    assert len(services.ingest.app_secrets) == 0
    again = body_for(ACCOUNTS[0], "m2")
    with pytest.raises(InvalidSignature):
        services.writer.run_now(services.ingest.command(again, sign(again, APP_SECRET)))
    services.writer.run_now(services.ingest.command(again, sign(again, "the-new-app-secret")))
    assert len(services.ingest.app_secrets) == 1


def test_a_rotation_in_another_process_replaces_the_held_secret_at_the_next_webhook(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    # given two processes on one store, the first holding the account's app secret
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    web, other = make_services(url), make_services(url)
    register_account(web, ACCOUNTS[0])
    body = body_for(ACCOUNTS[0], "m1")
    web.writer.run_now(web.ingest.command(body, sign(body, APP_SECRET)))

    # when the other process rotates it
    other.writer.run_now(
        other.accounts.rotate_credentials(
            ACCOUNTS[0], {"app_secret": "the-new-app-secret"}, at=1, by="test"
        )
    )

    # then the first refuses the old secret, and holds only the new one once it verified
    again = body_for(ACCOUNTS[0], "m2")
    with pytest.raises(InvalidSignature):
        web.writer.run_now(web.ingest.command(again, sign(again, APP_SECRET)))
    web.writer.run_now(web.ingest.command(again, sign(again, "the-new-app-secret")))
    assert len(web.ingest.app_secrets) == 1


async def test_after_a_rotation_over_http_the_old_app_secret_gets_401_and_the_new_200(
    make_services: Callable[..., Services],
) -> None:
    services = make_services("memory://")
    register_account(services, ACCOUNTS[0])
    admin = {"authorization": "Bearer " + _admin_token(services)}
    async with AsyncTestClient(app=create_app(services)) as client:
        first = body_for(ACCOUNTS[0], "m1")
        accepted = await client.post(
            "/webhooks/instagram", content=first, headers=signed_headers(first)
        )
        rotated = await client.post(
            f"/api/v1/accounts/{ACCOUNTS[0]}/credentials",
            headers=admin,
            json={"app_secret": "the-new-app-secret"},
        )
        second = body_for(ACCOUNTS[0], "m2")
        old = await client.post(
            "/webhooks/instagram", content=second, headers=signed_headers(second)
        )
        new = await client.post(
            "/webhooks/instagram",
            content=second,
            headers=signed_headers(second, "the-new-app-secret"),
        )

    assert (accepted.status_code, rotated.status_code) == (200, 200), rotated.text
    assert old.status_code == 401, old.text
    assert new.status_code == 200, new.text


def _admin_token(services: Services) -> str:
    command = services.api_keys.issue(name="admin", role="admin", ig_account_id=None, by="test")
    return services.writer.run_now(command).token
