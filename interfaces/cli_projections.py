"""`dmledger projections status|parked|retry-parked|rebuild`: the read models."""

from __future__ import annotations

import argparse
from typing import Any

from infrastructure.settings import Settings
from interfaces.cli_support import CliError, ProgressBar, print_table, services_of
from projections.registry import ProjectionBusy


def add_commands(commands: Any) -> None:
    """Add `projections` to the `dmledger` command's subparsers."""
    projections = commands.add_parser("projections", help="read models").add_subparsers(
        required=True, metavar="ACTION"
    )
    status = projections.add_parser("status", help="each projection's position and lag")
    status.set_defaults(run=_status)
    parked = projections.add_parser(
        "parked", help="the events projections skipped because they failed on them"
    )
    parked.set_defaults(run=_parked)
    retry = projections.add_parser(
        "retry-parked",
        help="apply parked events again (after the cause is fixed)",
        description="Applies each parked event again, in log order, beside running "
        "runners; those that still fail stay parked (exit status 1).",
    )
    retry.add_argument("names", nargs="*", metavar="NAME", help="only these projections")
    retry.set_defaults(run=_retry_parked)
    rebuild = projections.add_parser(
        "rebuild", help="drop a read model and rebuild it from the log"
    )
    rebuild.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="the projections, as `projections status` names them, or `all`: several are "
        "rebuilt in one pass over the log",
    )
    rebuild.set_defaults(run=_rebuild)


def _status(settings: Settings, _: argparse.Namespace) -> int:
    with services_of(settings) as services:
        health = services.read_models.health()
        outdated = services.read_models.outdated()
    rows = [(p.name, str(p.position), str(p.head), str(p.lag), str(p.parked)) for p in health]
    print_table(("PROJECTION", "POSITION", "HEAD", "LAG", "PARKED"), rows)
    if outdated:
        print(
            f"built by another definition than this release's: {', '.join(outdated)}; "
            f"run `dmledger projections rebuild {' '.join(outdated)}`"
        )
    return 0


def _parked(settings: Settings, _: argparse.Namespace) -> int:
    with services_of(settings) as services:
        parked = services.read_models.parked()
    rows = [
        (
            p.projection,
            str(p.notification_id),
            p.topic.split(":", 1)[-1],
            p.originator_id,
            str(p.attempts),
            p.error.splitlines()[0][:80] if p.error else "",
        )
        for p in parked
    ]
    print_table(("PROJECTION", "POSITION", "EVENT", "AGGREGATE", "ATTEMPTS", "ERROR"), rows)
    return 0


def _retry_parked(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        known = services.read_models.runners
        unknown = [name for name in args.names if name not in known]
        if unknown:
            raise CliError(f"there is no projection {unknown[0]!r}; there are: {', '.join(known)}")
        applied, failing = services.read_models.retry_parked(args.names or None)
    print(f"{applied} applied, {failing} still parked")
    return 1 if failing else 0


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        rebuildable = services.read_models.rebuildable()
        names = list(rebuildable) if args.names == ["all"] else list(dict.fromkeys(args.names))
        unknown = [name for name in names if name not in rebuildable]
        if unknown:
            raise CliError(
                f"there is no projection {unknown[0]!r}; there are: {', '.join(rebuildable)}"
            )
        label = ", ".join(names)
        bar = ProgressBar(f"rebuilding {label}")
        try:
            applied = services.read_models.rebuild(names, progress=bar.update)
        except ProjectionBusy as busy:
            raise CliError(
                f"projection {busy.name!r} is being followed by another process (a running "
                "`dmledger serve` or `dmledger project`); stop it, then rebuild: nothing "
                "was changed"
            ) from None
        bar.done()
    print(f"rebuilt {label} from {applied} events")
    return 0
