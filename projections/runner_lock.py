"""One active runner per projection: the others wait as standbys.

On PostgreSQL an advisory lock per projection (and schema), held by a session of its
own; the runner that holds it also LISTENs for the ledger's NOTIFY, so commits of other
processes wake it. On SQLite a lock file beside the database. A rebuild takes the same
lock without waiting (`ProjectionRunner.exclusively`).
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

from projections.notifications import listen

log = logging.getLogger(__name__)


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
    ) -> None:
        self._name = name
        self._engine = engine
        self._events_channel = events_channel
        self._wake = wake
        self._following = following
        self._stop = stop
        self._wait = wait
        self._listens = listen
        self._released = threading.Event()
        self._conn: Connection | None = None
        self._held: int | None = None
        """The key of the lock, while held."""
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
        self._conn = engine.connect()
        while not self._stop.is_set():
            held = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            self._conn.commit()
            if held:
                self._held = key
                if self._listens:
                    log.info("projection %s: this runner is the active one", self._name)
                    threading.Thread(
                        target=self._listen, name=f"listen-{self._name}", daemon=True
                    ).start()
                return True
            if not self._wait:
                break
            self._stop.wait(1.0)
        return False

    def _listen(self) -> None:
        listen(
            self._engine,
            self._events_channel,
            self._wake,
            lambda: self._stop.is_set() or self._released.is_set(),
            self._following.set,
        )

    def __exit__(self, *_: object) -> None:
        self._released.set()
        if self._listens:
            self._following.clear()
        if self._file is not None:
            self._file.release()
        if self._conn is not None:
            if self._held is not None:
                # Released now: the server notices a closed session only a moment later,
                # and a rebuild right after another one found the lock still held.
                with suppress(DBAPIError):
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._held})
                    self._conn.commit()
            # The lock belongs to the session: a pooled connection would keep holding it.
            self._conn.invalidate()
            self._conn.close()


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
