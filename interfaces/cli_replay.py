"""`dmledger replay` (also `dmledger events`): an account's events, printed or exported.

Every secret an event holds (see `application.audit.SECRET_FIELDS`) is `<redacted>` in
every format: the CLI prints or exports no credential, not even as ciphertext.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import msgspec

from application.audit import SECRET_FIELDS, AuditEvent, AuditLog, parse_types
from infrastructure.settings import Settings
from interfaces.cli_support import CliError, ProgressBar, services_of

HIDDEN_IN_TABLES = SECRET_FIELDS | {"key"}
"""Not summarised in a table row: the secrets, and the record key (room for what matters)."""


def add_commands(commands: Any) -> None:
    """Add `replay`, and `events` as another name for it, to the `dmledger` subparsers."""
    replay = commands.add_parser(
        "replay",
        aliases=["events"],
        help="print or export an account's events in log order",
        description="Every event of the account and its conversations, in log order, up to "
        "the head of the log when the command starts. Secrets (the account's credentials, "
        "the CRM endpoint's signing secret) are shown as <redacted>, in every format. "
        "`events` is another name for `replay`.",
    )
    replay.add_argument("--account", required=True, help="the Instagram account id")
    replay.add_argument("--after", type=int, default=0, help="only events after this position")
    replay.add_argument("--until", help="only events recorded at or before this RFC 3339 time")
    replay.add_argument(
        "--types", help="only these event types, comma-separated (e.g. Conversation.Archived)"
    )
    replay.add_argument("--format", choices=("jsonl", "table"), default=None)
    replay.add_argument(
        "--out", help="write to this file (JSON lines unless --format table) and print a summary"
    )
    replay.set_defaults(run=_replay)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    until = _time(args.until) if args.until else None
    types = parse_types([args.types] if args.types else None)
    fmt = args.format or ("jsonl" if args.out else "table")
    with services_of(settings) as services:
        if services.ledger.account(args.account) is None:
            raise CliError(f"Instagram account {args.account} is not registered")
        audit = AuditLog(services.ledger)
        bar = ProgressBar(f"replaying {args.account}")
        # Rows printed to the terminal are their own progress; a bar would garble them.
        bar.shown = bar.shown and (args.out is not None or not sys.stdout.isatty())
        events = audit.events(
            args.account, after=args.after, until=until, types=types, progress=bar.update
        )
        if args.out:
            with open(args.out, "wb") as out:
                count, digest = _write(events, out, fmt)
            bar.done()
            print(
                f"exported {count} events of account {args.account} to {args.out} (sha256 {digest})"
            )
            return 0
        stdout: IO[bytes] = sys.stdout.buffer
        _write(events, stdout, fmt)
        stdout.flush()
        bar.done()
    return 0


def _write(events: Iterator[AuditEvent], out: IO[bytes], fmt: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    encoder = msgspec.json.Encoder()
    if fmt == "table":
        header = _row("POSITION", "TYPE", "AGGREGATE", "VERSION", "RECORDED AT", "DATA")
        out.write(header)
        digest.update(header)
    for event in (e.redacted() for e in events):
        if fmt == "table":
            line = _row(
                str(event.position),
                event.type,
                event.aggregate_id[:8],
                str(event.version),
                event.timestamp.isoformat(timespec="milliseconds"),
                _summary(event.data),
            )
        else:
            line = encoder.encode(event) + b"\n"
        out.write(line)
        digest.update(line)
        count += 1
    return count, digest.hexdigest()


_WIDTHS = (9, 36, 9, 8, 30)


def _row(*values: str) -> bytes:
    cells = [v.ljust(w) for v, w in zip(values, _WIDTHS, strict=False)]
    return ("  ".join([*cells, values[-1]]).rstrip() + "\n").encode()


def _summary(data: dict[str, Any]) -> str:
    hidden = HIDDEN_IN_TABLES
    shown = {k: v for k, v in data.items() if k not in hidden and v not in (None, [], {}, False)}
    text = msgspec.json.encode(shown).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--until must be an RFC 3339 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise CliError("--until needs a time zone (RFC 3339), e.g. 2026-01-31T10:00:00Z")
    return parsed
