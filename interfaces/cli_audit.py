"""The auditor's proofs: `dmledger audit verify|checkpoint|projections`, and `audit index`
(`replay` is in `interfaces/cli_replay.py`).

Exit status: 0 when all is well, 1 when the log or a projection is not intact, 2 for
a usage error (as every dmledger command).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

import msgspec

from application.audit import AuditLog, ChainReport
from application.errors import InvalidInput
from domain import conversation as conversation_events
from domain import media as media_events
from infrastructure.chain_verifier import ChainVerifier
from infrastructure.chained_recorders import chain_verifier
from infrastructure.event_chain import ChainKeyring, Checkpoint
from infrastructure.settings import Settings
from interfaces.cli_support import CliError, ProgressBar, services_of
from interfaces.composition import Services
from projections.audit_check import ProjectionCheck, check_account


def add_commands(commands: Any) -> None:
    """Add `audit` to the `dmledger` command's subparsers."""
    audit = commands.add_parser("audit", help="prove the log and the projections intact")
    actions = audit.add_subparsers(required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="walk the log's hash chain; exit 1 at the first event whose chain breaks",
    )
    verify.add_argument("--account", help="only this account's events (default: the whole log)")
    verify.add_argument(
        "--against",
        metavar="CHECKPOINT",
        help="also prove the log still extends this checkpoint (its text, or a file holding it) "
        "taken earlier by `dmledger audit checkpoint`",
    )
    verify.set_defaults(run=_verify)
    checkpoint = actions.add_parser(
        "checkpoint",
        help="print a signed checkpoint of the log's head, to keep outside the database",
        description="Prints one line: the position and chain link of the log's newest event, "
        "signed with the chain key. Keep it outside the database; `dmledger audit verify "
        "--against CHECKPOINT` later proves the log still extends it (nothing at or before "
        "it deleted or altered, the log not cut short).",
    )
    checkpoint.set_defaults(run=_checkpoint)
    projections = actions.add_parser(
        "projections",
        help="rebuild an account's read models from the log and compare them with the live ones",
    )
    projections.add_argument("--account", required=True, help="the Instagram account id")
    projections.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for the read models to reach the log's head first (default 10); "
        "a view still behind then is reported as behind (exit status 1)",
    )
    projections.set_defaults(run=_projections)
    index = actions.add_parser(
        "index",
        help="index a log stored before the account index existed (once, after upgrading)",
        description="Every event is stored with a row of its account's index, which the "
        "events stream and `replay` read instead of the whole log. A log stored before the "
        "index existed is read the slow way until this command has indexed it (a new, empty "
        "log needs nothing). New events wait while the last step runs. Safe to run again.",
    )
    index.set_defaults(run=_index)


def _error(message: str) -> Exception:
    return CliError(message)


def _progress(label: str) -> Any:
    return ProgressBar(label)


def _account(services: Services, ig_account_id: str) -> None:
    if services.ledger.account(ig_account_id) is None:
        raise _error(f"Instagram account {ig_account_id} is not registered")


# -- audit verify ------------------------------------------------------------------------


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    if args.against and args.account:
        raise _error("--against checks the whole log: leave out --account")
    with services_of(settings) as services:
        verifier = _verifier(services)
        against = _checkpoint_given(args.against, verifier.keyring) if args.against else None
        aggregates = None
        scope = "the whole log"
        if args.account:
            _account(services, args.account)
            aggregates = AuditLog(services.ledger).aggregate_ids(args.account)
            scope = f"account {args.account}"
        bar = _progress("verifying")
        report = verifier.verify(
            aggregates,
            also_topics=[conversation_events.STARTED, media_events.STARTED],
            progress=bar.update,
            against=against,
        )
        bar.done()
    _print_report(report, scope)
    return 0 if report.intact else 1


def _verifier(services: Services) -> ChainVerifier:
    verifier = chain_verifier(services.ledger.recorder)
    if verifier is None:
        raise _error("this event store keeps no hash chain (memory:// keeps nothing to verify)")
    return verifier


def _checkpoint_given(given: str, keyring: ChainKeyring) -> Checkpoint:
    path = Path(given)
    text = path.read_text() if len(given) < 4096 and path.is_file() else given
    try:
        checkpoint = Checkpoint.parse(text)
    except ValueError as error:
        raise _error(f"--against {error}") from None
    if not keyring.knows(checkpoint.key_id):
        raise _error(
            f"the checkpoint was signed with chain key {checkpoint.key_id}, which none of the "
            "configured DMLEDGER_SECRET_KEY keys gives (was an old key removed?)"
        )
    if not keyring.checkpoint_holds(checkpoint):
        raise _error(
            "the checkpoint's signature does not match: it was altered, or taken by another "
            "deployment"
        )
    return checkpoint


def _print_report(report: ChainReport, scope: str) -> None:
    print(f"checked {report.checked} events of {scope} (log head: position {report.head})")
    print(f"  chained:   {report.chained}")
    if report.unchained:
        print(
            f"  unchained: {report.unchained} (stored before the hash chain began at position "
            f"{report.chain_began_at})"
        )
    if report.broken is None:
        print("intact: every event matches its hash chain")
        if report.extends is not None:
            print(f"the log extends the checkpoint at position {report.extends}")
        return
    broken = report.broken
    print(f"BROKEN ({broken.kind}) at position {broken.position}: {broken.detail}")


# -- audit checkpoint --------------------------------------------------------------------


def _checkpoint(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        verifier = _verifier(services)
        tail = verifier.log.chain_tail()
    if tail.genesis is None or tail.last is None:
        raise _error("the log's chain has not begun yet: it begins with the next event stored")
    position, digest = tail.last
    checkpoint = verifier.keyring.checkpoint(
        position=position, began_at=tail.genesis.began_at, digest=digest
    )
    print(checkpoint.token())
    print(
        f"checkpoint of the log at position {position} (the chain began at position "
        f"{tail.genesis.began_at}); keep it outside the database and check it with "
        "`dmledger audit verify --against CHECKPOINT`",
        file=sys.stderr,
    )
    return 0


# -- audit index -------------------------------------------------------------------------


def _index(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        audit = AuditLog(services.ledger)
        if audit.index() is not None:
            print("the account index already covers the whole log")
            return 0
        bar = _progress("indexing")
        try:
            owned = audit.build_index(progress=bar.update)
        except InvalidInput as error:
            raise _error(error.detail) from None
        bar.done()
    print(f"indexed the log by account: {owned} accounts and conversations")
    return 0


# -- audit projections -------------------------------------------------------------------


def _projections(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        _account(services, args.account)
        _wait_for_head(services, args.wait)
        bar = _progress("rebuilding")
        checks = check_account(
            services.read_models,
            AuditLog(services.ledger),
            args.account,
            progress=bar.update,
        )
        bar.done()
    for check in checks:
        _print_check(check)
    return 0 if all(check.identical for check in checks) else 1


def _wait_for_head(services: Services, seconds: float) -> None:
    head = services.ledger.recorder.max_notification_id()
    for runner in services.read_models.rebuildable().values():
        with suppress(TimeoutError):
            runner.view.wait(services.ledger.name, head, timeout=seconds)


def _print_check(check: ProjectionCheck) -> None:
    differ = f"{len(check.differences)} rows differ"
    if check.behind:
        verdict = differ if check.differences else "no difference up to there"
        print(
            f"{check.projection}: behind the log by {check.behind} events (at {check.position}"
            f" of {check.head}); {check.rows} rows compared at position {check.position}: "
            f"{verdict}"
        )
    else:
        verdict = "identical" if check.identical else differ
        print(
            f"{check.projection}: {check.rows} rows compared at position {check.position}: "
            f"{verdict}"
        )
    for table in check.skipped_tables:
        print(f"  {table}: not compared (its rows name no account or conversation)")
    for difference in check.differences:
        key = ", ".join(f"{k}={v}" for k, v in difference.key.items())
        if difference.kind == "missing":
            print(f"  {difference.table} [{key}]: missing from the live view")
            print(f"    rebuilt: {_json(difference.rebuilt)}")
        elif difference.kind == "unexpected":
            print(f"  {difference.table} [{key}]: in the live view, not in the log's rebuild")
            print(f"    live:    {_json(difference.live)}")
        else:
            print(f"  {difference.table} [{key}]: {', '.join(difference.columns)} differ")
            for column in difference.columns:
                live = (difference.live or {}).get(column)
                rebuilt = (difference.rebuilt or {}).get(column)
                print(f"    {column}: live {_json(live)}, rebuilt {_json(rebuilt)}")


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
