"""Fixtures the integration tests of several processes on one database share: a fake Graph
API, and the HTTP app of the web process among a module's `processes`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import ACCESS_TOKEN
from tests.support.fake_graph import FakeGraphApi


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    """A fake Graph API on loopback that takes the fixtures' token and knows no profile."""
    fake = FakeGraphApi(ACCESS_TOKEN)
    yield fake
    fake.close()


@pytest.fixture
async def web(processes: dict[str, Services]) -> AsyncIterator[AsyncTestClient[Any]]:
    """The web process's app (its services `processes["web"]`, which the module defines),
    with projections and the dispatcher left to the other processes."""
    app = create_app(processes["web"], run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as client:
        yield client
