"""Backfills started over HTTP (`POST /api/v1/accounts/{id}/backfill`): each runs in a
thread of its own, one at a time per account, and `GET` says how far the last one went.

What a run stores is in the log at once; what is kept here is only its progress, in this
process (a restart forgets it; running the backfill again stores nothing twice).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from application.backfill import Backfill, BackfillReport
from application.errors import ApplicationError, Conflict, NotFound
from application.ports import HistoryUnavailable

log = logging.getLogger(__name__)

RunState = Literal["running", "done", "failed"]


@dataclass(frozen=True)
class BackfillRun:
    """The last backfill of an account started in this process."""

    ig_account_id: str
    state: RunState
    started_at: int
    """When it started (ms)."""
    conversations: int = 0
    messages: int = 0
    stored: int = 0
    error: str | None = None


class BackfillRuns:
    """Starts backfills in the background and keeps the progress of each account's last."""

    def __init__(self, backfill: Backfill, now: Callable[[], int]) -> None:
        self._backfill = backfill
        self._now = now
        self._runs: dict[str, BackfillRun] = {}
        self._lock = threading.Lock()

    def start(self, ig_account_id: str, *, since: datetime | None, notify_crm: bool) -> BackfillRun:
        """Start a backfill of the account; Conflict if one is running (NotFound for an
        account not served)."""
        if not self._backfill.serves(ig_account_id):
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        with self._lock:
            running = self._runs.get(ig_account_id)
            if running is not None and running.state == "running":
                raise Conflict(f"a backfill of {ig_account_id} is running")
            run = BackfillRun(ig_account_id, "running", started_at=self._now())
            self._runs[ig_account_id] = run
        threading.Thread(
            target=self._run,
            args=(run, since, notify_crm),
            name=f"backfill-{ig_account_id}",
            daemon=True,
        ).start()
        return run

    def last(self, ig_account_id: str) -> BackfillRun | None:
        """The account's last backfill started in this process, if any."""
        with self._lock:
            return self._runs.get(ig_account_id)

    def _run(self, run: BackfillRun, since: datetime | None, notify_crm: bool) -> None:
        def progress(report: BackfillReport) -> None:
            self._update(run, report, "done" if report.done else "running")

        try:
            self._backfill.run(
                run.ig_account_id, since=since, notify_crm=notify_crm, progress=progress
            )
        except (ApplicationError, HistoryUnavailable) as failure:
            self._fail(run, str(failure))
        except Exception as failure:
            log.exception("the backfill of %s failed", run.ig_account_id)
            self._fail(run, str(failure) or type(failure).__name__)

    def _update(self, run: BackfillRun, report: BackfillReport, state: RunState) -> None:
        with self._lock:
            self._runs[run.ig_account_id] = replace(
                self._runs[run.ig_account_id],
                state=state,
                conversations=report.conversations,
                messages=report.messages,
                stored=report.stored,
            )

    def _fail(self, run: BackfillRun, error: str) -> None:
        with self._lock:
            self._runs[run.ig_account_id] = replace(
                self._runs[run.ig_account_id], state="failed", error=error[:1000]
            )
