"""Meta's per-account send rates, counted in the database (so every dispatcher shares
them), and the reusable attachment ids remembered per account and URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from infrastructure import migrations
from infrastructure.send_limits import (
    ATTACHMENT_ID_LIFETIME_MS,
    SqlReusableAttachments,
    SqlSendLimits,
)
from projections.database import create_view_engine

SECOND = 1_700_000_000_000


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = create_view_engine(f"sqlite:///{tmp_path}/limits.sqlite3")
    migrations.upgrade(made)
    yield made
    made.dispose()


def test_an_accounts_sends_in_one_second_stop_at_its_limit_per_class(engine: Engine) -> None:
    limits = SqlSendLimits(engine, {"text": 3, "media": 1})
    # two limiters on one database: two dispatcher processes
    other = SqlSendLimits(engine, {"text": 3, "media": 1})

    texts = [(limits if i % 2 else other).take("a", "text", SECOND + i) for i in range(5)]
    media = [limits.take("a", "media", SECOND + 10), other.take("a", "media", SECOND + 20)]
    next_second = limits.take("a", "text", SECOND + 1000)
    another_account = limits.take("b", "text", SECOND + 1)

    assert texts == [True, True, True, False, False]
    assert media == [True, False]
    assert next_second
    assert another_account


def test_old_seconds_are_forgotten(engine: Engine) -> None:
    limits = SqlSendLimits(engine, {"text": 1})
    for second in range(3):
        limits.take("a", "text", SECOND + second * 1000)
    limits.take("a", "text", SECOND + 120_000)

    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT second FROM send_rate").all()
    assert [r[0] for r in rows] == [(SECOND + 120_000) // 1000]


def test_an_attachment_id_is_remembered_per_account_url_and_type_until_it_expires(
    engine: Engine,
) -> None:
    ids = SqlReusableAttachments(engine)
    url = "https://shop.example/menu.pdf"

    ids.remember("a", url, "file", "111", SECOND)
    ids.remember("a", url, "file", "222", SECOND + 1)  # uploaded again: the newer id

    assert ids.attachment_id("a", url, "file", SECOND + 2) == "222"
    assert ids.attachment_id("a", url, "image", SECOND + 2) is None
    assert ids.attachment_id("b", url, "file", SECOND + 2) is None
    assert ids.attachment_id("a", url, "file", SECOND + 1 + ATTACHMENT_ID_LIFETIME_MS) is None
