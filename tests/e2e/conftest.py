"""Fixtures the end-to-end tests share: the HTTP app over a module's `services` (the
projections and the dispatcher driven by the test, step by step), an account key and an
admin key, services that send to the fake Graph API (and deliver to the fake CRM), and the
command line's environment (a module with another overrides `env`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import ACCOUNT, TEST_KEY, bearer, issue_key, register_account
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi


@pytest.fixture
async def api(services: Services) -> AsyncIterator[AsyncTestClient[Any]]:
    """The HTTP app, with projections and the dispatcher driven by the test, step by step."""
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The command line's environment, set (and returned): a SQLite database of the test's,
    the tests' secret key, and a Graph API that nothing answers at."""
    values = {
        "DMLEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
        "DMLEDGER_GRAPH_API_URL": "http://127.0.0.1:9",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def key(services: Services) -> dict[str, str]:
    """A key of the account `ACCOUNT`."""
    return bearer(issue_key(services, "account", ACCOUNT))


@pytest.fixture
def admin(services: Services) -> dict[str, str]:
    """An admin key's header."""
    return bearer(issue_key(services, "admin"))


@pytest.fixture
def services_with_graph(
    database_url: str, make_services: Callable[..., Services], graph: FakeGraphApi
) -> Services:
    """`ACCOUNT` registered, sending to the fake Graph API."""
    built = make_services(database_url, graph_api_url=graph.url)
    register_account(built)
    return built


@pytest.fixture
def services_with_crm(services_with_graph: Services, crm: FakeCrm) -> Services:
    """`ACCOUNT` registered, sending to the fake Graph API, its CRM endpoint the fake CRM
    (which knows the signing secret)."""
    built = services_with_graph
    view = built.writer.run_now(
        built.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    return built
