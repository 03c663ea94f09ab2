"""The hash chain's verification, as the console runs it: the last result for each account.

`dmledger audit verify --account ID` prints its result; the console runs the same walk
(for the account's aggregates) when asked and keeps the last result in this process.
"""

from __future__ import annotations

import threading

from application.audit import AuditLog, ChainReport
from application.ledger import Ledger
from application.ports import Clock
from domain import conversation as conversation_events
from domain import media as media_events
from infrastructure.chained_recorders import chain_verifier


class Verifications:
    """Runs `audit verify` for an account and remembers when, and what it found."""

    def __init__(self, ledger: Ledger, clock: Clock) -> None:
        self._ledger = ledger
        self._clock = clock
        self._verifier = chain_verifier(ledger.recorder)
        self._last: dict[str, tuple[int, ChainReport]] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """False where the event store keeps no hash chain (memory://)."""
        return self._verifier is not None

    def run(self, ig_account_id: str) -> ChainReport | None:
        """Walk the account's events and their links (blocking: call it in a thread)."""
        if self._verifier is None:
            return None
        aggregates = AuditLog(self._ledger).aggregate_ids(ig_account_id)
        report = self._verifier.verify(
            aggregates, also_topics=[conversation_events.STARTED, media_events.STARTED]
        )
        with self._lock:
            self._last[ig_account_id] = (self._clock.now_ms(), report)
        return report

    def last(self, ig_account_id: str) -> tuple[int, ChainReport] | None:
        """When the last verification of the account ran, and its report."""
        with self._lock:
            return self._last.get(ig_account_id)
