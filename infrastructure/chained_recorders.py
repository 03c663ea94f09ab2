"""The ledger's recorders for SQLite and PostgreSQL, writing each event's chain link with it.

The links go to a table beside the events (`stored_events_chain` on SQLite,
`dmledger_events_chain` on PostgreSQL), in the transaction that inserts the events,
after the events have their positions, and the genesis to `<that table>_genesis` with
the first links. The newest link of the log and the genesis are read while the insert
holds the write lock (SQLite's, once the events are inserted; on PostgreSQL the events
table's lock, in the insert's first round trip), so concurrent writers make one chain.
See `infrastructure.event_chain` for what a link is. The two tables are made and
migrated by `infrastructure/migrations` (revision 0001), not here.

A recorder without a keyring (a ledger built outside the composition root, as some
tests do) stores events without links, and says so once in the log.

Over 300 lines: the SQLite and the PostgreSQL recorder each write and read the same links
(with the helpers at the end), and keeping them side by side is what keeps the two
chains alike; each is about 200 lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any
from uuid import UUID

from cachetools import LRUCache
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from application.content import ContentVault
from application.ledger import Ledger
from infrastructure.account_index import SQLiteAccountIndex
from infrastructure.chain_verifier import ChainVerifier
from infrastructure.content_envelope import AesGcmEnvelope
from infrastructure.content_keys import SQLiteContentKeys
from infrastructure.event_chain import ChainKeyring, Genesis, Link, LinkedEvent, Tail
from infrastructure.eventsourcing_compat import SQLiteRecorderHooks
from infrastructure.item_keys import ItemKey, SQLiteItemKeys
from infrastructure.postgres_recorder import LedgerPostgresRecorder
from infrastructure.sql_statements import rendered

log = logging.getLogger(__name__)

LAST_LINKS_KEPT = 4_096
"""Aggregates whose latest link the PostgreSQL recorder remembers (~380 bytes each, 1.5 MiB
in all, measured with `benchmarks/probe.py`). A forgotten one is read back by the insert
(one statement more in its pipeline for all of a batch's forgotten links, as for an
aggregate another process wrote last)."""

_warned: set[str] = set()


def _warn_unchained(recorder: object) -> None:
    name = type(recorder).__name__
    if name not in _warned:
        _warned.add(name)
        log.warning("%s has no chain keys: events are stored without hash-chain links", name)


class ChainedSQLiteRecorder(SQLiteRecorderHooks):
    """`SQLiteApplicationRecorder` that writes a chain link for every event, and the
    account index's rows (`infrastructure.account_index`)."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        self.account_index = SQLiteAccountIndex(events_table_name)
        self.chain_table_name = f"{events_table_name}_chain"
        self.genesis_table_name = f"{self.chain_table_name}_genesis"
        self.chain: ChainKeyring | None = None
        self.content_keys = SQLiteContentKeys(events_table_name)
        self.item_keys = SQLiteItemKeys(events_table_name)
        super().__init__(datastore, events_table_name)
        events, chain, genesis = (
            self.events_table_name,
            self.chain_table_name,
            self.genesis_table_name,
        )
        # Table names are ours, never input: the f-strings below build no injection.
        self._select_previous = (
            f"SELECT hash FROM {chain} WHERE originator_id=? AND originator_version=?"  # noqa: S608
        )
        self._insert_links = (
            f"INSERT INTO {chain} (originator_id, originator_version, notification_id, "  # noqa: S608
            "key_id, hash, previous_position) VALUES (?,?,?,?,?,?)"
        )
        self._insert_genesis = f"INSERT INTO {genesis} VALUES (?,?,?,?)"  # noqa: S608
        self._select_linked = (
            "SELECT e.rowid AS position, e.originator_id, e.originator_version, e.topic, "  # noqa: S608
            "e.state, c.notification_id AS link_position, c.key_id, c.hash, "
            "c.previous_position "
            f"FROM {events} e LEFT JOIN {chain} c ON c.originator_id = e.originator_id "
            "AND c.originator_version = e.originator_version "
            "WHERE e.rowid >= ? ORDER BY e.rowid LIMIT ?"
        )
        self._select_orphans = (
            f"SELECT c.* FROM {chain} c LEFT JOIN {events} e "  # noqa: S608
            "ON c.originator_id = e.originator_id AND c.originator_version = e.originator_version "
            "WHERE e.originator_id IS NULL ORDER BY c.notification_id"
        )
        self._select_last = (
            f"SELECT notification_id, hash FROM {chain} "  # noqa: S608
            "WHERE previous_position IS NOT NULL ORDER BY notification_id DESC LIMIT 1"
        )
        self._select_first = f"SELECT MIN(notification_id) FROM {chain}"  # noqa: S608
        self._select_genesis = (
            f"SELECT began_at, log_began_at, key_id, hash FROM {genesis} "  # noqa: S608
            "ORDER BY began_at LIMIT 1"
        )

    def construct_create_table_statements(self) -> list[str]:
        # The account index is made with the event store's tables (by the library's
        # create_table, which `dmledger db upgrade` and SQLite's own upgrade call first).
        statements = super().construct_create_table_statements()
        statements.extend(self.account_index.create_statements)
        statements.extend(self.item_keys.create_statements)
        return statements

    def after_create_table(self, c: SQLiteCursor) -> None:
        self.account_index.after_create(c)

    def after_insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        positions: Sequence[int] | None,
        owners: Mapping[UUID, UUID] | None = None,
        item_keys: Sequence[ItemKey] = (),
        **kwargs: Any,
    ) -> None:
        assert positions is not None
        self.account_index.write(c, stored_events, positions, owners)
        self.content_keys.write(c, stored_events)
        self.item_keys.write(c, item_keys)
        if self.chain is None:
            _warn_unchained(self)
            return

        def previous(originator_id: UUID, version: int) -> bytes | None:
            c.execute(self._select_previous, (originator_id.hex, version))
            row = c.fetchone()
            return bytes(row[0]) if row is not None else None

        # The inserts above took SQLite's write lock: no other writer can move the tail.
        links, genesis = self.chain.extend(
            [
                (position, _uuid(e.originator_id), e.originator_version, e.topic, e.state)
                for position, e in zip(positions, stored_events, strict=True)
            ],
            previous,
            self._tail(c),
        )
        c.executemany(
            self._insert_links,
            [
                (
                    k.originator_id.hex,
                    k.version,
                    k.position,
                    k.key_id,
                    k.digest,
                    k.previous_position,
                )
                for k in links
            ],
        )
        if genesis is not None:
            c.execute(
                self._insert_genesis,
                (genesis.began_at, genesis.log_began_at, genesis.key_id, genesis.digest),
            )

    def _tail(self, c: SQLiteCursor) -> Tail:
        c.execute(self._select_last)
        last = c.fetchone()
        c.execute(self._select_first)
        first = c.fetchone()[0]
        c.execute(self._select_genesis)
        genesis = c.fetchone()
        return Tail(
            genesis=Genesis(genesis[0], genesis[1], genesis[2], bytes(genesis[3]))
            if genesis is not None
            else None,
            last=(int(last[0]), bytes(last[1])) if last is not None else None,
            first_linked=int(first) if first is not None else None,
        )

    # -- the content keys (`application.ports.ContentKeyStore`) ----------------------------

    def wrapped_keys(self, key_ids: Sequence[str]) -> dict[str, str]:
        with self.datastore.transaction(commit=False) as c:
            return self.content_keys.wrapped_keys(c, key_ids)

    def key_counts(
        self, conversation_ids: Sequence[str], before_ms: int | None = None
    ) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as c:
            return self.content_keys.key_counts(c, conversation_ids, before_ms)

    def rewrap_keys(self, rewrap: Callable[[str], str]) -> int:
        with self.datastore.transaction(commit=True) as c:
            return self.content_keys.rewrap_keys(c, rewrap)

    # -- the keys conversations recorded (infrastructure.item_keys) ----------------------

    def select_item_keys(
        self, asked: Mapping[UUID, Sequence[str]]
    ) -> dict[UUID, dict[str, int | None]]:
        with self.datastore.transaction(commit=False) as c:
            return self.item_keys.select(c, asked)

    # -- each account's events (infrastructure.account_index) ------------------------------

    def account_index_built(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            return self.account_index.is_built(c)

    def select_account_notifications(
        self, account_id: UUID, start: int, stop: int, limit: int, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        with self.datastore.transaction(commit=False) as c:
            return self.account_index.select(c, account_id, start, stop, limit, topics)

    def account_aggregates(self, account_id: UUID) -> set[UUID]:
        with self.datastore.transaction(commit=False) as c:
            return self.account_index.owned(c, account_id)

    def build_account_index(self, owners: Mapping[UUID, UUID]) -> None:
        with self.datastore.transaction(commit=True) as c:
            self.account_index.build(c, owners)

    # -- reading for the verifier ------------------------------------------------------

    def chain_tail(self) -> Tail:
        with self.datastore.transaction(commit=False) as c:
            return self._tail(c)

    def select_linked(self, start: int, limit: int) -> Sequence[LinkedEvent]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_linked, (start, limit))
            rows = c.fetchall()
        return [
            _linked(
                row["position"],
                UUID(row["originator_id"]),
                row["originator_version"],
                row["topic"],
                bytes(row["state"]),
                row["link_position"],
                row["key_id"],
                row["hash"],
                row["previous_position"],
            )
            for row in rows
        ]

    def orphan_links(self) -> Sequence[Link]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._select_orphans)
            rows = c.fetchall()
        return [
            Link(
                UUID(row["originator_id"]),
                row["originator_version"],
                row["notification_id"],
                row["key_id"],
                bytes(row["hash"]),
                row["previous_position"],
            )
            for row in rows
        ]


class ChainedPostgresRecorder(LedgerPostgresRecorder):
    """The ledger's PostgreSQL recorder, writing a chain link for every event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chain: ChainKeyring | None = None
        self._last_links: LRUCache[UUID, tuple[int, bytes]] = LRUCache(LAST_LINKS_KEPT)
        """The latest link this process stored for each recently written aggregate, so
        the next insert need not read it back: (version, digest)."""
        self._new_links: dict[UUID, tuple[int, bytes]] = {}
        """The last link of each aggregate of the insert in progress, until it commits."""
        self.chain_table_name = f"{self.events_table_name}_chain"
        self.genesis_table_name = f"{self.chain_table_name}_genesis"
        self.check_identifier_length(self.genesis_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.chain_table_name)
        genesis = Identifier(self.genesis_table_name)
        self._select_previous = rendered(
            SQL(
                "SELECT c.originator_id, c.originator_version, c.hash FROM {schema}.{table} c "
                "JOIN unnest(%s::uuid[], %s::bigint[]) AS w(originator_id, originator_version) "
                "ON c.originator_id = w.originator_id "
                "AND c.originator_version = w.originator_version"
            ).format(schema=schema, table=table)
        )
        self._insert_links = rendered(
            SQL(
                "INSERT INTO {schema}.{table} "
                "(originator_id, originator_version, notification_id, key_id, hash, "
                "previous_position) "
                "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[], %s::text[], "
                "%s::bytea[], %s::bigint[])"
            ).format(schema=schema, table=table)
        )
        self._insert_genesis = rendered(
            SQL(
                "INSERT INTO {schema}.{genesis} (began_at, log_began_at, key_id, hash) "
                "VALUES (%s, %s, %s, %s)"
            ).format(schema=schema, genesis=genesis)
        )
        # One row: the newest link of the log chain, the first link of any kind, and the
        # genesis (each NULL if there is none).
        self._select_tail = rendered(
            SQL(
                "SELECT l.notification_id AS last_position, l.hash AS last_hash, "
                "(SELECT min(notification_id) FROM {schema}.{table}) AS first_linked, "
                "g.began_at, g.log_began_at, g.key_id, g.hash AS genesis_hash "
                "FROM (VALUES (1)) AS one(x) "
                "LEFT JOIN LATERAL (SELECT notification_id, hash FROM {schema}.{table} "
                "  WHERE previous_position IS NOT NULL ORDER BY notification_id DESC LIMIT 1) l "
                "ON true "
                "LEFT JOIN LATERAL (SELECT * FROM {schema}.{genesis} ORDER BY began_at LIMIT 1) g "
                "ON true"
            ).format(schema=schema, table=table, genesis=genesis)
        )
        events = Identifier(self.events_table_name)
        self._select_linked = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, "
            "c.notification_id AS link_position, c.key_id, c.hash, c.previous_position "
            "FROM {schema}.{events} e LEFT JOIN {schema}.{table} c "
            "ON c.originator_id = e.originator_id "
            "AND c.originator_version = e.originator_version "
            "WHERE e.notification_id >= %s ORDER BY e.notification_id LIMIT %s"
        ).format(schema=schema, events=events, table=table)
        self._select_orphans = SQL(
            "SELECT c.* FROM {schema}.{table} c LEFT JOIN {schema}.{events} e "
            "ON c.originator_id = e.originator_id "
            "AND c.originator_version = e.originator_version "
            "WHERE e.originator_id IS NULL ORDER BY c.notification_id"
        ).format(schema=schema, events=events, table=table)

    @property
    def links_events(self) -> bool:  # type: ignore[override]
        return True

    def _read_for_link(
        self, conn: Connection[DictRow], stack: ExitStack, stored_events: Sequence[StoredEvent]
    ) -> Any:
        # Sent in the insert's pipeline, with the events table locked: the log's newest
        # link cannot move until this transaction ends.
        if self.chain is None:
            return None
        known: dict[tuple[UUID, int], bytes] = {}
        wanted = []
        first_of: dict[UUID, int] = {}
        for e in stored_events:
            first_of.setdefault(_uuid(e.originator_id), e.originator_version)
        for originator_id, version in first_of.items():
            remembered = self._last_links.get(originator_id)
            if remembered is not None and remembered[0] == version - 1:
                known[(originator_id, version - 1)] = remembered[1]
            elif version > 1:
                wanted.append((originator_id, version - 1))
        tail = stack.enter_context(conn.cursor())
        tail.execute(self._select_tail, prepare=True)
        previous = None
        if wanted:
            previous = stack.enter_context(conn.cursor())
            previous.execute(
                self._select_previous,
                ([i for i, _ in wanted], [v for _, v in wanted]),
                prepare=True,
            )
        return known, tail, previous

    def _link(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        positions: list[int],
        reads: Any,
    ) -> None:
        # Runs inside the insert's transaction, with the events table locked, once the
        # events have their positions.
        if self.chain is None:
            _warn_unchained(self)
            return
        self._new_links = {}
        known, tail_cursor, previous_cursor = reads
        stored: dict[tuple[UUID, int], bytes] = dict(known)
        if previous_cursor is not None:
            for row in previous_cursor.fetchall():
                stored[(row["originator_id"], row["originator_version"])] = bytes(row["hash"])
        links, genesis = self.chain.extend(
            [
                (position, _uuid(e.originator_id), e.originator_version, e.topic, e.state)
                for position, e in zip(positions, stored_events, strict=True)
            ],
            lambda originator_id, version: stored.get((originator_id, version)),
            _tail_of(tail_cursor.fetchone()),
        )
        curs.execute(
            self._insert_links,
            (
                [k.originator_id for k in links],
                [k.version for k in links],
                [k.position for k in links],
                [k.key_id for k in links],
                [k.digest for k in links],
                [k.previous_position for k in links],
            ),
        )
        if genesis is not None:
            curs.execute(
                self._insert_genesis,
                (genesis.began_at, genesis.log_began_at, genesis.key_id, genesis.digest),
            )
        self._new_links = {k.originator_id: (k.version, k.digest) for k in links}

    def _committed(self) -> None:
        self._last_links.update(self._new_links)
        self._new_links = {}

    # -- reading for the verifier ------------------------------------------------------

    def chain_tail(self) -> Tail:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_tail)
            return _tail_of(curs.fetchone())

    def select_linked(self, start: int, limit: int) -> Sequence[LinkedEvent]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_linked, (start, limit))
            rows = curs.fetchall()
        return [
            _linked(
                row["notification_id"],
                row["originator_id"],
                row["originator_version"],
                row["topic"],
                bytes(row["state"]),
                row["link_position"],
                row["key_id"],
                row["hash"],
                row["previous_position"],
            )
            for row in rows
        ]

    def orphan_links(self) -> Sequence[Link]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_orphans)
            rows = curs.fetchall()
        return [
            Link(
                row["originator_id"],
                row["originator_version"],
                row["notification_id"],
                row["key_id"],
                bytes(row["hash"]),
                row["previous_position"],
            )
            for row in rows
        ]


def _tail_of(row: DictRow | None) -> Tail:
    assert row is not None  # the statement always answers one row
    genesis = (
        Genesis(row["began_at"], row["log_began_at"], row["key_id"], bytes(row["genesis_hash"]))
        if row["began_at"] is not None
        else None
    )
    last = (
        (int(row["last_position"]), bytes(row["last_hash"]))
        if row["last_position"] is not None
        else None
    )
    first = row["first_linked"]
    return Tail(genesis=genesis, last=last, first_linked=int(first) if first is not None else None)


def _uuid(originator_id: UUID | str) -> UUID:
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)


def _linked(
    position: int,
    originator_id: UUID,
    version: int,
    topic: str,
    state: bytes,
    link_position: int | None,
    key_id: str | None,
    digest: bytes | None,
    previous_position: int | None,
) -> LinkedEvent:
    link = (
        Link(originator_id, version, link_position, key_id, bytes(digest), previous_position)
        if link_position is not None and key_id is not None and digest is not None
        else None
    )
    return LinkedEvent(position, originator_id, version, topic, state, link)


def install_vault(ledger: Ledger, secret_keys: Sequence[str]) -> bool:
    """Give the ledger its content vault: new content sealed, keys in the recorder's table.
    False for a recorder that keeps no key table (memory): content is then stored in clear."""
    recorder = ledger.recorder
    if isinstance(recorder, ChainedSQLiteRecorder | LedgerPostgresRecorder):
        ledger.use_vault(ContentVault(AesGcmEnvelope(list(secret_keys)), recorder))
        return True
    return False


def install_chain(recorder: object, secret_keys: Sequence[str]) -> bool:
    """Give a chained recorder its keys; False for a recorder without a chain (memory)."""
    if isinstance(recorder, ChainedSQLiteRecorder | ChainedPostgresRecorder):
        recorder.chain = ChainKeyring(secret_keys)
        return True
    return False


def chain_verifier(recorder: object) -> ChainVerifier | None:
    """A verifier of the recorder's chain, or None if it keeps none (memory, no keys)."""
    if (
        isinstance(recorder, ChainedSQLiteRecorder | ChainedPostgresRecorder)
        and recorder.chain is not None
    ):
        return ChainVerifier(recorder, recorder.chain)
    return None
