"""The metrics' parts without a server: the scrape-time collector, the Prometheus families
of the `Metrics` port, the webhook outcomes, the settings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infrastructure.metrics_state import OperationalState, StateCollector
from infrastructure.prometheus_metrics import PrometheusMetrics
from infrastructure.settings import Settings, SettingsError
from interfaces.http.webhook_metrics import WebhookMetrics
from tests.support.metrics_state import STATE

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: PrometheusMetrics) -> Samples:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_collector_shows_each_gauge_of_the_state_with_bounded_labels() -> None:
    metrics = PrometheusMetrics()
    metrics.add(StateCollector(lambda: STATE))

    found = samples(metrics)

    assert found[("dmledger_projection_lag_events", (("projection", "message_history"),))] == 10
    assert found[("dmledger_projection_lag_seconds", (("projection", "message_history"),))] == 4.5
    assert found[("dmledger_projection_parked_events", (("projection", "message_history"),))] == 1
    assert found[("dmledger_outbox_due_deliveries", (("kind", "instagram"),))] == 3
    assert found[("dmledger_outbox_oldest_due_age_seconds", (("kind", "instagram"),))] == 12
    assert found[("dmledger_outbox_leased_deliveries", (("kind", "instagram"),))] == 2
    assert found[("dmledger_outbox_dead_deliveries", (("kind", "crm"),))] == 7
    assert found[("dmledger_accounts", (("status", "suspended"),))] == 1
    assert found[("dmledger_accounts_token_rejected", ())] == 1
    assert found[("dmledger_db_pool_in_use", (("pool", "event_store"),))] == 2
    assert found[("dmledger_db_pool_waiting", (("pool", "event_store"),))] == 1
    assert ("dmledger_db_pool_waiting", (("pool", "read_models"),)) not in found
    assert found[("dmledger_state_read_ok", ())] == 1
    assert found[("dmledger_db_listening", ())] == 1


@pytest.mark.parametrize(("listening", "shown"), [(True, 1), (False, 0), (None, None)])
def test_the_listening_gauge_shows_a_lost_session_and_is_absent_where_nothing_listens(
    listening: bool | None, shown: int | None
) -> None:
    metrics = PrometheusMetrics()
    metrics.add(StateCollector(lambda: replace(STATE, listening=listening)))

    assert samples(metrics).get(("dmledger_db_listening", ())) == shown


def test_the_state_is_read_at_most_once_per_max_age_however_many_scrapes() -> None:
    clock = Clock()
    collector = StateCollector(lambda: STATE, max_age=1.0, clock=clock)
    metrics = PrometheusMetrics()
    metrics.add(collector)

    for _ in range(5):
        samples(metrics)
    clock.now += 0.5
    samples(metrics)
    assert collector.reads == 1

    clock.now += 0.6
    samples(metrics)
    assert collector.reads == 2


def test_a_database_that_does_not_answer_leaves_the_scrape_answering_without_the_gauges() -> None:
    def away() -> OperationalState:
        raise ConnectionError("the database is away")

    metrics = PrometheusMetrics()
    metrics.add(StateCollector(away))
    metrics.webhook_answered(200, 0.01)

    found = samples(metrics)

    assert found[("dmledger_state_read_ok", ())] == 0
    assert not [name for name, _ in found if name.startswith("dmledger_outbox")]
    assert found[("dmledger_webhooks_total", (("status", "200"),))] == 1


def test_account_ids_are_labels_only_when_the_operator_asks() -> None:
    default, asked = PrometheusMetrics(), PrometheusMetrics(account_labels=True)
    for metrics in (default, asked):
        metrics.send_answered("17841400000000001", "throttled", 0.2)
        metrics.crm_answered("17841400000000001", 503, 0.1)
        metrics.crm_answered("17841400000000001", None, 15.0)
        metrics.token_refreshed("17841400000000001", "failed")

    plain, labelled = samples(default), samples(asked)

    assert plain[("dmledger_send_api_answers_total", (("error_class", "throttled"),))] == 1
    assert plain[("dmledger_crm_deliveries_total", (("status_class", "5xx"),))] == 1
    assert plain[("dmledger_crm_deliveries_total", (("status_class", "none"),))] == 1
    assert plain[("dmledger_token_refreshes_total", (("outcome", "failed"),))] == 1
    assert "17841400000000001" not in repr(plain)
    account = ("account", "17841400000000001")
    key = ("dmledger_send_api_answers_total", (account, ("error_class", "throttled")))
    assert labelled[key] == 1


def test_the_writer_reports_become_events_batch_sizes_and_commit_times() -> None:
    metrics = PrometheusMetrics()
    metrics.batch_committed(commands=3, events=5, seconds=0.002)
    metrics.batch_committed(commands=1, events=2, seconds=0.001)
    metrics.version_conflict()
    metrics.batch_rerun("conflict")

    found = samples(metrics)

    assert found[("dmledger_events_stored_total", ())] == 7
    assert found[("dmledger_writer_batch_commands_count", ())] == 2
    assert found[("dmledger_writer_batch_commands_sum", ())] == 4
    assert found[("dmledger_writer_batch_commands_bucket", (("le", "2.0"),))] == 1
    assert found[("dmledger_writer_commit_duration_seconds_count", ())] == 2
    assert found[("dmledger_writer_version_conflicts_total", ())] == 1
    assert found[("dmledger_writer_reruns_total", (("reason", "conflict"),))] == 1


@pytest.mark.parametrize("status", [200, 400, 401, 413, 503])
async def test_every_webhook_answer_is_counted_by_its_status(status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def discard(message: Any) -> None:
        pass

    metrics = PrometheusMetrics()
    wrapped = WebhookMetrics(app, metrics)
    webhook = {"type": "http", "method": "POST", "path": "/webhooks/instagram"}
    other = {"type": "http", "method": "GET", "path": "/webhooks/instagram"}

    # (Litestar types a scope as its own, with the keys its app adds: not a server's plain
    # ASGI scope as here; the middleware reads only "type", "method" and "path")
    await wrapped(webhook, None, discard)  # type: ignore[arg-type]
    await wrapped(other, None, discard)  # type: ignore[arg-type]

    found = samples(metrics)
    assert found[("dmledger_webhooks_total", (("status", str(status)),))] == 1
    assert found[("dmledger_webhook_duration_seconds_count", ())] == 1


def test_the_metrics_settings_come_from_the_environment() -> None:
    settings = Settings.from_environ(
        {
            "DMLEDGER_METRICS_TOKEN": "a-token-of-enough-length",
            "DMLEDGER_METRICS_PORT": "9464",
            "DMLEDGER_METRICS_ACCOUNT_LABELS": "true",
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/dmledger-metrics",  # noqa: S108
        }
    )
    assert settings.metrics_token == "a-token-of-enough-length"
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9464)
    assert settings.metrics_account_labels is True
    assert settings.metrics_multiprocess_dir == "/tmp/dmledger-metrics"  # noqa: S108
    assert Settings.from_environ({}).metrics_token is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DMLEDGER_METRICS_TOKEN", "short"),
        ("DMLEDGER_METRICS_PORT", "http"),
        ("DMLEDGER_METRICS_ACCOUNT_LABELS", "maybe"),
    ],
)
def test_a_bad_metrics_setting_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ({name: value})


def test_each_webhook_is_counted_under_its_own_status() -> None:
    metrics = PrometheusMetrics()

    for status in (200, 401, 200, 413, 200):
        metrics.webhook_answered(status, 0.01)

    found = samples(metrics)
    assert found[("dmledger_webhooks_total", (("status", "200"),))] == 3
    assert found[("dmledger_webhooks_total", (("status", "401"),))] == 1
    assert found[("dmledger_webhooks_total", (("status", "413"),))] == 1
    assert found[("dmledger_webhook_duration_seconds_count", ())] == 5
