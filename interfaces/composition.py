"""The composition root: builds every service of a dmledger process from its `Settings`."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from application.accounts import Accounts
from application.api_keys import ApiKeys
from application.auto_reply import AutoReplies
from application.backfill import Backfill
from application.backfill_runs import BackfillRuns
from application.conversations import Conversations
from application.crm_endpoints import CrmEndpoints
from application.dispatcher import Dispatcher
from application.entry_points import EntryPoints
from application.ingest import WebhookIngest
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from application.ports import (
    Clock,
    ConversationHistory,
    CrmEndpoint,
    InstagramSendApi,
    MessengerProfileApi,
    ParticipantProfiles,
)
from application.redeliveries import Redeliveries
from application.retention import ContentRetention
from application.rule_management import Rules
from application.webhook_signatures import ServedAppSecrets
from infrastructure.chained_recorders import install_chain, install_vault
from infrastructure.clock import SystemClock
from infrastructure.conversations_api import GraphApiHistory
from infrastructure.crm_urls import CrmUrlPolicy
from infrastructure.crm_webhooks import StandardWebhooksClient, new_secret
from infrastructure.database_presence import require_database
from infrastructure.delivery_queue import DeliveryQueue
from infrastructure.graph_api import GraphApiProfiles
from infrastructure.instagram_api import InstagramGraphClient
from infrastructure.key_usage import SqlKeyUsage
from infrastructure.metrics_state import StateCollector
from infrastructure.persistence import persistence_env
from infrastructure.prometheus_metrics import PrometheusMetrics
from infrastructure.schema_version import prepare_schema
from infrastructure.secret_box import FernetSecretBox
from infrastructure.secret_redaction import remember_secret
from infrastructure.send_limits import SqlReusableAttachments, SqlSendLimits
from infrastructure.settings import Settings, SettingsError
from interfaces.operational_state import OperationalStateReader
from projections.database import create_view_engine
from projections.registry import ReadModels

DEVELOPMENT_KEY_FILE = "development-secret.key"


@dataclass
class Services:
    """Everything a dmledger process runs, wired together."""

    settings: Settings
    ledger: Ledger
    writer: LedgerWriter
    ingest: WebhookIngest
    app_secrets: ServedAppSecrets
    accounts: Accounts
    api_keys: ApiKeys
    conversations: Conversations
    auto_replies: AutoReplies
    rules: Rules
    read_models: ReadModels
    dispatcher: Dispatcher
    delivery_queue: DeliveryQueue
    redeliveries: Redeliveries
    crm_endpoints: CrmEndpoints
    entry_points: EntryPoints
    """The account's ice breakers and persistent menu (pushed by the dispatcher)."""
    retention: ContentRetention
    backfill: Backfill
    """Reads an account's existing conversations from Meta (`dmledger accounts backfill`)."""
    backfills: BackfillRuns
    """The backfills started over HTTP, in the background."""
    clock: Clock
    instagram: InstagramSendApi
    """The Send API (and the token refresh) the dispatcher uses."""
    crm: CrmEndpoint
    profiles: ParticipantProfiles
    metrics: PrometheusMetrics
    """This process's metrics; `metrics.registry` is what `/metrics` shows."""
    _closers: list[Callable[[], None]] = field(default_factory=list)
    """Closes each HTTP client `build` made (one passed in belongs to its caller)."""
    _async_closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _closed: bool = False

    async def close_connections(self) -> None:
        """Close the async HTTP clients in the event loop that used them: the dispatcher's
        loop, as it stops (`interfaces.dispatching`). A later use opens new ones."""
        for aclose in self._async_closers:
            await aclose()

    def close(self) -> None:
        """Stop everything and close every HTTP client `build` made (once: closing again
        does nothing)."""
        if self._closed:
            return
        self._closed = True
        self.read_models.stop()
        self.writer.stop()
        for close in self._closers:
            close()
        self.ledger.close()
        self.read_models.conversation_list.engine.dispose()


def build(
    settings: Settings,
    *,
    instagram: InstagramSendApi | None = None,
    crm: CrmEndpoint | None = None,
    profiles: ParticipantProfiles | None = None,
    history: ConversationHistory | None = None,
    clock: Clock | None = None,
    announce: Callable[[str], None] = print,
) -> Services:
    """Wire the services for `settings`; `announce` tells the operator about generated keys.

    Each port left out is the real adapter: the Send API and the profiles at
    `settings.graph_api_url`, the Standard Webhooks client for CRMs, the system clock.
    Tests pass fakes (a clock they move on) to the same function."""
    persistence = persistence_env(settings.database_url)
    require_database(persistence)  # before a development key is made for nothing
    views = create_view_engine(settings.database_url)
    persistence = prepare_schema(persistence, views, settings.database_url)
    keys = secret_keys(settings, announce=announce)
    secrets = FernetSecretBox(keys)
    clock = clock or SystemClock()
    closers: list[Callable[[], None]] = []
    async_closers: list[Callable[[], Awaitable[None]]] = []
    if profiles is None:
        graph_profiles = GraphApiProfiles(settings.graph_api_url, settings.graph_api_version)
        closers.append(graph_profiles.close)
        profiles = graph_profiles
    if history is None:
        graph_history = GraphApiHistory(settings.graph_api_url, settings.graph_api_version)
        closers.append(graph_history.close)
        history = graph_history
    crm_urls = CrmUrlPolicy(
        allow_private=settings.crm_allow_private_urls, https_only=settings.is_production
    )
    if instagram is None:
        send_api = InstagramGraphClient(settings.graph_api_url, settings.graph_api_version)
        closers.append(send_api.close)
        async_closers.append(send_api.aclose)
        instagram = send_api
    if crm is None:
        webhooks = StandardWebhooksClient(crm_urls)
        closers.append(webhooks.close)
        async_closers.append(webhooks.aclose)
        crm = webhooks
    metrics = PrometheusMetrics(
        account_labels=settings.metrics_account_labels,
        multiprocess_dir=settings.metrics_multiprocess_dir,
    )
    remember_secret(settings.metrics_token)  # masked in every log line
    ledger = Ledger(env=persistence)
    writer = LedgerWriter(ledger, metrics=metrics)
    install_chain(ledger.recorder, keys)
    install_vault(ledger, keys)
    key_usage = SqlKeyUsage(views)
    auto_replies = AutoReplies(ledger, secrets, profiles, clock)
    read_models = ReadModels.build(ledger, views, writer, auto_replies, clock=clock)
    delivery_queue = DeliveryQueue(views)
    # A rebuilt outbox is adopted from its start again, in the transaction that swaps it in.
    read_models.outbox.when_replaced(delivery_queue.outbox_replaced)
    dispatcher = Dispatcher(
        ledger=ledger,
        writer=writer,
        outbox=delivery_queue,
        windows=read_models.outbox,
        secrets=secrets,
        instagram=instagram,
        crm=crm,
        owner=f"{socket.gethostname()}:{os.getpid()}",
        clock=clock,
        limits=SqlSendLimits(
            views,
            {"text": settings.text_sends_per_second, "media": settings.media_sends_per_second},
        ),
        attachments=SqlReusableAttachments(views),
        lease_ms=settings.dispatch_lease_seconds * 1000,
        crm_retry_schedule=settings.crm_retry_schedule_seconds,
        metrics=metrics,
        # The Graph client serves the Messenger Profile API too; a stand-in may not.
        messenger_profile=instagram if isinstance(instagram, MessengerProfileApi) else None,
    )
    # The gauges read from the database are read when /metrics is scraped, not kept.
    metrics.add(StateCollector(OperationalStateReader(read_models, delivery_queue)))
    ingest = WebhookIngest(secrets)
    # A rotated app secret must not stay in memory (see application.webhook_signatures).
    ledger.on_account_change(ingest.app_secrets.forget)
    backfill = Backfill(ledger, writer, secrets, history)
    return Services(
        settings=settings,
        ledger=ledger,
        writer=writer,
        ingest=ingest,
        app_secrets=ServedAppSecrets(ledger, secrets),
        accounts=Accounts(ledger, secrets, clock),
        api_keys=ApiKeys(ledger, key_usage, clock),
        conversations=Conversations(),
        auto_replies=auto_replies,
        rules=Rules(ledger, profiles, secrets, clock),
        read_models=read_models,
        dispatcher=dispatcher,
        delivery_queue=delivery_queue,
        redeliveries=Redeliveries(writer, delivery_queue, clock.now_ms),
        crm_endpoints=CrmEndpoints(ledger, secrets, new_secret, crm_urls.problem_with_url),
        entry_points=EntryPoints(ledger),
        retention=ContentRetention(ledger, writer, clock.now_ms),
        backfill=backfill,
        backfills=BackfillRuns(backfill, clock.now_ms),
        clock=clock,
        instagram=instagram,
        crm=crm,
        profiles=profiles,
        _closers=closers,
        _async_closers=async_closers,
        metrics=metrics,
    )


def settings_from_environment() -> Settings:
    """The settings of this process, from its environment variables."""
    return Settings.from_environ(os.environ)


def secret_keys(settings: Settings, *, announce: Callable[[str], None]) -> list[str]:
    """The configured keys; in development, a generated key kept under the data directory."""
    if settings.secret_keys:
        return list(settings.secret_keys)
    if settings.is_production:
        raise SettingsError(
            "DMLEDGER_SECRET_KEY must be set in production: it encrypts the stored credentials "
            "(make one with `dmledger secrets new-key`)"
        )
    key_file = Path(settings.data_dir) / DEVELOPMENT_KEY_FILE
    if key_file.exists():
        return [key_file.read_text().strip()]
    key = FernetSecretBox.new_key()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n")
    announce(
        "No DMLEDGER_SECRET_KEY is set, so dmledger generated a development key and keeps it in "
        f"{key_file}:\n  DMLEDGER_SECRET_KEY={key}\n"
        "Set DMLEDGER_SECRET_KEY (and DMLEDGER_ENV=production) before real use."
    )
    return [key]
