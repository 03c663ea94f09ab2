"""The `dmledger` command line: its entry point, and the parser each command group adds to.

| commands | module |
| --- | --- |
| serve, project, dispatch | `interfaces/cli_serve.py` |
| accounts add, list | `interfaces/cli_accounts.py` |
| keys create, list, revoke | `interfaces/cli_keys.py` |
| projections status, parked, retry-parked, rebuild | `interfaces/cli_projections.py` |
| secrets new-key, reencrypt | `interfaces/cli_secrets.py` |
| replay (also named events) | `interfaces/cli_replay.py` |
| deliveries list, show, redeliver | `interfaces/cli_deliveries.py` |
| dev fake-graph, crm-receiver | `interfaces/cli_dev.py` |
| audit verify, checkpoint, projections | `interfaces/cli_audit.py` |
| db upgrade, current, check | `interfaces/cli_db.py` |

Each command is `run(settings, args) -> exit status`; a `CliError` (and a bad setting or
a refused command) exits with status 2 and its message on standard error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import version

from application.errors import ApplicationError
from infrastructure.secret_box import SecretKeyError
from infrastructure.settings import SettingsError
from interfaces import (
    cli_accounts,
    cli_audit,
    cli_db,
    cli_deliveries,
    cli_dev,
    cli_erase,
    cli_keys,
    cli_projections,
    cli_replay,
    cli_secrets,
    cli_serve,
)
from interfaces.cli_support import CliError
from interfaces.composition import settings_from_environment
from interfaces.logging_setup import configure_logging

SETTINGS_HELP = """\
settings: every command reads its settings from DMLEDGER_* environment variables, once,
at start-up: DMLEDGER_DATABASE_URL (default: var/dmledger.sqlite3 of the checkout, else
of the current directory), DMLEDGER_SECRET_KEY, DMLEDGER_ENV, DMLEDGER_HOST,
DMLEDGER_PORT, DMLEDGER_LOG_LEVEL, DMLEDGER_DATA_DIR, ... (README.md, "Configuration").
`dmledger COMMAND --help` tells more about each command."""

COMMAND_GROUPS = (
    cli_serve,
    cli_accounts,
    cli_replay,
    cli_keys,
    cli_projections,
    cli_deliveries,
    cli_secrets,
    cli_erase,
    cli_audit,
    cli_db,
    cli_dev,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `dmledger` command; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        settings = settings_from_environment()
        configure_logging(settings.log_level, settings.log_format)
        result: int = args.run(settings, args)
        sys.stdout.flush()
    except (SettingsError, SecretKeyError, CliError, ApplicationError) as error:
        print(f"dmledger: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`dmledger replay ... | head`): stop as a Unix tool does,
        # and keep Python from reporting the unflushed rest at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return result


def parser() -> argparse.ArgumentParser:
    """The `dmledger` parser, with every command group's subcommands."""
    root = argparse.ArgumentParser(
        prog="dmledger",
        description="Event-sourced conversation service for Instagram DMs.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"dmledger {version('dmledger')}")
    commands = root.add_subparsers(required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    return root


if __name__ == "__main__":
    raise SystemExit(main())
