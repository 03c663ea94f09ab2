"""Starting and stopping benchmark servers on 127.0.0.1, and reading their memory and CPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from benchmarks.load import cpu_seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ProcessGroup:
    """A benchmark process started in a process group of its own, stopped with its group."""

    _process: subprocess.Popen[bytes] | None = None

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        self._stop_group(timeout=20)

    def _stop_group(self, *, timeout: float) -> None:
        """SIGTERM the group, then SIGKILL it if it has not ended within `timeout`."""
        if not self.alive():
            return
        assert self._process is not None
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        except ProcessLookupError:
            pass


class Server(ProcessGroup):
    """`python -m benchmarks.server APP` in a process group of its own, for one measurement."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        *,
        workers: int = 1,
        lifetime: float = 600.0,
        root: Path | None = None,
    ) -> None:
        self.app = app
        self.root = root or Path(__file__).parent.parent
        """The checkout whose code the server runs (another one's, to compare with it)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self._env = env
        self._lifetime = lifetime
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [sys.executable, "-m", "benchmarks.server", self.app]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        command += ["--lifetime", str(self._lifetime)]
        self._process = subprocess.Popen(
            command, env=self._env, cwd=self.root, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the {self.app} server exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):  # noqa: S310
                    pass
                if len(self.worker_pids()) >= self.workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.app} server did not start within 60 s")
            time.sleep(0.2)
        return self

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's children, or the server itself."""
        if self.workers == 1:
            return [self.pid]
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            pids = [int(p) for p in children.read_text().split()]
        except FileNotFoundError:
            return []
        # uvicorn's supervisor also starts a resource tracker process; workers listen.
        return [p for p in pids if "benchmarks" in _cmdline(p) or "spawn_main" in _cmdline(p)]

    def rss_mb(self) -> float:
        """The largest resident set size among the web workers now, in MiB."""
        sizes = [_status_kb(pid, "VmRSS") / 1024 for pid in self.worker_pids()]
        return max(sizes, default=0.0)

    def peak_rss_mb(self) -> float:
        """The largest peak resident set size among the web workers, in MiB."""
        peaks = [_status_kb(pid, "VmHWM") / 1024 for pid in self.worker_pids()]
        return max(peaks, default=0.0)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def helper_pids(self) -> list[int]:
        """The server's other processes (projections and dispatcher with `--separate`)."""
        workers = set(self.worker_pids())
        return [p for p in _pids() if p not in workers and _pgid(p) == self.pid]

    def helpers_cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.helper_pids())


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except FileNotFoundError:
        return ""


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU time used so far by each PostgreSQL server process of the machine (every
    database's, not only the benchmark's)."""
    return {p: cpu_seconds(p) for p in _pids() if _comm(p) == "postgres"}


def cpu_used_since(before: dict[int, float], now: dict[int, float]) -> float:
    """CPU time the processes of `now` used since `before` (those that ended are lost)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent not idle (all cores, in seconds)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _pids() -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()]


def _pgid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return -1


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""
