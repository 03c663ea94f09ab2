"""PostgreSQL LISTEN: wakes whoever waits for the ledger or an outbox in other processes."""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
from psycopg import sql
from sqlalchemy import Engine

log = logging.getLogger(__name__)


def listen(
    engine: Engine,
    channel: str,
    wake: Callable[[], None],
    done: Callable[[], bool],
    listening: Callable[[], None] = lambda: None,
) -> None:
    """Call `wake` on each NOTIFY on `channel` until `done()`; blocks (run it in a thread).
    `listening` is called once LISTEN is in force. If it cannot listen it logs why and
    returns: the caller's polling carries on."""
    url = engine.url
    try:
        with psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=True,
        ) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            listening()
            while not done():
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    wake()
    except psycopg.Error as error:
        log.warning("cannot LISTEN on %s (%s); polling instead", channel, error)
