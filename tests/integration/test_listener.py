"""The process's one LISTEN session (`projections.notifications.Listener`): every channel on
one session, subscribers woken by NOTIFY, a lost session taken again (and its subscribers
woken, for what they may have missed), and nothing left open once nobody subscribes."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, make_url

from projections.notifications import Listener, listener_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def admin(postgres_server: str) -> str:
    return postgres_server.split("?")[0]


@pytest.fixture
def name(monkeypatch: pytest.MonkeyPatch) -> str:
    """The application name of the listener's sessions (libpq reads `PGAPPNAME`)."""
    application_name = f"listener-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("PGAPPNAME", application_name)
    return application_name


class Subscribing(Listener):
    """A listener whose subscriptions end with the test (its thread and session too)."""

    def __init__(self, admin: str) -> None:
        super().__init__(make_url(admin.replace("postgresql://", "postgresql+psycopg://")))
        self.ends: list[Callable[[], None]] = []

    def subscribe(
        self,
        channel: str,
        wake: Callable[[], None],
        listening: Callable[[], None] = lambda: None,
    ) -> Callable[[], None]:
        unsubscribe = super().subscribe(channel, wake, listening)
        self.ends.append(unsubscribe)
        return unsubscribe


@pytest.fixture
def listener(admin: str, name: str) -> Iterator[Listener]:
    listener = Subscribing(admin)
    yield listener
    for unsubscribe in listener.ends:
        unsubscribe()


def channel() -> str:
    return f"test_{uuid.uuid4().hex[:10]}"


def notify(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'NOTIFY "{name}"')


def listening_sessions(admin: str, application_name: str) -> list[int]:
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never: {what}")
        time.sleep(0.02)


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def reaches(self, count: int, timeout: float = 15.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout)


def test_subscribers_of_two_channels_share_one_session_and_each_hears_its_own(
    listener: Listener, admin: str, name: str
) -> None:
    first, second = channel(), channel()
    heard_first, heard_second, told = Counter(), Counter(), Counter()
    listener.subscribe(first, heard_first, told)
    listener.subscribe(second, heard_second, told)
    assert told.reaches(2), "LISTEN on both channels in force"
    woken_first, woken_second = heard_first.count, heard_second.count

    notify(admin, first)
    assert heard_first.reaches(woken_first + 1)
    assert heard_second.count == woken_second

    notify(admin, second)
    assert heard_second.reaches(woken_second + 1)
    assert len(listening_sessions(admin, name)) == 1


def test_a_lost_session_is_taken_again_and_its_subscribers_woken(
    listener: Listener, admin: str, name: str
) -> None:
    heard, told = Counter(), Counter()
    listener.subscribe(channel_name := channel(), heard, told)
    assert told.reaches(1)
    lost = listening_sessions(admin, name)
    before = heard.count

    with psycopg.connect(admin, autocommit=True) as conn:
        for pid in lost:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    # Woken once the new session listens: what was notified meanwhile is not lost.
    assert heard.reaches(before + 1)
    until(lambda: [p for p in listening_sessions(admin, name) if p not in lost], "a new session")
    woken = heard.count
    notify(admin, channel_name)
    assert heard.reaches(woken + 1)
    assert told.count == 1  # told once that it listens, not again for each session


def test_nothing_stays_open_once_nobody_subscribes(
    listener: Listener, admin: str, name: str
) -> None:
    told = Counter()
    unsubscribe = listener.subscribe(channel(), lambda: None, told)
    assert told.reaches(1)
    assert len(listening_sessions(admin, name)) == 1

    unsubscribe()

    until(lambda: not listening_sessions(admin, name), "the session is closed")
    # A later subscriber listens again.
    again = Counter()
    listener.subscribe(channel(), lambda: None, again)
    assert again.reaches(1)


def test_a_forked_child_has_a_listener_of_its_own(admin: str) -> None:
    """A child forked after its parent listened has none of the parent's threads: it must
    not be handed the parent's listener, whose thread it would wait on for ever."""
    engine = create_engine(admin.replace("postgresql://", "postgresql+psycopg://"))
    try:
        parents = listener_for(engine)
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 if it got a listener of its own
            os._exit(0 if listener_for(engine) is not parents else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert listener_for(engine) is parents
    finally:
        engine.dispose()
