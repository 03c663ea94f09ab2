"""What read models do when content is destroyed (an unsend, an erasure, an expiry).

The log keeps the sealed content and loses its data key (`application/content.py`); the
read models hold content in clear, so each removes it from its rows when the destroying
event passes. A view rebuilt afterwards reads the same events with their keys gone
(`domain.content.is_erased`), and must come out the same: what a row looks like without
its content is defined once here, and both paths produce it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table

from projections.view import Batch, Row

ERASED_KIND = "erased"
"""A message's kind once its content is gone (its kind was part of its content)."""

ERASED_PREVIEW = "[erased]"
"""A conversation's last-message preview once that message's content is gone."""


def forget_content(row: Row) -> None:
    """A message-history row without its content (a message that never arrived is left)."""
    if row["kind"] is None:
        return
    row.update(
        kind=ERASED_KIND,
        text=None,
        attachments=[],
        reply_to=None,
        quick_reply=None,
        referral=None,
    )


def content_rows(
    batch: Batch,
    table: Table,
    conversation_ids: Sequence[str],
    *,
    before: int | None = None,
    time_column: str = "recorded_at",
    kinds: Sequence[str] | None = None,
) -> list[Row]:
    """The rows of these conversations, stored or of this batch, (recorded before
    `before`; of `kinds`), each once. One query per 500 conversations."""
    columns = table.c
    wanted = set(conversation_ids)
    found: dict[int, Row] = {}
    ids = sorted(wanted)
    for start in range(0, len(ids), 500):
        conditions: list[Any] = [columns.conversation_id.in_(ids[start : start + 500])]
        if before is not None:
            conditions.append(columns[time_column] < before)
        if kinds is not None:
            conditions.append(columns.kind.in_(kinds))
        for row in batch.load(table, *conditions):
            found[id(row)] = row
    for row in batch.in_memory(table):
        found[id(row)] = row
    return [
        row
        for row in found.values()
        if row["conversation_id"] in wanted
        and (before is None or (row[time_column] is not None and row[time_column] < before))
        and (kinds is None or row["kind"] in kinds)
    ]
