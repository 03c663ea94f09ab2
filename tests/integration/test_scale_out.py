"""Scale-out correctness: separate web, projection and dispatcher processes on one
database, one of each killed with SIGKILL mid-load, and nothing lost, doubled or reordered.

The scenario, and what is killed and replaced, is described in `tests/support/scale_out.py`;
`benchmarks/scale_out.py` runs it at a larger size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scale_out import ScaleOut

pytestmark = [pytest.mark.postgres, pytest.mark.heavy]

SIZE = 1500
PARTICIPANTS = 30
POOL_SIZE = 2
"""The event store's base pool of each process (5 by default): the
processes' peak measured 59 connections with 2 (70 with 5), which leaves room for the test
another pytest-xdist worker runs beside this one under PostgreSQL's default 100."""


async def test_a_deployment_that_loses_one_process_of_each_kind_loses_doubles_and_reorders_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    # given 2 web, 2 projection and 2 dispatcher processes on one database, 3 accounts with
    # rules and CRM endpoints; when 1,500 signed webhooks arrive, alternating between the
    # web processes, and one process of each kind is killed halfway
    report = await ScaleOut(
        f"{postgres_url}&pool_size={POOL_SIZE}",
        tmp_path,
        size=SIZE,
        participants=PARTICIPANTS,
        say=print,
    ).run()

    # then every acknowledged item is stored once, every decision made once, every reply
    # and notification delivered (twice only under its one id), each conversation in order
    print(report.figures)
    assert report.failures == [], "\n".join(report.failures)
    assert report.figures["replies_queued"] > 0
    assert report.figures["crm_deliveries"] > report.figures["items"]
