"""The service as an operator runs it from the command line: the arguments that register the
tests' account (`dmledger accounts add`), and `dmledger serve` in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ACCOUNT, TEST_KEY
from tests.support.cluster import free_port

ADD = ["accounts", "add", "--ig-id", ACCOUNT, "--username", "@shop"]
"""`dmledger accounts add` for the tests' account; its secrets are the caller's to add."""


class Served:
    """`dmledger serve` as a separate process, as the README runs it; `output` after stop."""

    def __init__(self, env: dict[str, str]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.output = ""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # Read as it comes: a server that logs more than a pipe holds (64 KiB) would
        # otherwise stop at its next log line, in the middle of a request.
        self._lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Importing dmledger alone took 22 s on a 2-core machine at load 15 (1.5 s idle).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"dmledger serve did not start:\n{self.output}")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.append(line)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(timeout=10)
        self.output = b"".join(self._lines).decode()


def serve(database_url: str, data_dir: Path, **variables: str) -> Served:
    """`dmledger serve` on a database with the tests' secret key, quiet but for warnings;
    `variables` adds `DMLEDGER_*` settings (e.g. DMLEDGER_GRAPH_API_URL=...)."""
    return Served(
        {
            "DMLEDGER_DATABASE_URL": database_url,
            "DMLEDGER_SECRET_KEY": TEST_KEY,
            "DMLEDGER_DATA_DIR": str(data_dir),
            "DMLEDGER_LOG_LEVEL": "warning",
            **variables,
        }
    )
