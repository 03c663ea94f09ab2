"""P7: the auditor's stream of one account, in a log of a million events.

The account (1,000 events: its registration and 111 conversations of a start and eight
messages) is stored through dmledger's writer, halfway through a log filled with other
accounts' conversations. The filler is copied in the server (`INSERT ... SELECT` over
`generate_series`) from real events of another account, ten events an aggregate, with
its owners and account-index rows, as dmledger would have written them: a million events
take tens of seconds instead of the hours the ingest path would.

Measured, in this process, what the events stream endpoint (`GET /audit/events`) and
`dmledger replay` both run: `AuditLog.ndjson` of the account, read to the end. Timed
when the log holds half the filler and again when it holds all of it, to see how the
time grows with the log; the baseline, in the same run, is the same stream read the old
way (the whole log scanned and filtered by aggregate, `index()` answering None).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg

from application.audit import AuditLog
from application.ports import AccountIndex
from benchmarks.load import ACCOUNTS
from domain.conversation import Conversation
from domain.identity import account_id, conversation_id

CONVERSATIONS = 111
MESSAGES = 8
"""The account's events: its registration, and per conversation a start and 8 messages."""
TEMPLATES = 10
FILLER_VERSIONS = 10


class ScanningAuditLog(AuditLog):
    """The audit log as it read before the index: the whole log, filtered by aggregate."""

    def index(self) -> AccountIndex | None:
        return None


def fill_account(services: Any, ig_id: str, conversations: int, messages: int, tag: str) -> None:
    """Give an account `conversations` conversations of a start and `messages` messages."""

    def command(changes: Any) -> None:
        for c in range(conversations):
            participant = f"{tag}{c:08d}"
            conversation = Conversation(ig_account_id=ig_id, participant_id=participant)
            changes.add(conversation)
            for n in range(messages):
                conversation.receive_message(
                    mid=f"{tag}-{c}-{n}", sent_at=1_767_000_000_000 + n, text=f"message {n}"
                )

    services.writer.run_now(command)


def fill_log(database_url: str, first: int, count: int, owner: str) -> None:
    """Add `count` filler events (aggregates numbered from `first // 10`), copied from the
    templates, with their owners and index rows."""
    with psycopg.connect(database_url, autocommit=True) as db:
        before = db.execute("SELECT coalesce(max(notification_id), 0) FROM dmledger_events")
        row = before.fetchone()
        assert row is not None  # an aggregate has a row
        head = row[0]
        db.execute(
            "INSERT INTO dmledger_events (originator_id, originator_version, topic, state) "
            "SELECT md5('p7-filler-' || g / %(v)s)::uuid, g %% %(v)s + 1, t.topic, t.state "
            "FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g "
            "JOIN p7_templates t ON t.slot = (g / %(v)s) %% %(slots)s "
            "AND t.version = g %% %(v)s + 1 ORDER BY g",
            {"v": FILLER_VERSIONS, "first": first, "last": first + count - 1, "slots": TEMPLATES},
        )
        db.execute(
            "INSERT INTO dmledger_events_owners (originator_id, account_id) "
            "SELECT md5('p7-filler-' || k)::uuid, %s "
            "FROM generate_series(%s::bigint, %s::bigint) AS k",
            [account_id(owner), first // FILLER_VERSIONS, (first + count - 1) // FILLER_VERSIONS],
        )
        db.execute(
            "INSERT INTO dmledger_events_by_account (account_id, notification_id) "
            "SELECT o.account_id, e.notification_id FROM dmledger_events e "
            "JOIN dmledger_events_owners o ON o.originator_id = e.originator_id "
            "WHERE e.notification_id > %s",
            [head],
        )
        db.execute("VACUUM ANALYZE")
        db.execute("CHECKPOINT")


def timed_stream(audit: AuditLog, ig_id: str, runs: int) -> tuple[list[float], list[float], int]:
    """Wall seconds and this process's CPU seconds of each run, and the lines streamed."""
    seconds, cpu = [], []
    lines = 0
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        lines = sum(chunk.count(b"\n") for chunk in audit.ndjson(ig_id))
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return seconds, cpu, lines


def server_milliseconds(database_url: str, ig_id: str) -> float:
    """PostgreSQL's own time for the first page of the account's index (EXPLAIN ANALYZE)."""
    with psycopg.connect(database_url, autocommit=True) as db:
        rows = db.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT e.* FROM dmledger_events_by_account b "
            "JOIN dmledger_events e ON e.notification_id = b.notification_id "
            "WHERE b.account_id = %s ORDER BY b.notification_id LIMIT 500",
            [account_id(ig_id)],
        ).fetchone()
    assert rows is not None
    return float(rows[0][0]["Execution Time"])


def measure(bench: Any) -> dict[str, Any]:
    """P7's figures (see the module's docstring)."""
    log_events = bench.config.audit_log_events
    bench.reset_database()
    bench.register_accounts()
    target, other = ACCOUNTS[0], ACCOUNTS[1]
    started = time.monotonic()
    with bench.services() as services:
        # The filler's templates: real events of another account's conversations.
        fill_account(services, other, TEMPLATES, FILLER_VERSIONS - 1, "p7t")
        with psycopg.connect(bench.database_url, autocommit=True) as db:
            db.execute(
                "CREATE TABLE p7_templates AS SELECT c.slot - 1 AS slot, "
                "e.originator_version AS version, e.topic, e.state FROM dmledger_events e "
                "JOIN (SELECT originator_id, row_number() OVER (ORDER BY originator_id) AS slot "
                "FROM dmledger_events WHERE originator_version = %s) c "
                "ON c.originator_id = e.originator_id",
                [FILLER_VERSIONS],
            )
        half = log_events // 2 // FILLER_VERSIONS * FILLER_VERSIONS
        fill_log(bench.database_url, 0, half, other)
        fill_account(services, target, CONVERSATIONS, MESSAGES, "p7")
        fill_seconds = time.monotonic() - started

        runs = 3
        results: dict[str, Any] = {}
        for size, label in ((half, "half"), (log_events, "full")):
            if label == "full":
                begun = time.monotonic()
                fill_log(bench.database_url, half, log_events - half, other)
                fill_seconds += time.monotonic() - begun
            head = services.ledger.recorder.max_notification_id() or 0
            indexed, cpu, lines = timed_stream(AuditLog(services.ledger), target, runs)
            scanned, _, scanned_lines = timed_stream(ScanningAuditLog(services.ledger), target, 1)
            if lines != scanned_lines or lines != 1 + CONVERSATIONS * (1 + MESSAGES):
                raise RuntimeError(f"P7 streamed {lines} and scanned {scanned_lines} events")
            results[label] = {
                "log_events": head,
                "filler_events": size,
                "account_events": lines,
                "indexed_seconds": [round(s, 4) for s in indexed],
                "indexed_median_seconds": round(statistics.median(indexed), 4),
                "indexed_cpu_seconds": [round(s, 4) for s in cpu],
                "index_page_server_ms": round(server_milliseconds(bench.database_url, target), 2),
                "scanned_seconds": round(scanned[0], 3),
            }
    with psycopg.connect(bench.database_url, autocommit=True) as db:
        sizes = db.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('dmledger_events')), "
            "pg_size_pretty(pg_total_relation_size('dmledger_events_by_account')), "
            "pg_size_pretty(pg_total_relation_size('dmledger_events_owners'))"
        ).fetchone()
    assert sizes is not None
    bench.details["p7_audit_stream"] = {
        **results,
        "fill_seconds": round(fill_seconds, 1),
        "runs": runs,
        "table_sizes": {"events": sizes[0], "by_account": sizes[1], "owners": sizes[2]},
        "conversation_of_the_account": str(conversation_id(target, "p700000000")),
    }
    full, half_ = results["full"], results["half"]
    return {
        "seconds": full["indexed_median_seconds"],
        "half_seconds": half_["indexed_median_seconds"],
        "scanned_seconds": full["scanned_seconds"],
        "half_scanned_seconds": half_["scanned_seconds"],
        "log_events": full["log_events"],
        "half_log_events": half_["log_events"],
        "events": full["account_events"],
    }
