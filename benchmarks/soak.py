"""The soak (P6, on request): `./benchmarks/run --soak [MINUTES]` holds dmledger at a fixed
rate for that long (30 minutes by default; not in CI) and samples the web worker's memory
after every half minute of load.

The rate is half what one web worker takes at 32 connections on this machine (measured
first, for 10 s, as P1 does), or `--soak-rate`. The figure is the growth of the resident
set from the median of the first quarter of the samples (after the caches filled) to the
median of the last quarter; the note gives the peak. Targets: no growth (under 5 MiB, the
noise of the allocator) and at most 100 MiB.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import probe
from benchmarks.load import BodyMaker

if TYPE_CHECKING:
    from benchmarks.harness import Bench

CHUNK_SECONDS = 30.0


def measure(
    bench: Bench, minutes: float, rate: float | None, *, probe_directory: Path | None = None
) -> dict[str, Any]:
    """The soak; with `probe_directory` (`--probe`), the worker's caches and tracemalloc's
    snapshots after the first sample and at the end of each quarter
    (`benchmarks/probe.py`), compared in `details.soak.probe`."""
    config = bench.config
    bench.reset_database()
    bench.register_accounts()
    maker = BodyMaker(tag="soak")
    samples: list[tuple[float, float]] = []
    extra: dict[str, str] = {}
    if probe_directory is not None:
        shutil.rmtree(probe_directory, ignore_errors=True)
        extra[probe.DIRECTORY_VARIABLE] = str(probe_directory)
    dumps: list[tuple[str, int]] = []
    # The server outlives the probe and every chunk (it stops by itself after its lifetime).
    with bench.server("dmledger", lifetime=minutes * 60 + 900, **extra) as server:
        if rate is None:
            trial = maker.bodies(int(config.max_rate * 10))
            closed = bench.load(server, "soak_probe", trial, 10.0)
            rate = max(1.0, round(closed.rate / 2))
        chunk = min(CHUNK_SECONDS, minutes * 60)
        chunks = max(1, round(minutes * 60 / chunk))
        started = time.monotonic()
        for n in range(chunks):
            bodies = maker.bodies(int(rate * chunk) + 1)
            bench.load(server, f"soak_{n}", bodies, chunk, rate)
            samples.append((round(time.monotonic() - started, 1), round(server.rss_mb(), 1)))
            if probe_directory is not None and n in {
                0,
                *(chunks * q // 4 - 1 for q in (1, 2, 3, 4)),
            }:
                dumps.append((f"{samples[-1][0] / 60:.1f} min", len(dumps) + 1))
                probe.ask(server.worker_pids()[0], probe_directory, dumps[-1][1])
        peak = server.peak_rss_mb()
    quarter = max(1, len(samples) // 4)
    first = statistics.median(rss for _, rss in samples[:quarter])
    last = statistics.median(rss for _, rss in samples[-quarter:])
    answered = sum(bench.details[f"soak_{n}"]["answered_200"] for n in range(len(samples)))
    details = {
        "rate_per_s": rate,
        "minutes": minutes,
        "rss_mb_samples": samples,
        "answered_200": answered,
    }
    if probe_directory is not None:
        details["probe"] = probe.report(probe_directory, dumps)
        print(details["probe"], file=sys.stderr)
    bench.details["soak"] = details
    return {"rate": rate, "minutes": minutes, "growth_mb": last - first, "peak_mb": peak}
