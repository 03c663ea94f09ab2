"""`/metrics` of a running `dmledger serve`, as Prometheus scrapes it: who may read it, and
its families moving under signed webhooks, automated replies and CRM deliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from interfaces.cli import main
from tests.conftest import ACCESS_TOKEN, ACCOUNT, APP_SECRET, TEST_KEY, signed_headers
from tests.support.cluster import Cluster, free_port, wait_until
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi
from tests.support.rules import SHIPPING
from tests.support.served import ADD, Served
from tests.support.webhooks import message

METRICS_TOKEN = "prometheus-scrapes-with-this-token"
PATIENCE = 30.0
"""Seconds a request may take: a loaded 2-core machine answered some in more than httpx's 5."""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, graph: FakeGraphApi) -> dict[str, str]:
    values = {
        "DMLEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(tmp_path / "var"),
        "DMLEDGER_GRAPH_API_URL": graph.url,
        "DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "true",
        "DMLEDGER_METRICS_TOKEN": METRICS_TOKEN,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[Served]:
    secrets = ["--app-secret", APP_SECRET, "--access-token", ACCESS_TOKEN, "--verify-token", "v"]
    assert main([*ADD, *secrets]) == 0
    server = Served(env)
    yield server
    server.stop()


def new_key(capsys: pytest.CaptureFixture[str], *role: str) -> str:
    capsys.readouterr()
    assert main(["keys", "create", "--name", "k", *role]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def scrape(url: str, token: str = METRICS_TOKEN) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Every sample of `/metrics`, by name and sorted labels."""
    headers = {"authorization": f"Bearer {token}"}
    response = httpx.get(url + "/metrics", headers=headers, timeout=PATIENCE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_read_with_an_admin_key_or_the_metrics_token_and_by_no_one_else(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = new_key(capsys, "--admin")
    account_key = new_key(capsys, "--account", ACCOUNT)
    url = served.url + "/metrics"

    anonymous = httpx.get(url)
    wrong = httpx.get(url, headers={"authorization": "Bearer not-the-metrics-token"})
    of_an_account = httpx.get(url, headers={"authorization": f"Bearer {account_key}"})
    with_admin_key = httpx.get(url, headers={"authorization": f"Bearer {admin}"})
    with_token = httpx.get(url, headers={"authorization": f"Bearer {METRICS_TOKEN}"})

    assert (anonymous.status_code, wrong.status_code, of_an_account.status_code) == (401, 401, 403)
    for refused in (anonymous, wrong, of_an_account):
        assert refused.headers["content-type"] == "application/problem+json"
        assert "dmledger_" not in refused.text
    assert with_admin_key.status_code == with_token.status_code == 200
    assert "dmledger_webhooks_total" in with_token.text


def test_signed_webhooks_move_the_webhook_writer_projection_and_account_families(
    served: Served,
) -> None:
    before = scrape(served.url)
    body = message("hello there", "m-metrics-1")
    hook = served.url + "/webhooks/instagram"

    # when Meta delivers one message, a forged one, a broken one and one too large
    assert httpx.post(hook, content=body, headers=signed_headers(body)).status_code == 200
    forged = httpx.post(hook, content=body, headers=signed_headers(body, "not-the-secret"))
    broken = httpx.post(hook, content=b"[1]", headers=signed_headers(b"[1]"))
    large = b"x" * (1024 * 1024 + 1)
    too_large = httpx.post(hook, content=large, headers=signed_headers(large))
    assert (forged.status_code, broken.status_code, too_large.status_code) == (401, 400, 413)

    # then each outcome is counted, and the events stored, once the projections caught up
    def caught_up() -> dict[tuple[str, tuple[Any, ...]], float] | None:
        now = scrape(served.url)
        lags = [v for (n, _), v in now.items() if n == "dmledger_projection_lag_events"]
        heads = [v for (n, _), v in now.items() if n == "dmledger_projection_head"]
        return now if lags and not any(lags) and min(heads) > 0 else None

    after: Any = wait_until(caught_up, timeout=20, what="the projections to catch up")
    for status in ("200", "401", "400", "413"):
        assert value(after, "dmledger_webhooks_total", status=status) == 1, status
    assert value(after, "dmledger_webhook_duration_seconds_count") == 4
    stored = value(after, "dmledger_events_stored_total") - value(
        before, "dmledger_events_stored_total"
    )
    assert stored >= 2  # the conversation started, the message received
    assert value(after, "dmledger_writer_batch_commands_count") >= 1
    assert value(after, "dmledger_writer_commit_duration_seconds_count") >= 1
    for projection in ("conversation_list", "message_history"):
        assert value(after, "dmledger_projection_lag_seconds", projection=projection) == 0
        assert value(after, "dmledger_projection_position", projection=projection) > 0
    assert value(after, "dmledger_accounts", status="active") == 1
    assert value(after, "dmledger_accounts_token_rejected") == 0
    assert value(after, "dmledger_state_read_ok") == 1


def test_a_reply_and_a_crm_delivery_move_the_send_api_crm_and_outbox_families(
    served: Served, capsys: pytest.CaptureFixture[str], graph: FakeGraphApi, crm: FakeCrm
) -> None:
    admin = {"authorization": f"Bearer {new_key(capsys, '--admin')}"}
    account = f"{served.url}/api/v1/accounts/{ACCOUNT}"
    rule = httpx.post(account + "/rules", json=SHIPPING, headers=admin, timeout=PATIENCE)
    assert rule.status_code == 201
    endpoint = httpx.put(
        account + "/crm-endpoint", json={"url": crm.url}, headers=admin, timeout=PATIENCE
    )
    crm.secret = endpoint.json()["secret"]

    body = message("Do you ship to Munich?", "m-metrics-2")
    assert httpx.post(
        served.url + "/webhooks/instagram", content=body, headers=signed_headers(body)
    ).is_success

    def delivered() -> dict[tuple[str, tuple[Any, ...]], float] | None:
        now = scrape(served.url)
        sent = value(now, "dmledger_send_api_answers_total", error_class="sent")
        crm_ok = value(now, "dmledger_crm_deliveries_total", status_class="2xx")
        # the gauges are read at most once a second: the last settlements show a moment later
        waiting = sum(
            v
            for (n, _), v in now.items()
            if n in ("dmledger_outbox_due_deliveries", "dmledger_outbox_leased_deliveries")
        )
        return now if sent == 1 and crm_ok >= 2 and waiting == 0 else None

    after: Any = wait_until(delivered, timeout=20, what="the reply and the CRM deliveries")
    assert len(graph.sent) == 1
    assert value(after, "dmledger_send_api_duration_seconds_count") == 1
    assert value(after, "dmledger_crm_delivery_duration_seconds_count") >= 2
    for kind in ("instagram", "crm"):
        assert value(after, "dmledger_outbox_dead_deliveries", kind=kind) == 0
        assert value(after, "dmledger_outbox_leased_deliveries", kind=kind) == 0
        assert value(after, "dmledger_outbox_oldest_due_age_seconds", kind=kind) == 0
    # no conversation or participant id, nor the account's, is a label by default
    labels = json.dumps([labels for (_, labels) in after])
    assert ACCOUNT not in labels
    assert "5500000000000001" not in labels


@pytest.mark.heavy  # two processes and three commands: ~40 s on a busy machine
def test_dispatch_serves_its_metrics_on_the_metrics_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, graph: FakeGraphApi
) -> None:
    # given a web process that leaves sending to a `dmledger dispatch` with a metrics port
    metrics_port, web_port = free_port(), free_port()
    monkeypatch.setenv("DMLEDGER_METRICS_TOKEN", METRICS_TOKEN)
    monkeypatch.setenv("DMLEDGER_METRICS_PORT", str(metrics_port))
    cluster = Cluster(f"sqlite:///{tmp_path}/ledger.sqlite3", TEST_KEY, graph.url, tmp_path)
    try:
        secrets = ["--access-token", ACCESS_TOKEN, "--verify-token", "v"]
        cluster.command(*ADD, "--app-secret", APP_SECRET, *secrets)
        admin = {
            "authorization": "Bearer "
            + cluster.command("keys", "create", "--name", "o", "--admin").strip()
        }
        web = cluster.start(
            "web", "serve", "--no-dispatcher", "--port", str(web_port), port=web_port
        )
        cluster.start("dispatch", "dispatch")
        cluster.wait_ready(web)
        metrics = f"http://127.0.0.1:{metrics_port}"
        wait_until(lambda: _answers(metrics + "/metrics"), timeout=120, what="the metrics port")
        rules = f"http://127.0.0.1:{web_port}/api/v1/accounts/{ACCOUNT}/rules"
        assert httpx.post(rules, json=SHIPPING, headers=admin).status_code == 201

        # when a message asks for an automated reply
        body = message("Do you ship?", "m-metrics-3")
        hook = f"http://127.0.0.1:{web_port}/webhooks/instagram"
        assert httpx.post(hook, content=body, headers=signed_headers(body)).status_code == 200

        # then the dispatcher's own metrics count the send; they are not open to anyone
        def sent() -> bool:
            return (
                value(scrape(metrics), "dmledger_send_api_answers_total", error_class="sent") == 1
            )

        wait_until(sent, timeout=30, what="the dispatcher to count the reply it sent")
        refused = httpx.get(metrics + "/metrics")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"

        def settled() -> bool:  # the gauges are read at most once a second
            now = scrape(metrics)
            waiting = ("dmledger_outbox_due_deliveries", "dmledger_outbox_leased_deliveries")
            return not any(value(now, name, kind="instagram") for name in waiting)

        wait_until(settled, timeout=30, what="the dispatcher's gauges to show the reply settled")
    finally:
        cluster.stop_all()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 401
    except httpx.TransportError:
        return False


@pytest.mark.heavy  # two workers start (each builds its services): ~30 s on a busy machine
def test_the_workers_of_one_serve_add_up_their_counts_in_every_scrape(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given counts an earlier run left in the multiprocess directory
    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"an earlier run's counts")
    secrets = ["--app-secret", APP_SECRET, "--access-token", ACCESS_TOKEN, "--verify-token", "v"]
    assert main([*ADD, *secrets]) == 0
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))  # for `serve` alone
    port = free_port()
    cluster = Cluster(
        env["DMLEDGER_DATABASE_URL"], TEST_KEY, env["DMLEDGER_GRAPH_API_URL"], tmp_path
    )
    try:
        web = cluster.start("web", "serve", "--workers", "2", "--port", str(port), port=port)
        cluster.wait_ready(web, timeout=120)
        url = f"http://127.0.0.1:{port}"

        # when webhooks come at once, each on a connection of its own
        def post(n: int) -> int:
            body = message(f"hello {n}", f"m-workers-{n}")
            headers = signed_headers(body)
            return httpx.post(
                url + "/webhooks/instagram", content=body, headers=headers
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(40))) == {200}

        # then whichever worker answers a scrape counts every webhook of both workers
        for _ in range(6):
            assert value(scrape(url), "dmledger_webhooks_total", status="200") == 40
        pids = {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
        assert len(pids - {str(web.pid)}) == 2  # each worker keeps its counts in its file
        assert "1" not in pids  # the earlier run's file was removed on start
    finally:
        cluster.stop_all()
