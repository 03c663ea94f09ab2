"""The Prometheus alert rules, scrape configuration and Grafana dashboard under deploy/
use only metrics dmledger exports, and the alerts the operator was promised exist: they
cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infrastructure.metrics_state import StateCollector
from infrastructure.prometheus_metrics import PrometheusMetrics
from tests.support.metrics_state import STATE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bdmledger_[a-z0-9_]+")


def exported() -> set[str]:
    """Every sample name of a process's /metrics, each family used once."""
    metrics = PrometheusMetrics()
    metrics.add(StateCollector(lambda: STATE))
    metrics.webhook_answered(200, 0.01)
    metrics.batch_committed(commands=1, events=1, seconds=0.001)
    metrics.version_conflict()
    metrics.batch_rerun("conflict")
    metrics.send_answered("1", "sent", 0.1)
    metrics.crm_answered("1", 200, 0.1)
    metrics.token_refreshed("1", "refreshed")
    text = generate_latest(metrics.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_the_alert_rules_use_is_exported() -> None:
    names = exported()
    for rule in alert_rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, f"{rule['alert']} uses no dmledger metric"
        assert used <= names, f"{rule['alert']} uses {sorted(used - names)}, not exported"


def test_every_metric_the_dashboard_uses_is_exported() -> None:
    names = exported()
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    for expression in expressions:
        used = set(METRIC.findall(expression))
        assert used, f"a panel's query uses no dmledger metric: {expression}"
        assert used <= names, f"{expression} uses {sorted(used - names)}, not exported"


def test_the_alerts_cover_lag_oldest_due_dead_deliveries_rejected_tokens_and_503s() -> None:
    expressions = " ".join(rule["expr"] for rule in alert_rules())
    for metric in (
        "dmledger_projection_lag_seconds",
        "dmledger_outbox_oldest_due_age_seconds",
        "dmledger_outbox_dead_deliveries",
        "dmledger_accounts_token_rejected",
        'dmledger_webhooks_total{status="503"}',
    ):
        assert metric in expressions


def test_prometheus_scrapes_every_process_with_the_token_and_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["prometheus-alerts.yaml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"dmledger-serve", "dmledger-project", "dmledger-dispatch"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        assert job["authorization"]["type"] == "Bearer"
