"""Fixtures the end-to-end tests share: the HTTP app over a module's `services` (the
projections and the dispatcher driven by the test, step by step), an account key, and
services that send to the fake Graph API and deliver to the fake CRM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import ACCOUNT, bearer, issue_key, register_account
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi


@pytest.fixture
async def api(services: Services) -> AsyncIterator[AsyncTestClient[Any]]:
    """The HTTP app, with projections and the dispatcher driven by the test, step by step."""
    app = create_app(services, run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
def key(services: Services) -> dict[str, str]:
    """A key of the account `ACCOUNT`."""
    return bearer(issue_key(services, "account", ACCOUNT))


@pytest.fixture
def services_with_crm(
    database_url: str, make_services: Callable[..., Services], graph: FakeGraphApi, crm: FakeCrm
) -> Services:
    """`ACCOUNT` registered, sending to the fake Graph API, its CRM endpoint the fake CRM
    (which knows the signing secret)."""
    built = make_services(database_url, graph_api_url=graph.url)
    register_account(built)
    view = built.writer.run_now(
        built.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = view.secret
    return built
