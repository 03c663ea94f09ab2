"""The README's walkthrough, as a newcomer runs it: `dmledger serve` with `dmledger dev
fake-graph` standing in for Meta and `dmledger dev crm-receiver` for a CRM, each its own
process on loopback. An auto-reply and a CRM reply reach the fake Graph API, and the
deliveries reach the receiver with valid signatures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.ingest import sign
from interfaces.cli import main
from tests.conftest import ACCOUNT, PARTICIPANT, TEST_KEY, meta_json
from tests.support.cluster import free_port
from tests.support.served import Served

APP_SECRET = "my-meta-app-secret"


class Process:
    """A `dmledger` command in a process of its own, its output lines collected."""

    def __init__(self, env: dict[str, str], *argv: str) -> None:
        self.lines: list[str] = []
        self._process = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", *argv],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, *words: str, timeout: float = 20) -> str:
        """The first line holding every one of `words`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if all(word in line for word in words):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line with {words} in:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "DMLEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
        "DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "true",
        "DMLEDGER_GRAPH_API_URL": f"http://127.0.0.1:{free_port()}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def cli(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue().strip()


def test_the_walkthrough_answers_a_message_and_tells_the_crm(env: dict[str, str]) -> None:
    # a fake Graph API where the README says, then the account, its keys, and the server
    graph_port = env["DMLEDGER_GRAPH_API_URL"].rsplit(":", 1)[1]
    graph = Process(
        env,
        *("dev", "fake-graph", "--port", graph_port, "--profile", f"{PARTICIPANT}=anna:Anna S"),
        *("--history", f"{ACCOUNT}:2:5"),
    )
    crm = None
    served = None
    try:
        graph.wait_for("fake Graph API on")
        cli(
            *("accounts", "add", "--ig-id", ACCOUNT, "--username", "myshop"),
            *("--app-secret", APP_SECRET, "--access-token", "IGAA-token"),
            *("--verify-token", "verify-me"),
        )
        admin = {"authorization": f"Bearer {cli('keys', 'create', '--name', 'ops', '--admin')}"}
        served = Served(env)
        account = f"{served.url}/api/v1/accounts/{ACCOUNT}"

        # a rule, and the CRM endpoint at the receiver (started with the secret PUT gives)
        rule = {
            "name": "shipping",
            "triggers": [{"type": "keyword", "value": "ship"}],
            "reply": "Hi! {account_username} ships worldwide.",
        }
        assert httpx.post(f"{account}/rules", json=rule, headers=admin).status_code == 201
        crm_port = free_port()
        endpoint = httpx.put(
            f"{account}/crm-endpoint",
            json={"url": f"http://127.0.0.1:{crm_port}/hooks"},
            headers=admin,
        )
        assert endpoint.status_code == 200, endpoint.text
        secret = endpoint.json()["secret"]
        crm = Process(env, "dev", "crm-receiver", "--port", str(crm_port), "--secret", secret)
        crm.wait_for("CRM receiver on")

        # a message, signed as Meta signs it, dated now
        body = meta_json("text")
        item = body["entry"][0]["messaging"][0]
        item["timestamp"] = int(time.time() * 1000)
        item["message"] = {"mid": "mid-walk-1", "text": "Hi! Do you ship to Munich?"}
        raw = json.dumps(body).encode()
        headers = {"content-type": "application/json", "x-hub-signature-256": sign(raw, APP_SECRET)}
        assert httpx.post(
            f"{served.url}/webhooks/instagram", content=raw, headers=headers
        ).text == ("EVENT_RECEIVED")

        # the auto-reply reaches the fake Graph API, the message the CRM
        graph.wait_for("sent m_fake", "myshop ships worldwide")
        crm.wait_for("verified", "message.received", "Do you ship to Munich?")
        # the user profile API's answer follows: the CRM learns who wrote
        crm.wait_for("verified", "conversation.updated", "@anna")

        # a person answers through the API: it reaches Meta, and the CRM hears it was sent
        conversations = httpx.get(f"{account}/conversations", headers=admin).json()
        [conversation] = conversations["conversations"]
        assert conversation["participant"]["id"] == PARTICIPANT
        reply = httpx.post(
            f"{account}/conversations/{conversation['id']}/replies",
            json={"text": "Yes, we do. Shipping takes 3 days."},
            headers={**admin, "idempotency-key": "walk-1"},
        )
        assert reply.status_code == 202, reply.text
        graph.wait_for("sent m_fake", "Shipping takes 3 days")
        crm.wait_for("verified", "reply.sent")
        assert not [line for line in crm.lines if "BAD SIGNATURE" in line]

        # the conversations the account had before: a backfill reads them from "Meta"
        started = httpx.post(f"{account}/backfill", headers=admin)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 20
        status = started.json()
        while status["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the run's status, as a client does
            status = httpx.get(f"{account}/backfill", headers=admin).json()
        assert (status["state"], status["conversations"], status["stored"]) == ("done", 2, 10)
        listed: list[Any] = []
        while len(listed) < 3 and time.monotonic() < deadline:  # the list follows the log
            listed = httpx.get(f"{account}/conversations", headers=admin).json()["conversations"]
        assert len(listed) == 3
    finally:
        for process in (graph, crm):
            if process is not None:
                process.stop()
        if served is not None:
            served.stop()
