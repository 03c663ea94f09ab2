"""PostgreSQL LISTEN: wakes whoever waits for the ledger or an outbox in other processes.

A process listens on one session of its own per database (`listener_for`), for every
channel asked of it: its projections' followers and its dispatcher share it, so a process
keeps one session for this however many projections it follows. The session is taken
again when it is lost (a database restart, a terminated backend, a proxy's idle timeout),
and every subscriber is woken then, since notifications may have been missed meanwhile;
until it is back, the subscribers' own polling carries on.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

WAIT_SECONDS = 1.0
"""How long the listening thread waits for a notification before it looks again at what
it is asked to listen for (and whether it is still asked at all)."""

RETRY_SECONDS = 1.0
"""How long it waits before taking a lost session again."""


@dataclass(eq=False)
class _Subscriber:
    channel: str
    wake: Callable[[], None]
    listening: Callable[[], None]
    told: bool = False
    """`listening` has been called (once, the first time its channel was listened to)."""


@dataclass(eq=False)
class Listener:
    """One session that LISTENs for every channel its subscribers ask for, in a thread that
    runs while it has subscribers."""

    url: URL
    _subscribers: list[_Subscriber] = field(default_factory=list)
    _mutex: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _listened: set[str] = field(default_factory=set)
    """The channels LISTEN is in force for, on the session of the moment."""
    _retry: threading.Event = field(default_factory=threading.Event)

    def subscribe(
        self,
        channel: str,
        wake: Callable[[], None],
        listening: Callable[[], None] = lambda: None,
    ) -> Callable[[], None]:
        """Call `wake` on each NOTIFY on `channel` (and after the session was taken again),
        and `listening` once LISTEN on it is in force; the function that unsubscribes."""
        subscriber = _Subscriber(channel, wake, listening)
        with self._mutex:
            self._subscribers.append(subscriber)
            subscriber.told = channel in self._listened
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"listen-{self.url.database}", daemon=True
                )
                self._thread.start()
        if subscriber.told:
            listening()

        def unsubscribe() -> None:
            with self._mutex:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)
            self._retry.set()  # a thread resting between sessions need not rest on

        return unsubscribe

    def in_force(self) -> bool | None:
        """None when nobody subscribes; else whether LISTEN is in force now (False while
        the session is lost and the subscribers poll)."""
        with self._mutex:
            if not self._subscribers:
                return None
            return bool(self._listened)

    # -- the listening thread ------------------------------------------------------------

    def _run(self) -> None:
        while self._wanted() is not None:
            try:
                self._listen()
                return  # nobody is subscribed any more
            except psycopg.Error as error:
                log.warning(
                    "lost the LISTEN session (%s); listening again in %.0f s, polling meanwhile",
                    error,
                    RETRY_SECONDS,
                )
            except Exception:
                log.exception("listening failed; listening again in %.0f s", RETRY_SECONDS)
            self._retry.clear()
            self._retry.wait(RETRY_SECONDS)

    def _wanted(self) -> set[str] | None:
        """The channels wanted now; None when nobody subscribes (the thread is done then,
        and a later subscriber starts another) or this is not the listener's thread."""
        with self._mutex:
            if self._thread is not threading.current_thread():
                return None
            if not self._subscribers:
                self._thread = None
                return None
            return {subscriber.channel for subscriber in self._subscribers}

    def _listen(self) -> None:
        try:
            self._session()
        finally:
            with self._mutex:
                self._listened = set()

    def _session(self) -> None:
        url = self.url
        with psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=True,
        ) as conn:
            listened: set[str] = set()
            while (wanted := self._wanted()) is not None:
                for channel in sorted(wanted - listened):
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                for channel in sorted(listened - wanted):
                    conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
                added, listened = wanted - listened, wanted
                self._in_force(listened, wake=added)
                for notification in conn.notifies(timeout=WAIT_SECONDS, stop_after=1):
                    self._wake(notification.channel)

    def _in_force(self, channels: set[str], *, wake: set[str]) -> None:
        """Tell the subscribers whose channel is now listened to, and wake those of the
        channels just listened to (every one on a new session): what was notified while
        nobody listened is not lost."""
        with self._mutex:
            self._listened = set(channels)
            subscribers = [s for s in self._subscribers if s.channel in channels]
            untold = [s for s in subscribers if not s.told]
            for subscriber in untold:
                subscriber.told = True
        for subscriber in untold:
            subscriber.listening()
        for subscriber in subscribers:
            if subscriber.channel in wake:
                subscriber.wake()

    def _wake(self, channel: str) -> None:
        with self._mutex:
            wakes = [s.wake for s in self._subscribers if s.channel == channel]
        for wake in wakes:
            wake()


_listeners: dict[str, Listener] = {}
_listeners_mutex = threading.Lock()


def listening() -> bool | None:
    """Whether this process listens now: None when it has no subscribed listener (SQLite,
    or nothing that listens), False while one of its sessions is lost."""
    with _listeners_mutex:
        listeners = list(_listeners.values())
    states = [
        state for state in (listener.in_force() for listener in listeners) if state is not None
    ]
    return all(states) if states else None


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts listeners of its own."""
    global _listeners_mutex
    _listeners.clear()
    _listeners_mutex = threading.Lock()  # perhaps held by a thread the child does not have


os.register_at_fork(after_in_child=_forget_after_fork)


def listener_for(engine: Engine) -> Listener:
    """This process's listener for `engine`'s database (one, whatever the engine)."""
    url = engine.url
    key = f"{url.username}:{url.password}@{url.host}:{url.port}/{url.database}"
    with _listeners_mutex:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = Listener(engine.url)
        return listener
