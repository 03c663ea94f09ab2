"""Shared fixtures: backends (memory, SQLite, PostgreSQL), services, an HTTP client, Meta bodies."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.utils import get_topic
from litestar.testing import AsyncTestClient

from application.ingest import sign
from infrastructure.secret_box import FernetSecretBox
from infrastructure.settings import Settings
from interfaces.cli_db import upgrade_database
from interfaces.composition import Services, build
from interfaces.http.app import create_app
from tests.support.clock import MovableClock
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
ACCOUNT = "17841400000000001"
PARTICIPANT = "5500000000000001"
APP_SECRET = "meta-app-secret-for-tests"
ACCESS_TOKEN = "IGAA-access-token-for-tests"
ANNA = {
    "name": "Anna Schmidt",
    "username": "anna",
    "profile_pic": "https://cdn.example/anna.jpg",
    "follower_count": 1234,
    "is_user_follow_business": True,
    "is_business_follow_user": False,
    "is_verified_user": False,
}
"""The fixtures' participant, as Meta's user profile API describes her."""
VERIFY_TOKEN = "verify-token-for-tests"
TEST_KEY = FernetSecretBox.new_key()
POSTGRES_URL = os.environ.get(
    "DMLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/dmledger_test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def meta_body(kind: str) -> bytes:
    """A fixture body, compacted as Meta sends it."""
    return json.dumps(
        json.loads((FIXTURES / f"{kind}.json").read_text()), ensure_ascii=False
    ).encode()


def meta_json(kind: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{kind}.json").read_text())
    return body


def signed_headers(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"content-type": "application/json", "x-hub-signature-256": sign(body, secret)}


def postgres_available() -> bool:
    try:
        with psycopg.connect(_admin_url(POSTGRES_URL), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _admin_url(url: str) -> str:
    return url.split("?")[0]


def derived_database(url: str, suffix: str) -> str:
    """Another database on the test database's server, named after it (`<name>_<suffix>`):
    tests that need a whole database of their own derive it from DMLEDGER_TEST_POSTGRES_URL,
    so they never share one with another checkout's tests, nor drop what it holds."""
    base, _, name = _admin_url(url).rpartition("/")
    return f"{base}/{name}_{suffix}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test database's URL; unreachable PostgreSQL skips, except under CI where it fails."""
    if not postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (CI=true: never skip)")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL URL with a schema of its own for one test, upgraded as `dmledger db
    upgrade` does (processes refuse a schema that is behind), dropped afterwards."""
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(_admin_url(postgres_server), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_server}?schema={schema}"
    upgrade_database(url)
    yield url
    with psycopg.connect(_admin_url(postgres_server), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(
    params=[
        "memory",
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that uses it runs once per backend."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that uses it runs once per SQL backend (SQLite, PostgreSQL): for what the
    store in memory does not have (transactions of read models, SQL of its own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(database_url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "secret_keys": (TEST_KEY,),
            "data_dir": str(tmp_path / "var"),
            # Tests never reach Meta: nothing listens on port 9 of loopback.
            "graph_api_url": "http://127.0.0.1:9",
            # The fake CRM listens on loopback, over http.
            "crm_allow_private_urls": True,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def clock() -> MovableClock:
    """The test's clock: the wall clock until the test moves it on (or stops it)."""
    return MovableClock()


@pytest.fixture
def make_services(
    make_settings: Callable[..., Settings], clock: MovableClock
) -> Iterator[Callable[..., Services]]:
    """Builds services (like a process would) on the test's `clock`, and closes them after
    the test."""
    built: list[Services] = []

    def make(database_url: str, **overrides: Any) -> Services:
        settings = make_settings(database_url, **overrides)
        services = build(settings, clock=clock, announce=lambda _: None)
        built.append(services)
        return services

    yield make
    for services in built:
        services.close()


def register_account(services: Services, ig_account_id: str = ACCOUNT, **overrides: str) -> None:
    values = {
        "username": "shop",
        "app_secret": APP_SECRET,
        "access_token": ACCESS_TOKEN,
        "verify_token": VERIFY_TOKEN,
    }
    values.update(overrides)
    services.writer.run_now(
        services.accounts.register(ig_account_id=ig_account_id, by="test", **values)
    )


def deliver(services: Services, account: str, mid: str, text: str) -> None:
    """A message to the account, taken as its signed webhook is (without HTTP)."""
    body = meta_json("text")
    item = body["entry"][0]["messaging"][0]
    item["recipient"]["id"] = account
    item["message"] = {"mid": mid, "text": text}
    raw = json.dumps(body).encode()
    services.writer.run_now(services.ingest.command(raw, sign(raw, APP_SECRET)))


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    """A fake Graph API on loopback that takes the fixtures' token and knows one profile."""
    fake = FakeGraphApi(ACCESS_TOKEN, {PARTICIPANT: dict(ANNA)})
    yield fake
    fake.close()


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    """A fake CRM on loopback that verifies deliveries (set its `secret`)."""
    fake = FakeCrm()
    yield fake
    fake.close()


@pytest.fixture
def services(database_url: str, make_services: Callable[..., Services]) -> Services:
    """Services on each backend, with the fixtures' account registered."""
    built = make_services(database_url)
    register_account(built)
    return built


@pytest.fixture
async def client(services: Services) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(services)) as test_client:
        yield test_client


def stored_events(services: Services) -> list[tuple[str, dict[str, Any]]]:
    """Every stored event as (type, data), in log order."""
    recorder = services.ledger.recorder
    events = [
        services.ledger.mapper.to_domain_event(notification)
        for notification in recorder.select_notifications(start=1, limit=100_000)
    ]
    services.ledger.open_content(events)  # the content, as every reader gets it
    return [(get_topic(type(event)).split(":", 1)[1], dict(vars(event))) for event in events]


def event_types(services: Services) -> list[str]:
    return [kind for kind, _ in stored_events(services)]


def issue_key(
    services: Services, role: str = "admin", ig_account_id: str | None = None, name: str = "test"
) -> str:
    """A new API key's token."""
    command = services.api_keys.issue(name=name, role=role, ig_account_id=ig_account_id, by="test")
    return services.writer.run_now(command).token


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Retry an async or sync check until it stops raising AssertionError."""
    import asyncio
    import inspect
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
