"""The `Metrics` port in Prometheus' families, with the official `prometheus_client`.

Each process keeps its own registry (tests build many processes' services in one). When
`PROMETHEUS_MULTIPROC_DIR` is set (`dmledger serve --workers N` sets it for its workers),
the client keeps the counts in files there, and `/metrics` of any worker adds up every
worker's (`MultiProcessCollector`); the gauges read from the database at scrape time are
the same in every process, so they are read, not added up.

Labels stay bounded: outcomes, status codes and classes, kinds, projection names. Account
ids become a label only when the operator asks (`DMLEDGER_METRICS_ACCOUNT_LABELS=true`);
conversation and participant ids never do.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Commands per transaction of the ledger writer (it takes at most 256)."""


class PrometheusMetrics:
    """The `Metrics` port, and the webhook endpoint's own counts, as Prometheus families."""

    def __init__(
        self, *, account_labels: bool = False, multiprocess_dir: str | None = None
    ) -> None:
        """`multiprocess_dir`: `PROMETHEUS_MULTIPROC_DIR` when this process is one of
        several workers (prometheus_client reads the variable itself when it is imported;
        this makes `/metrics` add up the workers' files)."""
        self.account_labels = account_labels
        # No `_created` series beside each counter and histogram: twice the series, and
        # nothing our alerts or dashboard read (the library's switch is process-wide).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        """What `/metrics` shows: these families, and the collectors `add`ed."""
        # In multiprocess mode the values live in files, read by MultiProcessCollector.
        registry = None if multiprocess_dir else self.registry
        if multiprocess_dir:
            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        account = ["account"] if account_labels else []
        self.webhooks = Counter(
            "dmledger_webhooks",
            "webhook deliveries answered, by HTTP status",
            ["status"],
            registry=registry,
        )
        self.webhook_seconds = Histogram(
            "dmledger_webhook_duration_seconds",
            "time from a webhook's request to its answer",
            registry=registry,
        )
        self.events_stored = Counter(
            "dmledger_events_stored", "events committed to the log", registry=registry
        )
        self.batch_commands = Histogram(
            "dmledger_writer_batch_commands",
            "commands per transaction of the ledger writer",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "dmledger_writer_commit_duration_seconds",
            "time to commit one transaction of the ledger writer",
            registry=registry,
        )
        self.conflicts = Counter(
            "dmledger_writer_version_conflicts",
            "transactions the event store refused because another process wrote first",
            registry=registry,
        )
        self.reruns = Counter(
            "dmledger_writer_reruns",
            "batches run again (conflict: on fresh state; crashed: without a failed command)",
            ["reason"],
            registry=registry,
        )
        self.send_answers = Counter(
            "dmledger_send_api_answers",
            "Send API calls, by the class of Meta's answer (application/delivery.py)",
            ["error_class", *account],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "dmledger_send_api_duration_seconds",
            "time the Send API took to answer",
            registry=registry,
        )
        self.crm_answers = Counter(
            "dmledger_crm_deliveries",
            "CRM delivery attempts, by the class of the endpoint's status (none: no answer)",
            ["status_class", *account],
            registry=registry,
        )
        self.crm_seconds = Histogram(
            "dmledger_crm_delivery_duration_seconds",
            "time a CRM endpoint took to answer",
            registry=registry,
        )
        self.token_refreshes = Counter(
            "dmledger_token_refreshes",
            "access token refreshes, by outcome (refreshed, failed)",
            ["outcome", *account],
            registry=registry,
        )
        if registry is not None:
            ProcessCollector(registry=registry)

    # -- the Metrics port ---------------------------------------------------------------

    def batch_committed(self, *, commands: int, events: int, seconds: float) -> None:
        self.events_stored.inc(events)
        self.batch_commands.observe(commands)
        self.commit_seconds.observe(seconds)

    def version_conflict(self) -> None:
        self.conflicts.inc()

    def batch_rerun(self, reason: str) -> None:
        self.reruns.labels(reason).inc()

    def send_answered(self, ig_account_id: str, error_class: str, seconds: float) -> None:
        self.send_answers.labels(error_class, *self._account(ig_account_id)).inc()
        self.send_seconds.observe(seconds)

    def crm_answered(self, ig_account_id: str, status_code: int | None, seconds: float) -> None:
        status_class = f"{status_code // 100}xx" if status_code else "none"
        self.crm_answers.labels(status_class, *self._account(ig_account_id)).inc()
        self.crm_seconds.observe(seconds)

    def token_refreshed(self, ig_account_id: str, outcome: str) -> None:
        self.token_refreshes.labels(outcome, *self._account(ig_account_id)).inc()

    # -- the HTTP side ------------------------------------------------------------------

    def webhook_answered(self, status: int, seconds: float) -> None:
        """`POST /webhooks/instagram` answered `status` after `seconds`."""
        self.webhooks.labels(str(status)).inc()
        self.webhook_seconds.observe(seconds)

    def _account(self, ig_account_id: str) -> tuple[str, ...]:
        return (ig_account_id,) if self.account_labels else ()

    # -- exposition ---------------------------------------------------------------------

    def add(self, collector: Collector) -> None:
        """Show `collector`'s families too (read at scrape time)."""
        self.registry.register(collector)


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The body and content type of a scrape: Prometheus' text format, or OpenMetrics
    when the scraper asks for it."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
