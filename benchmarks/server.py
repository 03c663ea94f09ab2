"""Serve one of the benchmark apps with the settings every benchmark server shares.

`python -m benchmarks.server dmledger|bare|peer --port PORT [--workers N]`. The process
stops by itself after `--lifetime` seconds, so a harness that dies leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading

import uvicorn

SEPARATE_VARIABLE = "BENCH_SEPARATE_PROCESSES"
APPS = {
    "dmledger": "benchmarks.apps:dmledger_app",
    "bare": "benchmarks.apps:bare_app",
    "peer": "benchmarks.apps:peer_app",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--lifetime", type=float, default=600.0)
    args = parser.parse_args()

    # The parent stops the whole process group (the workers too) at the end of its life.
    timer = threading.Timer(args.lifetime, lambda: os.killpg(0, signal.SIGTERM))
    timer.daemon = True
    timer.start()
    if args.app == "dmledger" and os.environ.get(SEPARATE_VARIABLE):
        # As a larger deployment runs it: projections and the dispatcher in processes of
        # their own (in this process group, so they stop with it).
        for command in ("project", "dispatch"):
            subprocess.Popen([sys.executable, "-m", "interfaces.cli", command])
    uvicorn.run(
        APPS[args.app],
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        backlog=2048,
    )


if __name__ == "__main__":
    main()
