"""P8: what sealing each message's content under a data key of its own costs (issue 14).

The same dmledger, in the same run, with content sealed (as shipped) and stored in clear
(`BENCH_CONTENT_IN_CLEAR`: the ledger's mapper without its vault, a benchmark-only switch
that `benchmarks/apps.py` applies after the composition root built the services):

- ingest: the web process's CPU per webhook at a fixed rate well under saturation (so
  both variants do the same work per second; CPU per webhook is steadier than a rate on a
  shared machine), runs alternated sealed, clear, clear, sealed, each on a fresh database;
- rebuild: the CPU of one pass rebuilding every projection from a log filled sealed, and
  from the same bodies filled in clear.

Both ratios are sealed / clear; the target is < 1.10 for each.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from benchmarks.load import BodyMaker

if TYPE_CHECKING:
    from benchmarks.harness import Bench

CLEAR_VARIABLE = "BENCH_CONTENT_IN_CLEAR"
ORDER = ("sealed", "clear", "clear", "sealed")


def store_in_clear(services: Any) -> None:
    """The ledger stores (and reads) content in clear from now on: the baseline."""
    services.ledger.mapper.vault = None


@contextmanager
def variant(name: str) -> Iterator[None]:
    """The environment of a server started inside: content sealed or in clear."""
    before = os.environ.get(CLEAR_VARIABLE)
    if name == "clear":
        os.environ[CLEAR_VARIABLE] = "1"
    else:
        os.environ.pop(CLEAR_VARIABLE, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CLEAR_VARIABLE, None)
        else:
            os.environ[CLEAR_VARIABLE] = before


def measure(bench: Bench) -> dict[str, Any]:
    from benchmarks.harness import store_bodies

    config = bench.config
    rate = 40 if config.smoke else 150
    ingest: dict[str, list[int]] = {"sealed": [], "clear": []}
    for n, name in enumerate(ORDER):
        bench.reset_database()
        bench.register_accounts()
        maker = BodyMaker(tag=f"p8{n}")
        warmup = maker.bodies(int(rate * config.warmup_seconds) + 1)
        measured = maker.bodies(int(rate * config.seconds) + 1)
        with variant(name), bench.server("dmledger") as server:
            bench.load(server, f"p8_{n}_{name}_warmup", warmup, config.warmup_seconds, rate)
            bench.load(server, f"p8_{n}_{name}", measured, config.seconds, rate)
        ingest[name].append(bench.details[f"p8_{n}_{name}"]["server_cpu_us_per_request"])

    rebuild: dict[str, float] = {}
    bodies = BodyMaker(tag="p8r", participants=config.rebuild_participants).bodies(
        config.rebuild_bodies // 2
    )
    for name in ("sealed", "clear"):
        bench.reset_database()
        bench.register_accounts()
        with bench.services() as services:
            if name == "clear":
                store_in_clear(services)
            store_bodies(services, bodies)
        with psycopg.connect(bench.database_url, autocommit=True) as db:
            db.execute("VACUUM ANALYZE")
        with bench.services() as services:
            if name == "clear":
                store_in_clear(services)
            cpu = time.process_time()
            services.read_models.rebuild()
            rebuild[name] = time.process_time() - cpu
    sealed_us, clear_us = _mean(ingest["sealed"]), _mean(ingest["clear"])
    details = {
        "rate_per_s": rate,
        "cpu_us_per_webhook": ingest,
        "rebuild_cpu_seconds": {k: round(v, 3) for k, v in rebuild.items()},
        "rebuild_events": "about 2 per body",
    }
    bench.details["p8_content_sealing"] = details
    return {
        "ingest_ratio": sealed_us / clear_us if clear_us else float("nan"),
        "rebuild_ratio": rebuild["sealed"] / rebuild["clear"] if rebuild["clear"] else float("nan"),
        "sealed_us": sealed_us,
        "clear_us": clear_us,
        "rebuild": rebuild,
    }


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0
