"""What a rebuild's new view holds, kept in memory between its batches.

A live runner's batch reads the rows its events change from PostgreSQL (a preload a
table), and upserts them back: the rows may be there or not, and others read them. A
rebuild writes into new, empty tables of its own (`projections.rebuild_space`) that only
it writes, so it can know without asking what they hold: every row it has written. A
`Mirror` keeps those rows; a batch then takes them from memory instead of preloading
them, and writes the rows new to the tables with COPY rather than as an upsert.

Memory stays bounded: past `limit` rows the oldest written are let go, and the mirror is
no longer *complete*: a row it does not hold may then be stored, so a batch asks
PostgreSQL for it as a live runner does, and upserts (see `projections.batch`). The
handlers are the live runner's own: only where rows are read from and how they are
written differ, so the two cannot drift apart in what they compute.

The mirror follows what is committed: a batch stages its changes (`stage`), and the view
applies them once its transaction has committed (`commit`) or forgets everything if it
failed (`forget`), after which batches ask PostgreSQL again.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
Key = tuple[Any, ...]

MIRROR_LIMIT = 300_000
"""Rows a mirror holds at most (all the view's tables together). Measured on P5's log:
~0.4 kB a row (235 MB peak RSS against 211 MB without mirrors, for ~60,000 rows), so
~120 MB at the limit for a view, more for rows with long texts."""


class Mirror:
    """The rows of a view's tables that only this process writes, by (table, key)."""

    def __init__(self, limit: int = MIRROR_LIMIT) -> None:
        self.limit = limit
        self.rows: dict[tuple[str, Key], Row] = {}
        self.complete = True
        """True while every stored row is in `rows`: a key not there is not stored."""
        self._staged: list[tuple[tuple[str, Key], Row | None]] = []

    def begin(self) -> None:
        """A batch starts: changes staged by one neither committed nor forgotten (written
        outside `SqlView.apply`) may or may not be stored, so nothing is known."""
        if self._staged:
            self.forget()

    def stored(self, name: str, key: Key) -> bool | None:
        """Whether a row with this key is stored: True, False, or None if unknown."""
        if (name, key) in self.rows:
            return True
        return False if self.complete else None

    def get(self, name: str, key: Key) -> Row | None:
        """A copy of the stored row (a batch changes its own copy), if held."""
        row = self.rows.get((name, key))
        return None if row is None else row.copy()

    def stage(self, name: str, key: Key, row: Row | None) -> None:
        """A row a batch writes (None: deletes), held until `commit`."""
        self._staged.append(((name, key), row))

    def commit(self) -> None:
        """The staged rows are stored: hold them (letting the oldest go past `limit`)."""
        staged, self._staged = self._staged, []
        rows = self.rows
        for found, row in staged:
            if row is None:
                rows.pop(found, None)
            else:
                rows.pop(found, None)  # re-inserted last: the most recently written
                rows[found] = row
        excess = len(rows) - self.limit
        if excess > 0:
            self.complete = False
            for found in list(rows)[:excess]:
                del rows[found]

    def forget(self) -> None:
        """Hold nothing and know nothing (a batch failed, or rows changed behind us)."""
        self._staged = []
        self.rows.clear()
        self.complete = False

    def clear(self) -> None:
        """The view's tables were emptied: nothing is stored."""
        self._staged = []
        self.rows.clear()
        self.complete = True
