"""What a `dmledger project` or `dmledger dispatch` process keeps open on PostgreSQL to hear
other processes' commits and to hold its projections: one session that LISTENs (for every
channel the process needs), taken again when it is lost, and the projections' advisory
locks on one session per follower rather than one per projection.

Each process runs with its own `PGAPPNAME`, so its sessions are told apart from the test's
in `pg_stat_activity`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_KEY
from tests.support.cluster import free_port
from tests.support.fresh_process import served_env

pytestmark = pytest.mark.postgres

T = TypeVar("T")

FOLLOWERS = 3
"""A process's followers (`projections/registry.py`): the conversation list, the other
read models, the auto-reply policy."""

PROJECTIONS = 5

METRICS_TOKEN = "scrapes-with-this-token"


def until(condition: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"never: {what}")


class Sessions:
    """The PostgreSQL sessions of the processes started with one application name."""

    def __init__(self, url: str, application_name: str) -> None:
        self.admin = url.split("?")[0]
        self.application_name = application_name

    def _rows(self, query: str) -> list[tuple[int, str]]:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            rows = conn.execute(query, (self.application_name,)).fetchall()
        return [(int(pid), str(text)) for pid, text in rows]

    def listening(self) -> list[tuple[int, str]]:
        """(pid, the LISTEN statement) of each session whose last statement was a LISTEN."""
        return self._rows(
            "SELECT pid, query FROM pg_stat_activity"
            " WHERE application_name = %s AND query LIKE 'LISTEN%%' ORDER BY pid"
        )

    def lock_holders(self) -> list[tuple[int, str]]:
        """(pid, how many advisory locks it holds) of each session holding any."""
        return self._rows(
            "SELECT l.pid, count(*)::text FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = %s"
            " GROUP BY l.pid ORDER BY l.pid"
        )

    def locks(self) -> int:
        return sum(int(count) for _, count in self.lock_holders())

    def terminate(self, pids: list[int]) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for pid in pids:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def start(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., Sessions]]:
    """Starts `dmledger COMMAND` on the test's schema, with `DMLEDGER_*` settings; its
    sessions."""
    started: list[subprocess.Popen[bytes]] = []

    def run(command: str, **settings: str) -> Sessions:
        name = f"dmledger-test-{uuid.uuid4().hex[:10]}"
        env = served_env(postgres_url, tmp_path)
        env.update(
            DMLEDGER_SECRET_KEY=TEST_KEY,
            DMLEDGER_METRICS_TOKEN=METRICS_TOKEN,
            PGAPPNAME=name,
            **settings,
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return Sessions(postgres_url, name)

    yield run
    for process in started:
        process.terminate()
    for process in started:
        process.wait(timeout=20)


def test_a_project_process_listens_on_one_session_and_locks_on_one_a_follower(
    start: Callable[[str], Sessions],
) -> None:
    sessions = start("project")
    until(lambda: sessions.locks() == PROJECTIONS, "the process holds every projection's lock")
    until(sessions.listening, "the process listens")

    # The session count settles once every lock is held and LISTEN is in force.
    assert len(sessions.listening()) == 1, sessions.listening()
    holders = sessions.lock_holders()
    assert len(holders) == FOLLOWERS, holders


def test_a_project_process_listens_again_after_losing_its_session(
    start: Callable[[str], Sessions],
) -> None:
    sessions = start("project")
    until(lambda: sessions.locks() == PROJECTIONS, "the process holds every projection's lock")
    lost = [pid for pid, _ in until(sessions.listening, "the process listens")]

    sessions.terminate(lost)  # as a database restart or a proxy's idle timeout would

    again = until(
        lambda: [pid for pid, _ in sessions.listening() if pid not in lost],
        "the process listens again on a new session",
    )
    assert len(again) == 1, again
    assert sessions.locks() == PROJECTIONS  # the locks' sessions were not touched


def test_a_dispatch_process_listens_again_after_losing_its_session(
    start: Callable[..., Sessions],
) -> None:
    metrics_port = free_port()
    sessions = start("dispatch", DMLEDGER_METRICS_PORT=str(metrics_port))
    listening = until(sessions.listening, "the dispatcher listens for the outbox")
    assert len(listening) == 1, listening
    until(lambda: listening_gauge(metrics_port) == 1, "the metrics show it listens")
    lost = [pid for pid, _ in listening]

    sessions.terminate(lost)

    until(
        lambda: [pid for pid, _ in sessions.listening() if pid not in lost],
        "the dispatcher listens again on a new session",
    )
    until(lambda: listening_gauge(metrics_port) == 1, "the metrics show it listens again")


def listening_gauge(port: int) -> float | None:
    """`dmledger_db_listening` on the process's metrics port (None before it answers)."""
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={"authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=10,
        )
    except httpx.TransportError:
        return None
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "dmledger_db_listening":
                return sample.value
    return None


def test_a_project_process_takes_its_locks_again_after_losing_their_session(
    start: Callable[[str], Sessions],
) -> None:
    """A lock belongs to its session: once the session is gone (an `idle_session_timeout`,
    a proxy's idle timeout, a terminated backend), another process's standby may take the
    projection. The process notices within seconds and takes its locks again, rather than
    following on as if it still held them."""
    sessions = start("project")
    until(lambda: sessions.locks() == PROJECTIONS, "the process holds every projection's lock")
    lost = [pid for pid, _ in sessions.lock_holders()]

    sessions.terminate(lost)

    until(
        lambda: sum(int(n) for pid, n in sessions.lock_holders() if pid not in lost) == PROJECTIONS,
        "the process holds every projection's lock again, on new sessions",
    )
