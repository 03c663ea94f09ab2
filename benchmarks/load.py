"""The load: distinct, correctly signed webhook bodies, sent by wrk over keep-alive connections.

Each body is sent once. wrk runs one connection per thread (see `webhooks.lua`), so for
every body we know whether it was answered 200, answered otherwise, or never answered,
and can compare what was acknowledged with what the store holds, item by item.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.identity import conversation_id

LUA_SCRIPT = Path(__file__).parent / "webhooks.lua"
APP_SECRET = "bench-meta-app-secret"  # noqa: S105 - signs benchmark bodies only
"""One Meta app: every benchmark account shares its app secret, as Meta's accounts do."""
ACCOUNTS = ("17841400000000101", "17841400000000102", "17841400000000103")
ATTACHMENT_KINDS = ("image", "video", "audio", "share")


def register_accounts(services: Any) -> None:
    """Register the benchmark accounts (`ACCOUNTS`, all of one Meta app) in dmledger's
    `services`, as an operator's `dmledger accounts add` does."""
    for n, ig_id in enumerate(ACCOUNTS):
        services.writer.run_now(
            services.accounts.register(
                ig_account_id=ig_id,
                username=f"benchshop{n}",
                app_secret=APP_SECRET,
                access_token=f"IGAA-bench-token-{n}",
                verify_token=f"bench-verify-{n}",
                by="benchmark",
            )
        )


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Body:
    """One request: its bytes, and the (conversation id, event key) of each item it records."""

    raw: bytes
    keys: list[tuple[str, str]]


@dataclass
class BodyMaker:
    """Makes a realistic mix of distinct bodies for the benchmark accounts.

    About 55% texts, 15% attachments, 15% echoes of the business's replies, 10%
    reactions to earlier messages, 5% batches of two texts in one delivery.
    """

    participants: int = 400
    tag: str = "p1"
    seed: int = 7
    _n: int = 0
    _clock: int = 1_767_225_600_000
    _sent_mids: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._random = random.Random(f"{self.seed}:{self.tag}")
        self._people = [
            (ACCOUNTS[i % len(ACCOUNTS)], f"55{i:014d}") for i in range(self.participants)
        ]

    def bodies(self, count: int) -> list[Body]:
        return [self.body() for _ in range(count)]

    def body(self, account: str | None = None, participant: str | None = None) -> Body:
        if account is None or participant is None:
            account, participant = self._random.choice(self._people)
        roll = self._random.random()
        if roll < 0.05:
            items = [self._text(account, participant), self._text(account, participant)]
        elif roll < 0.15 and self._sent_mids.get((account, participant)):
            items = [self._reaction(account, participant)]
        elif roll < 0.30:
            items = [self._echo(account, participant)]
        elif roll < 0.45:
            items = [self._attachment(account, participant)]
        else:
            items = [self._text(account, participant)]
        envelope = {
            "object": "instagram",
            "entry": [
                {"time": self._clock + 500, "id": account, "messaging": [i for i, _ in items]}
            ],
        }
        raw = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        cid = str(conversation_id(account, participant))
        return Body(raw, [(cid, key) for _, key in items])

    # -- items -------------------------------------------------------------------------

    def _tick(self) -> int:
        self._clock += self._random.randint(1, 40)
        return self._clock

    def _mid(self, account: str, participant: str) -> str:
        self._n += 1
        # As long as Meta's, and unique to this run's tag.
        mid = (
            f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj{account}:{participant}:"
            f"{self.tag}:{self._n:09d}ZDZD"
        )
        self._sent_mids.setdefault((account, participant), []).append(mid)
        return mid

    def _text(self, account: str, participant: str) -> tuple[dict[str, Any], str]:
        mid = self._mid(account, participant)
        text = self._random.choice(TEXTS)
        item = {
            "sender": {"id": participant},
            "recipient": {"id": account},
            "timestamp": self._tick(),
            "message": {"mid": mid, "text": text},
        }
        return item, f"message:{mid}"

    def _echo(self, account: str, participant: str) -> tuple[dict[str, Any], str]:
        mid = self._mid(account, participant)
        item = {
            "sender": {"id": account},
            "recipient": {"id": participant},
            "timestamp": self._tick(),
            "message": {"mid": mid, "text": self._random.choice(REPLIES), "is_echo": True},
        }
        return item, f"message:{mid}"

    def _attachment(self, account: str, participant: str) -> tuple[dict[str, Any], str]:
        mid = self._mid(account, participant)
        kind = self._random.choice(ATTACHMENT_KINDS)
        asset = f"1805{self._n:014d}"
        payload: dict[str, Any] = {
            "url": "https://lookaside.fbsbx.com/ig_messaging_cdn/"
            f"?asset_id={asset}&signature=AYe{kind.title()}Sig{self._n:08d}kJ8sW3nL"
        }
        if kind == "share":
            payload["ig_post_media_id"] = f"1813{self._n:014d}"
            payload["title"] = "New season, new colours. Tap to shop the drop."
        item = {
            "sender": {"id": participant},
            "recipient": {"id": account},
            "timestamp": self._tick(),
            "message": {"mid": mid, "attachments": [{"type": kind, "payload": payload}]},
        }
        return item, f"message:{mid}"

    def _reaction(self, account: str, participant: str) -> tuple[dict[str, Any], str]:
        mid = self._random.choice(self._sent_mids[(account, participant)][-20:])
        at = self._tick()
        emoji = "\u2764\ufe0f"
        item = {
            "sender": {"id": participant},
            "recipient": {"id": account},
            "timestamp": at,
            "reaction": {"mid": mid, "action": "react", "reaction": "love", "emoji": emoji},
        }
        return item, f"react:{mid}:{participant}:love:{emoji}:{at}"


TEXTS = (
    "Hi! Do you ship to M\u00fcnchen? \U0001f4e6",
    "How much is the blue one?",
    "Is this still available in size M?",
    "Thanks!! \U0001f60d",
    "Can I change the delivery address of order 48213?",
    "When do you open on Saturday?",
    "ok",
    "Do you have a discount code for first orders? I saw your story yesterday and loved it",
)
REPLIES = (
    "Yes, we ship to Germany. Delivery takes 3-5 days.",
    "It is 39 EUR, and in stock.",
    "Sure, send me the new address and I will update it.",
    "We open at 10:00 on Saturdays.",
)


def write_bodies(bodies: list[Body], prefix: Path, threads: int) -> None:
    """Body i goes to thread i % threads, in order (the layout `webhooks.lua` expects)."""
    files = [open(f"{prefix}{k}.tsv", "wb") for k in range(threads)]  # noqa: SIM115
    try:
        for i, body in enumerate(bodies):
            files[i % threads].write(sign(body.raw).encode() + b"\t" + body.raw + b"\n")
    finally:
        for f in files:
            f.close()


@dataclass
class LoadResult:
    """What wrk measured, and which bodies were answered how."""

    rate: float
    """Bodies answered 200 per second, from the first request to the last answer."""
    seconds: float
    ok: list[int]
    """Indices of the bodies answered 200."""
    failed: dict[int, int]
    """Index -> status, for bodies answered with anything but 200."""
    unanswered: list[int]
    """Indices of bodies sent but never answered (a connection failed or the load ended)."""
    latency_ms: dict[str, float]
    latency_max_ms: float
    exhausted: int
    """Requests sent after a thread ran out of distinct bodies (repeats; should be 0)."""
    errors: dict[str, int]
    wrk_cpu: float = 0.0
    """Cores wrk itself kept busy (CPU seconds per second of load)."""


def run_wrk(
    url: str,
    prefix: Path,
    out: Path,
    *,
    connections: int,
    seconds: float,
    rate: float = 0.0,
) -> LoadResult:
    """Send the bodies under `prefix` with wrk for about `seconds` (or until they run out)."""
    command = [
        "wrk",
        f"-t{connections}",
        f"-c{connections}",
        f"-d{int(seconds) + 30}s",
        "--timeout",
        "20s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(prefix),
        str(out),
        str(seconds),
        str(rate),
        str(connections),
    ]
    out.unlink(missing_ok=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Every thread stops itself after `seconds`; wrk itself waits out -d unless interrupted.
    time.sleep(seconds)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and not _all_threads_stopped(process):
        time.sleep(0.2)
    wrk_cpu = cpu_seconds(process.pid)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    if not out.exists():
        raise RuntimeError(f"wrk wrote no summary: {stderr.decode(errors='replace')}")
    result = _read_summary(json.loads(out.read_text()), connections)
    result.wrk_cpu = wrk_cpu / result.seconds
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, its ended threads included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):  # it ended (ESRCH while it exits)
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _all_threads_stopped(process: subprocess.Popen[bytes]) -> bool:
    # wrk's main thread sleeps; its load threads end when they stop themselves.
    try:
        tasks = list(Path(f"/proc/{process.pid}/task").iterdir())
    except FileNotFoundError:
        return True
    return len(tasks) <= 1


def _read_summary(summary: dict[str, Any], threads: int) -> LoadResult:
    ok: list[int] = []
    failed: dict[int, int] = {}
    unanswered: list[int] = []
    exhausted = 0
    t_first = min((t["t_first"] for t in summary["threads"] if t["t_first"]), default=0.0)
    t_last = max((t["t_last"] for t in summary["threads"]), default=0.0)
    for thread in summary["threads"]:
        k = thread["id"]
        for part in filter(None, thread["failed"].split(",")):
            index, status = part.split(":")
            failed[int(index)] = int(status)
        unanswered += [int(i) for i in filter(None, thread["unanswered"].split(","))]
        exhausted += thread["exhausted"]
        sent = thread["sent"] - thread["exhausted"]
        ok += [
            k + j * threads
            for j in range(sent)
            if k + j * threads not in failed and k + j * threads not in unanswered
        ]
    seconds = max(t_last - t_first, 1e-9)
    return LoadResult(
        rate=len(ok) / seconds,
        seconds=seconds,
        ok=sorted(ok),
        failed=failed,
        unanswered=sorted(set(unanswered)),
        latency_ms={p: us / 1000 for p, us in summary["latency_us"].items()},
        latency_max_ms=summary["latency_max_us"] / 1000,
        exhausted=exhausted,
        errors=summary["errors"],
    )
