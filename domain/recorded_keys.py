"""What a conversation no longer holds of the keys it has recorded, as the store answers it.

A conversation knows what it has recorded by key (`Conversation.recorded`), to refuse what
Meta delivers again. It keeps only its `RECENT_KEYS` most recent keys, so that it (and its
snapshots) stays small however long the thread; the store keeps every key, in an index
written with the events (`infrastructure/item_keys.py`). A key older than the window is
looked up in an `OlderKeys`: the ledger writer gives one to each conversation it loads,
asks the store about the keys looked up in it (one query per batch, before the commit),
and runs the batch again if the store knew one (`application/ledger_writer.py`).
"""

from __future__ import annotations

RECENT_KEYS = 64
"""How many of its most recent keys a conversation keeps (Meta's redeliveries mostly come
within minutes; older ones are asked of the store). Each is ~200 bytes in memory (a
message id of ~100 characters, its time), so a conversation at the window is ~15 KiB in
the writer's cache: 256 made it ~52 KiB, and a web worker following 400 busy
conversations grew by ~20 MiB as they filled their windows (P6's soak)."""


class OlderKeysUnknown(Exception):
    """A conversation past its window was asked about a key without the store's answers."""


class OlderKeys:
    """The store's answers about keys a conversation has forgotten, and what was asked.

    Kept in memory beside the aggregate (never stored, never in a snapshot): `found` holds
    the keys the store knows (with their value) and the keys this process has forgotten
    since its last commit; `asked`, the keys looked up and not found, which the writer
    checks with the store before it commits."""

    def __init__(self, found: dict[str, int | None] | None = None) -> None:
        self.found: dict[str, int | None] = dict(found or {})
        self.asked: set[str] = set()

    def lookup(self, key: str) -> tuple[bool, int | None]:
        """Whether `key` is known recorded (and its value); an unknown key is asked."""
        if key in self.found:
            return True, self.found[key]
        self.asked.add(key)
        return False, None

    def committed(self) -> None:
        """The batch is stored: what it forgot is in the store's index, what it asked is
        answered."""
        self.found.clear()
        self.asked.clear()
