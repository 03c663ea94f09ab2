"""The ledger's PostgreSQL connections: a circuit that fails fast while the database is out,
and a bounded retry that does not try an open circuit again (`infrastructure.postgres_recorder`
uses both)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore
from psycopg import Connection
from psycopg.rows import DictRow

log = logging.getLogger(__name__)

FAILURES_TO_OPEN = 2
"""Consecutive connection failures that open the circuit (one operation's two attempts)."""
REST = 1.0
"""Seconds an open circuit waits before it probes the database again."""


class DatabaseUnavailable(OperationalError):
    """The circuit is open: the database failed just now, so nothing was tried."""


class ConnectionCircuit:
    """Fails fast while the database is out.

    Closed, connections are made as usual. After `failures_to_open` consecutive
    connection failures it opens: every caller gets `DatabaseUnavailable` at once. After
    `rest` seconds the next caller half-opens it, which starts one probe in the
    background (callers still fail fast meanwhile): if the database answers, the
    circuit closes; if not, it opens for another rest. Any connection that succeeds
    closes it too.
    """

    def __init__(
        self,
        probe: Callable[[], None],
        *,
        failures_to_open: int = FAILURES_TO_OPEN,
        rest: float = REST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._failures_to_open = failures_to_open
        self._rest = rest
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def before_connecting(self) -> None:
        """Raise `DatabaseUnavailable` while the circuit is open."""
        if self._open_until is None:
            return
        with self._lock:
            if self._open_until is None:
                return
            if not self._probing and self._clock() >= self._open_until:
                self._probing = True
                threading.Thread(target=self._run_probe, name="db-probe", daemon=True).start()
        raise DatabaseUnavailable("the database did not answer just now; try again shortly")

    def succeeded(self) -> None:
        if self._failures or self._open_until is not None:
            with self._lock:
                if self._open_until is not None:
                    log.warning("the database answers again")
                self._failures, self._open_until = 0, None

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self._failures_to_open:
                if self._open_until is None:
                    log.warning("the database does not answer: failing fast until it does")
                self._open_until = self._clock() + self._rest

    def _run_probe(self) -> None:
        try:
            self._probe()
        except Exception:
            self.failed()
        else:
            self.succeeded()
        finally:
            with self._lock:
                self._probing = False


def _is_connection_failure(error: BaseException) -> bool:
    """A failure to reach the database, rather than an error of a statement it ran."""
    if not isinstance(error, InterfaceError | OperationalError):
        return False
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    # No SQLSTATE: failed on our side (connecting, a pool timeout, a dropped socket).
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def install_circuit(datastore: PostgresDatastore) -> ConnectionCircuit:
    """Put a `ConnectionCircuit` in front of the datastore's connections (once)."""
    existing = getattr(datastore, "circuit", None)
    if isinstance(existing, ConnectionCircuit):
        return existing
    connect = datastore.get_connection

    def probe() -> None:
        with connect() as conn:
            conn.execute("SELECT 1")

    circuit = ConnectionCircuit(probe)

    @contextmanager
    def get_connection() -> Iterator[Connection[DictRow]]:
        circuit.before_connecting()
        try:
            with connect() as conn:
                yield conn
        except BaseException as error:
            if _is_connection_failure(error):
                circuit.failed()
            else:
                circuit.succeeded()
            raise
        circuit.succeeded()

    datastore.get_connection = get_connection  # type: ignore[method-assign]
    datastore.circuit = circuit  # type: ignore[attr-defined]
    return circuit


def retry(
    exceptions: tuple[type[Exception], ...], max_attempts: int, wait: float
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """eventsourcing's `retry`, except that an open circuit is not tried again."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def attempt(*args: Any, **kwargs: Any) -> Any:
            for attempts in range(1, max_attempts + 1):
                try:
                    return function(*args, **kwargs)
                except DatabaseUnavailable:
                    raise
                except exceptions:
                    if attempts == max_attempts:
                        raise
                    time.sleep(wait)
            return None  # not reached: the last attempt returned or raised

        return attempt

    return decorate
