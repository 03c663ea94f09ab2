"""The web process's event-loop thread: its CPU per webhook at a fixed rate (issue 17).

`python -m benchmarks.main_thread [--rate 300] [--seconds 15] [--rounds 3] [ROOT ...]`

For each round and each checkout ROOT (this one when none is given; give several to
compare them back to back, alternated), the bench database is reset, the benchmark
accounts registered, `python -m benchmarks.server dmledger` started from ROOT's code, and
wrk sends P1's bodies at a fixed rate: a warm-up, then the measured load. Figures: CPU
per webhook answered 200 of the main thread (uvicorn and Litestar: the event loop), read
from `/proc/PID/task/PID/stat`, and of the whole process. CPU time is steadier than a
rate or a latency on a shared machine: at a fixed rate under saturation, both variants
do the same work each second, and what another process takes does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import DEFAULT_POSTGRES, RESULTS, ROOT, Bench, Config
from benchmarks.load import BodyMaker
from benchmarks.servers import Server


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """CPU time (user + system) one thread of `pid` has used so far."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(bench: Bench, root: Path, rate: int, tag: str) -> dict[str, Any]:
    """One server of `root`'s code on a fresh database, held at `rate` webhooks a second."""
    config = bench.config
    bench.reset_database()
    bench.register_accounts()
    maker = BodyMaker(tag=tag)
    warmup = maker.bodies(int(rate * config.warmup_seconds) + 1)
    measured = maker.bodies(int(rate * config.seconds) + 1)
    env = {**bench.server_env(), "PYTHONPATH": str(root)}
    with Server("dmledger", env, root=root) as server:
        bench.load(server, f"{tag}_warmup", warmup, config.warmup_seconds, rate)
        main_before = thread_cpu_seconds(server.pid, server.pid)
        process_before = server.cpu_seconds()
        result = bench.load(server, tag, measured, config.seconds, rate)
        main_cpu = thread_cpu_seconds(server.pid, server.pid) - main_before
        process_cpu = server.cpu_seconds() - process_before
    answered = max(len(result.ok), 1)
    return {
        "root": str(root),
        "rate_per_s": round(result.rate, 1),
        "answered_200": len(result.ok),
        "answered_otherwise": bench.details[tag]["answered_otherwise"],
        "main_thread_cpu_us_per_webhook": round(1e6 * main_cpu / answered),
        "process_cpu_us_per_webhook": round(1e6 * process_cpu / answered),
        "latency_ms": result.latency_ms,
        "machine_cores_busy": bench.details[tag]["machine_cores_busy"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("roots", nargs="*", type=Path, help="checkouts to compare (default: .)")
    parser.add_argument("--rate", type=int, default=300, help="webhooks a second (default 300)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "main_thread.json")
    args = parser.parse_args(argv)
    roots = [root.resolve() for root in args.roots] or [ROOT]
    config = Config(seconds=args.seconds)
    database_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    workdir = RESULTS / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(config, database_url, workdir)
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        # Alternated: A B, B A, A B ... so a drift of the machine falls on both.
        order = roots if round_ % 2 == 0 else roots[::-1]
        for root in order:
            run = measure(bench, root, args.rate, f"main_thread_{round_}_{roots.index(root)}")
            runs.append(run)
            print(json.dumps(run), file=sys.stderr)
    summary = {
        str(root): {
            figure: statistics.median(r[figure] for r in runs if r["root"] == str(root))
            for figure in ("main_thread_cpu_us_per_webhook", "process_cpu_us_per_webhook")
        }
        for root in roots
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rate": args.rate, "runs": runs, "medians": summary}, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
