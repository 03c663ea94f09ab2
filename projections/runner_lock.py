"""One active runner per projection: the others wait as standbys.

On PostgreSQL an advisory lock per projection (and schema), held by a session that is not
a pooled connection's (a lock belongs to its session): a follower holds the locks of its
projections on one such session (`LockSession`), a rebuild on one of its own. While it
holds the lock, the runner is woken by the ledger's NOTIFY through the process's one
listening session (`projections.notifications`), so commits of other processes wake it.
On SQLite a lock file beside the database. A rebuild takes the same lock without waiting
(`ProjectionRunner.exclusively`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from contextlib import suppress

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from projections.notifications import listener_for

log = logging.getLogger(__name__)


class LockSession:
    """A session of its own on which advisory locks are taken and held: several locks of
    one thread (a follower's projections) share it. Lost with its session, so an error
    on it closes it; the next lock taken opens another."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._held: set[int] = set()

    def take(self, key: int) -> bool:
        """True if the lock is now held on this session, False if another session holds it."""
        if self._conn is None:
            self._conn = self._engine.connect()
        try:
            held = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            taken = bool(held.scalar())
            self._conn.commit()
        except DBAPIError:
            self.close()
            raise
        if taken:
            self._held.add(key)
        return taken

    def intact(self) -> bool:
        """Whether the session still holds every lock taken on it: False once it is lost
        (closed then), since its locks went with it. Asked every second by a follower, it
        also keeps the session from looking idle to an `idle_session_timeout`."""
        if not self._held:
            return True
        if self._conn is None:
            return False
        try:
            count = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                    " AND locktype = 'advisory' AND granted"
                )
            ).scalar()
            self._conn.commit()
        except DBAPIError:
            self.close()
            return False
        return count == len(self._held)

    def release(self, key: int) -> None:
        """Released now: the server notices a closed session only a moment later, and a
        rebuild right after another one found the lock still held."""
        if key not in self._held or self._conn is None:
            return
        self._held.discard(key)
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            self._conn.commit()
        except DBAPIError:
            self.close()  # and with the session, every lock it held

    def close(self) -> None:
        self._held.clear()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # The locks belong to the session: returned to a pool, it would keep them.
            with suppress(DBAPIError):
                conn.invalidate()
            conn.close()


class RunnerLock:
    """On PostgreSQL, holds an advisory lock for the projection while the runner works,
    and listens for the ledger's NOTIFY so commits of other processes wake the runner.
    On SQLite, the lock is a file beside the database (`_LockFile`): a rebuild refuses
    there too while a `serve` or `project` follows the read model."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        *,
        events_channel: str,
        wake: Callable[[], None],
        following: threading.Event,
        stop: threading.Event,
        wait: bool = True,
        listen: bool = True,
        session: LockSession | None = None,
    ) -> None:
        self._name = name
        self._engine = engine
        self._events_channel = events_channel
        self._wake = wake
        self._following = following
        self._stop = stop
        self._wait = wait
        self._listens = listen
        self._session = session
        self._own_session = session is None
        self._held: int | None = None
        """The key of the lock, while held."""
        self._unsubscribe: Callable[[], None] | None = None
        self._file: _LockFile | None = None

    def __enter__(self) -> bool:
        engine = self._engine
        if engine.dialect.name != "postgresql":
            database = engine.url.database
            if database and database != ":memory:":
                self._file = _LockFile(f"{database}.{self._name}.lock")
                while not self._file.take():
                    if not self._wait or self._stop.wait(1.0):
                        return False
            if self._listens:
                self._following.set()
            return True
        schema = (engine.get_execution_options().get("schema_translate_map") or {}).get(None, "")
        lock_name = f"dmledger-projection:{schema}:{self._name}"
        digest = hashlib.sha256(lock_name.encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        if self._session is None:
            self._session = LockSession(engine)
        while not self._stop.is_set():
            if self._session.take(key):
                self._held = key
                if self._listens:
                    log.info("projection %s: this runner is the active one", self._name)
                    self._unsubscribe = listener_for(engine).subscribe(
                        self._events_channel, self._wake, self._following.set
                    )
                return True
            if not self._wait:
                break
            self._stop.wait(1.0)
        return False

    def __exit__(self, *_: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._listens:
            self._following.clear()
        if self._file is not None:
            self._file.release()
        if self._session is not None:
            if self._held is not None:
                self._session.release(self._held)
                self._held = None
            if self._own_session:
                self._session.close()


class _LockFile:
    """An exclusive lock on a file (flock): held by one open file at a time, whichever the
    process, and released by the system when its process dies. Where there is no flock
    (Windows), every `take` succeeds, as before there was a lock."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def take(self) -> bool:
        """True if this now holds the lock; False at once if another holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases its lock
            self._fd = None
