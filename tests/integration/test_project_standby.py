"""A second `dmledger project` says that it waits behind the first, and when it takes over."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

pytestmark = pytest.mark.postgres


class Project:
    """`dmledger project` as a process, its stderr read line by line."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", "project"],
            env={
                **os.environ,
                "DMLEDGER_DATABASE_URL": database_url,
                "DMLEDGER_SECRET_KEY": TEST_KEY,
                "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def says(self, words: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if words in line:
                return line
        pytest.fail(f"`dmledger project` never said {words!r}; it said:\n{''.join(self.seen)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def test_a_standby_project_says_it_waits_then_that_it_took_over(
    postgres_url: str, tmp_path: Path
) -> None:
    first = Project(postgres_url, tmp_path)
    try:
        active = first.says("running projections:")
        assert "conversation_list" in active

        second = Project(postgres_url, tmp_path)
        try:
            waiting = second.says("waiting behind another process's runner")
            assert "conversation_list" in waiting

            first.stop()
            second.says("took over conversation_list")
        finally:
            second.stop()
    finally:
        first.stop()
