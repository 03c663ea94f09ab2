"""P3's parts: the CRM receiver's process, its baseline under wrk, the dispatcher's process,
and the check that every delivery in the outbox arrived, signed, exactly once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.load import cpu_seconds
from benchmarks.servers import ProcessGroup, free_port

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).parent / "crm.lua"


class Receiver(ProcessGroup):
    """`python -m benchmarks.receiver` in a process group of its own."""

    def __init__(self, out: Path, *, port: int | None = None, lifetime: float = 900.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = out
        self._lifetime = lifetime
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Receiver:
        self.out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "benchmarks.receiver", "--port", str(self.port)]
        command += ["--out", str(self.out), "--lifetime", str(self._lifetime)]
        self._process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the receiver exited with {self._process.returncode}")
            try:
                self.count()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the receiver did not start within 30 s") from None
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def count(self) -> int:
        """How many POSTs arrived so far."""
        with urllib.request.urlopen(self.url + "/count", timeout=5) as answer:  # noqa: S310
            return int(answer.read())

    def stop(self) -> None:
        self._stop_group(timeout=60)  # it writes out what it received as it stops

    def received(self) -> list[dict[str, Any]]:
        """Stop the receiver; what it was sent, in order of arrival."""
        self.stop()
        if not self.out.exists():
            return []
        with self.out.open() as f:
            return [json.loads(line) for line in f]


def receiver_rate(workdir: Path, body: str, *, seconds: float, connections: int) -> dict[str, Any]:
    """A fresh receiver's rate under wrk, POSTing `body` over `connections` connections."""
    body_file = workdir / "p3-baseline-body.json"
    body_file.write_text(body)
    with Receiver(workdir / "p3-baseline-received.jsonl") as receiver:
        cpu_before = receiver.cpu_seconds()
        command = [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(LUA_SCRIPT),
            receiver.url,
            "--",
            str(body_file),
            "/crm/baseline",
            "evt_baseline",
            str(int(time.time())),
            "v1,YmFzZWxpbmU=",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
        cpu = receiver.cpu_seconds() - cpu_before
        arrived = len(receiver.received())
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", done.stdout)
    if found is None:
        raise RuntimeError(f"wrk printed no rate: {done.stdout} {done.stderr}")
    rate = float(found.group(1))
    return {
        "rate_per_s": round(rate, 1),
        "connections": connections,
        "seconds": seconds,
        "body_bytes": len(body.encode()),
        "arrived": arrived,
        "p99": f"{p99.group(1)} {p99.group(2)}" if p99 else None,
        "receiver_cores_busy": round(cpu / max(seconds, 1e-9), 2),
    }


class DispatcherProcess(ProcessGroup):
    """`python -m interfaces.cli dispatch`, as a deployment runs it, in its own group."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __enter__(self) -> DispatcherProcess:
        command = [sys.executable, "-m", "interfaces.cli", "dispatch"]
        self._process = subprocess.Popen(
            command, env=self.env, cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL
        )
        return self

    def stop(self) -> None:
        self._stop_group(timeout=30)


def wait_delivered(
    database_url: str,
    dispatchers: Sequence[DispatcherProcess],
    expected: int,
    *,
    stall_seconds: float = 60.0,
    poll_seconds: float = 0.1,
) -> dict[str, Any]:
    """Poll the dispatchers' state until `expected` deliveries are recorded as delivered
    (or nothing moved for `stall_seconds`); the dispatchers' CPU while they delivered."""

    def cpu() -> float:
        return sum(cpu_seconds(d.pid) for d in dispatchers)

    query = "SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) FROM delivery_state"
    delivered = 0
    moved_at = time.monotonic()
    cpu_first = cpu_last = 0.0
    seen_first = seen_last = 0.0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while all(d.alive() for d in dispatchers):
            row = conn.execute(query, prepare=True).fetchone()
            assert row is not None
            now = time.monotonic()
            if row[0] != delivered:
                if not delivered:
                    cpu_first, seen_first = cpu(), now
                delivered = row[0]
                moved_at = now
                cpu_last, seen_last = cpu(), now
            if delivered >= expected or now - moved_at > stall_seconds:
                break
            time.sleep(poll_seconds)
        statuses: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM delivery_state GROUP BY status").fetchall()
        )
        span = conn.execute(
            "SELECT min(updated_at), max(updated_at), sum(attempts), "
            "count(*) FILTER (WHERE attempts > 1) "
            "FROM delivery_state WHERE status = 'delivered'"
        ).fetchone()
    assert span is not None
    seen = seen_last - seen_first
    return {
        "delivered": delivered,
        "statuses": statuses,
        "first_ms": span[0],
        "last_ms": span[1],
        "attempts": int(span[2] or 0),
        "delivered_after_a_retry": int(span[3] or 0),
        "dispatcher_cores_busy": round((cpu_last - cpu_first) / seen, 2) if seen > 0 else None,
    }


def check_deliveries(
    expected: dict[str, tuple[str, str]], received: list[dict[str, Any]]
) -> dict[str, Any]:
    """Match what arrived with the outbox's CRM deliveries (`webhook-id` -> (secret, body)),
    verifying each Standard Webhooks signature independently of dmledger's code."""
    arrivals = Counter(r["id"] for r in received)
    bad_signatures = 0
    wrong_bodies = 0
    for r in received:
        secret, body = expected.get(r["id"], (None, None))
        if secret is None or body is None:
            continue
        raw = base64.b64decode(r["body"])
        if raw != body.encode():
            wrong_bodies += 1
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = r["id"].encode() + b"." + r["timestamp"].encode() + b"." + raw
        want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        given = [s.split(",", 1)[1] for s in r["signature"].split() if s.startswith("v1,")]
        if not any(hmac.compare_digest(want, g) for g in given):
            bad_signatures += 1
    missing = expected.keys() - arrivals.keys()
    unexpected = arrivals.keys() - expected.keys()
    duplicates = sum(n - 1 for n in arrivals.values() if n > 1)
    return {
        "expected": len(expected),
        "arrived": len(received),
        "missing": len(missing),
        "duplicates": duplicates,
        "unexpected": len(unexpected),
        "bad_signatures": bad_signatures,
        "wrong_bodies": wrong_bodies,
        "complete": not missing and not unexpected and not bad_signatures and not wrong_bodies,
    }
