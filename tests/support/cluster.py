"""A dmledger deployment of several processes on loopback: `serve`, `project` and
`dispatch` processes started as an operator starts them (the `dmledger` command), on one
PostgreSQL database, each of which can be stopped, or killed with SIGKILL, by its id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


@dataclass
class Process:
    """One started `dmledger` process and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """Starts `dmledger` processes with one environment, and stops every one it started."""

    database_url: str
    secret_key: str
    graph_api_url: str
    workdir: Path
    lease_seconds: int = 10
    processes: list[Process] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DMLEDGER_DATABASE_URL": self.database_url,
            "DMLEDGER_SECRET_KEY": self.secret_key,
            "DMLEDGER_GRAPH_API_URL": self.graph_api_url,
            "DMLEDGER_DATA_DIR": str(self.workdir / "var"),
            "DMLEDGER_LOG_LEVEL": "warning",
            "DMLEDGER_DISPATCH_LEASE_SECONDS": str(self.lease_seconds),
            # The CRM is a fake on loopback: allowed once the CRM-endpoint guard exists.
            "DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "true",
            "PYTHONUNBUFFERED": "1",
        }

    def command(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run a `dmledger` command to its end; its standard output."""
        done = subprocess.run(
            [sys.executable, "-m", "interfaces.cli", *args],
            cwd=ROOT,
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dmledger {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def start(self, name: str, *args: str, port: int | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "interfaces.cli", *args],
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, popen, log, port)
        self.processes.append(process)
        return process

    def serve(self, name: str, port: int | None = None) -> Process:
        """A web process without projections or dispatcher (as on a machine of its own)."""
        port = port or free_port()
        return self.start(
            name,
            "serve",
            "--no-projections",
            "--no-dispatcher",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            port=port,
        )

    def wait_ready(self, process: Process, timeout: float = 120) -> None:
        def ready() -> bool:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited:\n{process.output()}")
            try:
                return httpx.get(f"http://127.0.0.1:{process.port}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=timeout, what=f"{process.name} to answer /readyz")

    def kill(self, process: Process) -> None:
        """SIGKILL, as a machine that loses power: no clean-up of any kind."""
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait(10)

    def stop_all(self, processes: Sequence[Process] | None = None) -> None:
        """SIGTERM each process still running (then SIGKILL what ignores it)."""
        chosen = list(self.processes if processes is None else processes)
        for process in chosen:
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)
        for process in chosen:
            try:
                process.popen.wait(15)
            except subprocess.TimeoutExpired:
                process.popen.send_signal(signal.SIGKILL)
                process.popen.wait(10)
