"""While the database is away, the REST API answers 503 (try again), never 500."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
from litestar.testing import AsyncTestClient

from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import ACCOUNT, bearer, eventually, issue_key, register_account
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

BASE = f"/api/v1/accounts/{ACCOUNT}"


async def test_rest_requests_during_an_outage_are_503_and_work_again_after(
    postgres_url: str, make_services: Callable[..., Services]
) -> None:
    # given a process whose database is behind a proxy we can cut, and an admin key
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    through_proxy = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}"))
    services = make_services(through_proxy)
    register_account(services)
    admin = bearer(issue_key(services, "admin"))
    app = create_app(services, run_projections=False, run_dispatcher=False)
    try:
        async with AsyncTestClient(app=app) as client:
            assert (await client.get(f"{BASE}/conversations", headers=admin)).status_code == 200

            # when the database goes away
            proxy.cut()

            # then every request is a 503 problem that says to try again, none a 500
            rule = {"name": "x", "triggers": [{"type": "keyword", "value": "a"}], "reply": "r"}
            answers = [
                await client.get(f"{BASE}/conversations", headers=admin),
                await client.get(BASE, headers=admin),
                await client.get(f"{BASE}/rules", headers=admin),
                await client.post(f"{BASE}/rules", headers=admin, json=rule),
                await client.get("/api/v1/accounts", headers=admin),
            ]
            assert [a.status_code for a in answers] == [503] * len(answers), [
                a.text for a in answers
            ]
            assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
            assert all(a.headers.get("retry-after") for a in answers)

            # and once it is back, so are the answers
            proxy.restore()

            async def answered() -> None:
                again = await client.get(f"{BASE}/conversations", headers=admin)
                assert again.status_code == 200, again.text

            await eventually(answered, timeout=15)
    finally:
        proxy.close()
