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

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Family:
    """One family this process counts, and the attribute of `PrometheusMetrics` that holds it."""

    attribute: str
    kind: type[Counter] | type[Histogram]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    by_account: bool = False
    """Labelled by account too, when the operator asks (`account_labels`)."""
    buckets: tuple[float, ...] | None = None

    def make(
        self, registry: CollectorRegistry | None, *, account_labels: bool
    ) -> Counter | Histogram:
        labels = [*self.labels, *(["account"] if self.by_account and account_labels else [])]
        if self.kind is Histogram:
            buckets = self.buckets or Histogram.DEFAULT_BUCKETS
            return Histogram(self.name, self.help, labels, registry=registry, buckets=buckets)
        return Counter(self.name, self.help, labels, registry=registry)


FAMILIES = (
    Family(
        "webhooks",
        Counter,
        "dmledger_webhooks",
        "webhook deliveries answered, by HTTP status",
        ("status",),
    ),
    Family(
        "webhook_seconds",
        Histogram,
        "dmledger_webhook_duration_seconds",
        "time from a webhook's request to its answer",
    ),
    Family("events_stored", Counter, "dmledger_events_stored", "events committed to the log"),
    Family(
        "batch_commands",
        Histogram,
        "dmledger_writer_batch_commands",
        "commands per transaction of the ledger writer",
        buckets=BATCH_BUCKETS,
    ),
    Family(
        "commit_seconds",
        Histogram,
        "dmledger_writer_commit_duration_seconds",
        "time to commit one transaction of the ledger writer",
    ),
    Family(
        "conflicts",
        Counter,
        "dmledger_writer_version_conflicts",
        "transactions the event store refused because another process wrote first",
    ),
    Family(
        "reruns",
        Counter,
        "dmledger_writer_reruns",
        "batches run again (conflict: on fresh state; crashed: without a failed command)",
        ("reason",),
    ),
    Family(
        "send_answers",
        Counter,
        "dmledger_send_api_answers",
        "Send API calls, by the class of Meta's answer (application/delivery.py)",
        ("error_class",),
        by_account=True,
    ),
    Family(
        "send_seconds",
        Histogram,
        "dmledger_send_api_duration_seconds",
        "time the Send API took to answer",
    ),
    Family(
        "crm_answers",
        Counter,
        "dmledger_crm_deliveries",
        "CRM delivery attempts, by the class of the endpoint's status (none: no answer)",
        ("status_class",),
        by_account=True,
    ),
    Family(
        "crm_seconds",
        Histogram,
        "dmledger_crm_delivery_duration_seconds",
        "time a CRM endpoint took to answer",
    ),
    Family(
        "token_refreshes",
        Counter,
        "dmledger_token_refreshes",
        "access token refreshes, by outcome (refreshed, failed)",
        ("outcome",),
        by_account=True,
    ),
)
"""Every family `PrometheusMetrics` counts in (the gauges read at scrape time are
`infrastructure/metrics_state.py`'s)."""


class PrometheusMetrics:
    """The `Metrics` port, and the webhook endpoint's own counts, as Prometheus families."""

    # The families of `FAMILIES`, by their `attribute`.
    webhooks: Counter
    webhook_seconds: Histogram
    events_stored: Counter
    batch_commands: Histogram
    commit_seconds: Histogram
    conflicts: Counter
    reruns: Counter
    send_answers: Counter
    send_seconds: Histogram
    crm_answers: Counter
    crm_seconds: Histogram
    token_refreshes: Counter

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
        for family in FAMILIES:
            setattr(self, family.attribute, family.make(registry, account_labels=account_labels))
        self._webhooks_by_status: dict[int, Counter] = {}
        """`webhooks`' child of each status seen: `labels()` takes a lock, checks and
        looks up its values on every call, and a web worker counts every webhook."""
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
        counter = self._webhooks_by_status.get(status)
        if counter is None:
            counter = self._webhooks_by_status[status] = self.webhooks.labels(str(status))
        counter.inc()
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
