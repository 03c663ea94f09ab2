"""The scale-out scenario: a deployment of separate processes on one PostgreSQL database
takes signed webhooks while one process of each kind is killed with SIGKILL, and is then
checked end to end (see `tests/support/scale_checks.py`).

The deployment: 2 `dmledger serve --no-projections --no-dispatcher` (two web machines), 2
`dmledger project` and 2 `dmledger dispatch`, a fake Graph API and a fake CRM per account
verifying Standard Webhooks signatures, all on loopback.

When half of the bodies are acknowledged:
- the dispatcher `dispatch-1` is killed while it holds leases, and not replaced: `dispatch-2`
  takes its deliveries over once their leases run out (`DMLEDGER_DISPATCH_LEASE_SECONDS`,
  10 s here);
- the projection process that holds every projection's lock (`project-1`, started first) is
  killed and not replaced: the standby `project-2` takes the locks over;
- the web process `web-1` is killed with requests in flight and replaced by a new one on
  the same port (as a supervisor restarts it); meanwhile the bodies sent to it fail and
  are sent again, as Meta does, alternating with `web-2`;
- the fakes answer a few sends with Meta's transient error and a few CRM deliveries 503.

Used by `tests/integration/test_scale_out.py` (CI size) and `benchmarks/scale_out.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import msgspec
import psycopg

from infrastructure.secret_box import FernetSecretBox
from tests.support import scale_checks as checks
from tests.support.cluster import Cluster, Process, wait_until
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import TEMPORARY, FakeGraphApi
from tests.support.scale_workload import (
    ACCESS_TOKEN,
    Account,
    Sending,
    accounts,
    rules,
    send_like_meta,
    workload,
)

RUNNERS = 5
"""conversation_list, message_history, outbox, comments, auto_reply: each holds a lock in
`project`."""
SURVIVORS = ("web-2", "web-1b", "project-2", "dispatch-2")


@dataclass
class Report:
    """What was measured, and every check that failed."""

    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def connect(database_url: str, *, patience: float = 30.0) -> psycopg.Connection[Any]:
    """A connection in the scenario's schema; on a shared server, waits for a free slot
    ("too many clients already") for up to `patience` seconds."""
    base, _, query = database_url.partition("?")
    schema = parse_qs(query).get("schema", ["public"])[0]
    deadline = time.monotonic() + patience
    while True:
        try:
            return psycopg.connect(base, autocommit=True, options=f"-c search_path={schema}")
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def advisory_locks(database_url: str) -> int:
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def leases_held(database_url: str, owner: str) -> int:
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM delivery_state WHERE lease_owner = %s AND status = 'sending'",
            [owner],
        ).fetchone()
    return int(row[0]) if row else 0


def settled(database_url: str) -> dict[str, int] | None:
    """The state of things when every projection is at the head of the log and every
    delivery is finished (one statement: one snapshot); None before."""
    with connect(database_url) as conn:
        row = conn.execute(
            """
            SELECT (SELECT coalesce(max(notification_id), 0) FROM dmledger_events),
                   (SELECT min(notification_id) FROM projection_tracking),
                   (SELECT count(*) FROM projection_tracking),
                   (SELECT count(*) FROM outbox o
                      LEFT JOIN delivery_state s ON s.delivery_id = o.delivery_id
                     WHERE o.outcome IS NULL
                       AND (s.status IS NULL
                            OR s.status NOT IN ('delivered', 'dead', 'ambiguous'))),
                   (SELECT count(*) FROM delivery_state
                     WHERE status IN ('dead', 'ambiguous'))
            """
        ).fetchone()
    assert row is not None
    head, slowest, projections, unfinished, given_up = row
    if projections < RUNNERS or slowest != head or unfinished:
        return None
    return {"head": head, "given_up": given_up}


class ScaleOut:
    """Runs the scenario once; `run()` returns the report."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        size: int,
        participants: int,
        settle_seconds: float = 90.0,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.database_url = database_url
        self.size = size
        self.participants = participants
        self.settle_seconds = settle_seconds
        self.say = say
        self.report = Report()
        self.graph = FakeGraphApi(ACCESS_TOKEN)
        self.accounts = accounts()
        self.crms = {a.ig_account_id: FakeCrm() for a in self.accounts}
        self.cluster = Cluster(database_url, FernetSecretBox.new_key(), self.graph.url, workdir)
        self.processes: dict[str, Process] = {}

    async def run(self) -> Report:
        try:
            await self._run()
        finally:
            self.cluster.stop_all()
            self.graph.close()
            for crm in self.crms.values():
                crm.close()
        return self.report

    async def _run(self) -> None:
        started = time.monotonic()
        figures = self.report.figures
        admin = await asyncio.to_thread(self._start_deployment)
        await asyncio.to_thread(self._configure_accounts, admin)
        figures["setup_seconds"] = round(time.monotonic() - started, 1)
        bodies = workload(self.size, self.participants)
        figures["bodies"] = len(bodies)
        figures["items"] = sum(len(b.items) for b in bodies)
        self.say(f"sending {len(bodies)} bodies ({figures['items']} items)")

        halfway = asyncio.Event()

        def progress(sending: Sending) -> None:
            if len(sending.acknowledged) >= len(bodies) // 2:
                halfway.set()

        chaos = asyncio.ensure_future(self._chaos(halfway))
        sending_started = time.monotonic()
        urls = [
            f"http://127.0.0.1:{self.processes[n].port}/webhooks/instagram"
            for n in ("web-1", "web-2")
        ]
        sending = await send_like_meta(bodies, urls, progress=progress)
        await chaos
        figures["sending_seconds"] = round(time.monotonic() - sending_started, 1)
        figures.update(
            attempts=sending.attempts,
            answered_5xx=sending.answered_5xx,
            transport_errors=sending.transport_errors,
            redelivered_by_meta=sending.redelivered,
        )
        self.say(f"sent: {figures}")

        settling = time.monotonic()
        try:
            state = await asyncio.to_thread(
                wait_until,
                lambda: settled(self.database_url),
                timeout=self.settle_seconds,
                what="every projection at the head and every delivery finished",
            )
        except TimeoutError as error:
            self.report.failures.append(str(error))
            return
        figures["settle_seconds"] = round(time.monotonic() - settling, 1)
        assert isinstance(state, dict)
        if state["given_up"]:
            self.report.failures.append(f"{state['given_up']} deliveries are dead or ambiguous")
        figures["log_events"] = state["head"]
        await asyncio.to_thread(self._check, bodies, sending)
        figures["total_seconds"] = round(time.monotonic() - started, 1)

    def _start_deployment(self) -> str:
        cluster = self.cluster
        # The operator's first command creates the tables, before any process runs.
        admin = cluster.command("keys", "create", "--name", "scale-out", "--admin").strip()
        for name in ("web-1", "web-2"):
            self.processes[name] = cluster.serve(name)
        self.processes["project-1"] = cluster.start("project-1", "project")
        for name in ("dispatch-1", "dispatch-2"):
            self.processes[name] = cluster.start(name, "dispatch")
        for name in ("web-1", "web-2"):
            cluster.wait_ready(self.processes[name])
        wait_until(
            lambda: advisory_locks(self.database_url) >= RUNNERS,
            timeout=30,
            what="project-1 to hold every projection's lock",
        )
        self.processes["project-2"] = cluster.start("project-2", "project")
        for name in ("dispatch-1", "dispatch-2", "project-2"):

            def started(process: Process = self.processes[name]) -> bool:
                output = process.output()
                return (
                    "dispatching the outboxes" in output
                    or "running projections" in output
                    or "waiting behind another process's runner" in output  # a standby
                )

            wait_until(started, timeout=30, what=f"{name} to start")
        return admin

    def _configure_accounts(self, admin: str) -> None:
        """Register the accounts, their rules and CRM endpoints over REST, alternating
        between the two web processes."""
        webs = [f"http://127.0.0.1:{self.processes[n].port}" for n in ("web-1", "web-2")]
        headers = {"authorization": f"Bearer {admin}"}
        with httpx.Client(headers=headers, timeout=30) as http:
            for n, account in enumerate(self.accounts):
                web = webs[n % 2]
                other = webs[(n + 1) % 2]
                _ok(
                    http.post(
                        f"{web}/api/v1/accounts",
                        json={
                            "ig_account_id": account.ig_account_id,
                            "username": account.username,
                            "app_secret": account.app_secret,
                            "access_token": ACCESS_TOKEN,
                            "verify_token": account.verify_token,
                        },
                    )
                )
                base = f"{other}/api/v1/accounts/{account.ig_account_id}"
                for rule in rules():
                    _ok(http.post(f"{base}/rules", json=rule))
                crm = self.crms[account.ig_account_id]
                answer = _ok(http.put(f"{base}/crm-endpoint", json={"url": crm.url}))
                crm.secret = answer["secret"]

    async def _chaos(self, halfway: asyncio.Event) -> None:
        await halfway.wait()
        await asyncio.to_thread(self._kill_one_of_each)

    def _kill_one_of_each(self) -> None:
        cluster, figures = self.cluster, self.report.figures
        dispatcher = self.processes["dispatch-1"]
        owner = f"{socket.gethostname()}:{dispatcher.pid}"
        # Killed all the same if it never does; the figure below says it held none.
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: leases_held(self.database_url, owner),
                timeout=10,
                what="dispatch-1 to hold leases",
            )
        cluster.kill(dispatcher)
        figures["leases_left_by_the_killed_dispatcher"] = leases_held(self.database_url, owner)
        cluster.kill(self.processes["project-1"])
        web = self.processes["web-1"]
        cluster.kill(web)
        killed_at = time.monotonic()
        self.graph.answers.extend([(500, TEMPORARY)] * 3)
        for crm in self.crms.values():
            crm.answers.extend([(503, {})] * 2)
        self.say("killed dispatch-1, project-1 and web-1")
        self.processes["web-1b"] = cluster.serve("web-1b", port=web.port)
        cluster.wait_ready(self.processes["web-1b"], timeout=60)
        figures["web_restart_seconds"] = round(time.monotonic() - killed_at, 1)

    def _check(self, bodies: list[Any], sending: Sending) -> None:
        failures, figures = self.report.failures, self.report.figures
        for name in SURVIVORS:
            process = self.processes[name]
            if not process.alive():
                failures.append(f"{name} died:\n{process.output()[-2000:]}")
        # Errors a process logged and recovered from (PostgreSQL out of connections on a
        # shared machine, say) are reported, not failed: what they cost shows in the checks.
        figures["errors_logged"] = {
            name: [line for line in p.output().splitlines() if line.startswith("ERROR")][:3]
            for name, p in self.processes.items()
            if "ERROR" in p.output()
        }
        events: list[dict[str, Any]] = []
        for account in self.accounts:
            events += self._events(account)
        failures += checks.stored_once(bodies, sending, events)
        failures += checks.decided_once(bodies, events)
        failures += checks.sent_to_instagram(events, self.graph.sent)
        for account in self.accounts:
            crm = self.crms[account.ig_account_id]
            failures += checks.delivered_to_crm(
                account,
                self._events_of(events, account),
                crm.received,
                crm.rejected,
            )
        sends: dict[tuple[str, str], int] = {}
        for send in self.graph.sent:
            key = (str(send["body"].get("recipient")), str(send["body"].get("message")))
            sends[key] = sends.get(key, 0) + 1
        crm_ids: dict[str, int] = {}
        for crm in self.crms.values():
            for delivery in crm.delivered():
                crm_ids[delivery["id"]] = crm_ids.get(delivery["id"], 0) + 1
        types = [e["type"] for e in events]
        figures.update(
            replies_queued=types.count("Conversation.ReplyQueued"),
            replies_skipped=types.count("Conversation.AutoReplySkipped"),
            instagram_sends=len(self.graph.sent),
            instagram_duplicates=checks.duplicates(sends.values()),
            crm_deliveries=sum(crm_ids.values()),
            crm_duplicates=checks.duplicates(crm_ids.values()),
        )

    def _events(self, account: Account) -> list[dict[str, Any]]:
        out = self.cluster.command(
            "replay", "--account", account.ig_account_id, "--format", "jsonl"
        )
        events = [msgspec.json.decode(line) for line in out.splitlines() if line.strip()]
        for event in events:
            event["account"] = account.ig_account_id
        return events

    @staticmethod
    def _events_of(events: list[dict[str, Any]], account: Account) -> list[dict[str, Any]]:
        return [e for e in events if e["account"] == account.ig_account_id]


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.text}")
    return response.json()
