"""Rebuilding read models from the log in one pass: each notification is read and decoded
once and applied to every projection being rebuilt.

Three runners catching up one after the other read and decode the whole log three times;
reading and decoding was about a quarter of each runner's time. Each projection still
writes its own rows and tracking position in one transaction per batch, refused with
`ViewMovedOn` if another runner moved its view meanwhile (that projection then finishes
on its own runner, from where its view stands).

Batches are larger than a live runner's: a rebuild is far behind the head, and each
transaction, preload and bulk write costs the same whatever its size. A batch is bounded
by `batch_size` events, and each event changes at most a few rows, so memory stays
bounded however long the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from projections.runner import Progress, ProjectionRunner
from projections.view import ViewMovedOn

log = logging.getLogger(__name__)

REBUILD_BATCH = 10_000
"""Events per transaction of a rebuild."""


def rebuild(
    runners: Sequence[ProjectionRunner],
    *,
    batch_size: int = REBUILD_BATCH,
    progress: Progress | None = None,
) -> int:
    """Drop these projections' views and rebuild them from the whole log, in one pass;
    the number of notifications applied to each."""
    if not runners:
        return 0
    ledger = runners[0].ledger
    for runner in runners:
        runner.view.drop()
    head = ledger.recorder.max_notification_id() or 0 if progress else 0
    together = list(runners)
    position = 0
    applied = 0
    while together:
        notifications = ledger.recorder.select_notifications(start=position + 1, limit=batch_size)
        if not notifications:
            break
        decoder = together[0]
        items: list[tuple[Any, int]] = [
            (event, n.id) for n in notifications if (event := decoder.decode(n)) is not None
        ]
        upto = notifications[-1].id
        for runner in list(together):
            try:
                runner.apply(items, upto=upto, after=position)
            except ViewMovedOn:
                log.warning("rebuild of %s: another runner moved its view", runner.name)
                together.remove(runner)
        position = upto
        applied += len(notifications)
        if progress is not None:
            progress(position, max(head, position))
        if len(notifications) < batch_size:
            break
    for runner in runners:
        if runner not in together:
            runner.catch_up()  # from wherever the other runner left its view
    # What was committed while the pass ran.
    return applied + max((runner.catch_up() for runner in together), default=0)
