"""The `dmledger` command line."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from application.errors import ApplicationError
from infrastructure.secret_box import FernetSecretBox, SecretKeyError
from infrastructure.settings import Settings, SettingsError
from interfaces.access_log import RedactVerifyToken
from interfaces.cli_support import CliError, ProgressBar
from interfaces.composition import Services, build, settings_from_environment
from interfaces.refusal_log import RateLimitedAccessLog
from projections.registry import ProjectionBusy

SECRET_OPTIONS = ("app_secret", "access_token", "verify_token")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `dmledger` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_environment()
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
        )
        result: int = args.run(settings, args)
    except (SettingsError, SecretKeyError, CliError, ApplicationError) as error:
        print(f"dmledger: {error}", file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmledger", description="Event-sourced conversation service for Instagram DMs."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (default: DMLEDGER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: DMLEDGER_PORT or 8000)")
    serve.add_argument(
        "--no-projections",
        action="store_true",
        help="do not run the projection runners here (separate `dmledger project` processes do)",
    )
    serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="do not run the dispatcher here (separate `dmledger dispatch` processes do)",
    )
    serve.set_defaults(run=_serve)

    accounts = commands.add_parser("accounts", help="manage Instagram accounts").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = accounts.add_parser(
        "add",
        help="register an Instagram professional account",
        description=(
            "Register an account. Each secret may be given as VALUE, as 'env:NAME' to read "
            "the environment variable NAME, or as '-' to read it from a line of standard "
            "input (in the order app secret, access token, verify token), so secrets stay "
            "out of shell history. A secret not given is asked for when on a terminal."
        ),
    )
    add.add_argument("--ig-id", required=True, help="the Instagram professional account id")
    add.add_argument("--username", required=True, help="the account's Instagram username")
    add.add_argument("--app-secret", help="the Meta app secret that signs webhooks")
    add.add_argument("--access-token", help="the Instagram access token for the Send API")
    add.add_argument("--verify-token", help="the webhook verify token set in Meta's dashboard")
    add.set_defaults(run=_accounts_add)
    listing = accounts.add_parser("list", help="list the registered accounts")
    listing.add_argument("--format", choices=("table", "jsonl"), default="table")
    listing.set_defaults(run=_accounts_list)

    events = commands.add_parser("events", help="print an account's stored events in log order")
    events.add_argument("--account", required=True, help="the Instagram account id")
    events.add_argument("--format", choices=("table", "jsonl"), default="table")
    events.set_defaults(run=_events)

    keys = commands.add_parser("keys", help="REST API keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = keys.add_parser(
        "create",
        help="issue an API key (printed once; only its hash is stored)",
        description="Issue a key. --admin: every account; --account ID: that account's CRM; "
        "--auditor: read-only, for --account ID or, without it, every account.",
    )
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'crm-prod'")
    create.add_argument("--account", help="the Instagram account id the key is for")
    role = create.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_true", help="an admin key, for every account")
    role.add_argument("--auditor", action="store_true", help="a read-only auditor key")
    create.set_defaults(run=_keys_create)
    key_list = keys.add_parser("list", help="list API keys (never their secrets)")
    key_list.set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke an API key")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")
    revoke.set_defaults(run=_keys_revoke)

    dispatch = commands.add_parser(
        "dispatch", help="send the outboxes (Instagram, CRM) until stopped"
    )
    dispatch.add_argument("--once", action="store_true", help="send what is due now, then stop")
    dispatch.set_defaults(run=_dispatch)
    project = commands.add_parser("project", help="run the projection runners until stopped")
    project.set_defaults(run=_project)
    projections = commands.add_parser("projections", help="read models").add_subparsers(
        required=True, metavar="ACTION"
    )
    status = projections.add_parser("status", help="each projection's position and lag")
    status.set_defaults(run=_projections_status)
    parked = projections.add_parser(
        "parked", help="the events projections skipped because they failed on them"
    )
    parked.set_defaults(run=_projections_parked)
    retry = projections.add_parser(
        "retry-parked",
        help="apply parked events again (after the cause is fixed)",
        description="Applies each parked event again, in log order, beside running "
        "runners; those that still fail stay parked (exit status 1).",
    )
    retry.add_argument("names", nargs="*", metavar="NAME", help="only these projections")
    retry.set_defaults(run=_projections_retry_parked)
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
    rebuild.set_defaults(run=_projections_rebuild)

    secrets = commands.add_parser("secrets", help="secret keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    new_key = secrets.add_parser("new-key", help="print a new random DMLEDGER_SECRET_KEY")
    new_key.set_defaults(run=lambda _settings, _args: _print(FernetSecretBox.new_key()))
    reencrypt = secrets.add_parser(
        "reencrypt",
        help="record every account's credentials re-encrypted under the newest key",
        description="After putting a new key first in DMLEDGER_SECRET_KEY (old ones after "
        "it), this records each account's credentials under the new key, so that the old "
        "key can later be removed.",
    )
    reencrypt.set_defaults(run=_secrets_reencrypt)

    from interfaces import cli_audit  # replay, audit verify, audit projections

    cli_audit.add_commands(commands)
    return parser


def _print(text: str) -> int:
    print(text)
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from interfaces.http.app import create_app
    from interfaces.http_server import ConnectionLimits, guarded_protocol

    services = build(settings, announce=lambda text: print(text, file=sys.stderr))
    limits = ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
    )
    try:
        config = uvicorn.Config(
            create_app(
                services,
                run_projections=not args.no_projections,
                run_dispatcher=not args.no_dispatcher,
            ),
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_level=settings.log_level,
            http=guarded_protocol(limits),
            timeout_keep_alive=settings.keep_alive_timeout,
        )
        # uvicorn has configured its loggers by now; the filters must come after that.
        access_log = logging.getLogger("uvicorn.access")
        access_log.addFilter(RedactVerifyToken())
        access_log.addFilter(RateLimitedAccessLog())
        uvicorn.Server(config).run()
    finally:
        services.close()
    return 0


def _services(settings: Settings) -> Services:
    return build(settings, announce=lambda text: print(text, file=sys.stderr))


def _accounts_add(settings: Settings, args: argparse.Namespace) -> int:
    secrets = _read_secrets(args)
    services = _services(settings)
    try:
        command = services.accounts.register(
            ig_account_id=args.ig_id, username=args.username, by="cli", **secrets
        )
        summary = services.writer.run_now(command)
    finally:
        services.close()
    print(f"registered Instagram account {summary.ig_account_id} (@{summary.username})")
    return 0


def _read_secrets(args: argparse.Namespace) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in SECRET_OPTIONS:
        given: str | None = getattr(args, name)
        label = "--" + name.replace("_", "-")
        if given == "-":
            line = sys.stdin.readline()
            if not line:
                raise CliError(f"{label} is '-' but standard input has no line left for it")
            values[name] = line.rstrip("\r\n")
        elif given is not None and given.startswith("env:"):
            variable = given.removeprefix("env:")
            if not os.environ.get(variable):
                raise CliError(
                    f"{label} names the environment variable {variable}, which is not set"
                )
            values[name] = os.environ[variable]
        elif given is not None:
            values[name] = given
        elif sys.stdin.isatty():
            values[name] = getpass.getpass(f"{name.replace('_', ' ')}: ")
        else:
            raise CliError(f"{label} is required")
    return values


def _accounts_list(settings: Settings, args: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        accounts = services.accounts.list()
    finally:
        services.close()
    if args.format == "jsonl":
        for account in accounts:
            sys.stdout.write(msgspec.json.encode(account).decode() + "\n")
        return 0
    rows = [
        (a.ig_account_id, "@" + a.username, a.status, a.registered_at.isoformat(timespec="seconds"))
        for a in accounts
    ]
    _table(("INSTAGRAM ID", "USERNAME", "STATUS", "REGISTERED"), rows)
    return 0


def _events(settings: Settings, args: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        if services.ledger.account(args.account) is None:
            raise CliError(f"Instagram account {args.account} is not registered")
        rows = []
        for position, event in services.ledger.account_history(args.account):
            record = _event_record(position, event)
            if args.format == "jsonl":
                sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
            else:
                rows.append(
                    (
                        str(position),
                        record["type"],
                        str(record["aggregate_id"])[:8],
                        str(record["version"]),
                        record["timestamp"],
                        _summary(record["data"]),
                    )
                )
    finally:
        services.close()
    if args.format == "table":
        _table(("POSITION", "TYPE", "AGGREGATE", "VERSION", "RECORDED AT", "DATA"), rows)
    return 0


def _event_record(position: int, event: Any) -> dict[str, Any]:
    state = dict(vars(event))
    aggregate_id = state.pop("originator_id")
    version = state.pop("originator_version")
    timestamp = state.pop("timestamp")
    state.pop("originator_topic", None)
    return {
        "position": position,
        "type": type(event).TOPIC.split(":", 1)[-1],
        "aggregate_id": str(aggregate_id),
        "version": version,
        "timestamp": timestamp.isoformat(),
        "data": state,
    }


def _summary(data: dict[str, Any]) -> str:
    # Credentials are ciphertext, but a table is no place for them.
    shown = {
        k: v
        for k, v in data.items()
        if k not in SECRET_OPTIONS and k != "key" and v not in (None, [], {}, False)
    }
    text = msgspec.json.encode(shown).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    role = "admin" if args.admin else "auditor" if args.auditor else "account"
    services = _services(settings)
    try:
        command = services.api_keys.issue(
            name=args.name, role=role, ig_account_id=args.account, by="cli"
        )
        issued = services.writer.run_now(command)
    finally:
        services.close()
    scope = issued.key.ig_account_id or "every account"
    # Only the key goes to standard output, so that KEY=$(dmledger keys create ...) works.
    print(
        f"issued {issued.key.role} key {issued.key.key_id} ({issued.key.name}) for {scope}; "
        "it is shown this once (only its hash is stored):",
        file=sys.stderr,
    )
    print(issued.token)
    return 0


def _keys_list(settings: Settings, _: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        keys = services.api_keys.list()
    finally:
        services.close()
    rows = [
        (
            k.key_id,
            k.name,
            k.role,
            k.ig_account_id or "*",
            k.created_at.isoformat(timespec="seconds"),
            k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "never",
            "revoked" if k.revoked else "active",
        )
        for k in keys
    ]
    _table(("KEY ID", "NAME", "ROLE", "ACCOUNT", "CREATED", "LAST USED", "STATE"), rows)
    return 0


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        key = services.writer.run_now(services.api_keys.revoke(args.key_id, by="cli"))
    finally:
        services.close()
    print(f"revoked key {key.key_id} ({key.name})")
    return 0


def _project(settings: Settings, _: argparse.Namespace) -> int:
    import signal
    import threading

    services = _services(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"running projections: {', '.join(services.read_models.runners)}", file=sys.stderr)
    try:
        services.read_models.start()
        stop.wait()
    finally:
        services.close()
    return 0


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from interfaces.dispatching import run_dispatcher

    services = _services(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if args.once:
            await services.dispatcher.drain()
        else:
            print("dispatching the outboxes", file=sys.stderr)
            await run_dispatcher(services, stop)

    services.writer.start()
    try:
        asyncio.run(main())
    finally:
        services.close()
    return 0


def _projections_status(settings: Settings, _: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        health = services.read_models.health()
    finally:
        services.close()
    rows = [(p.name, str(p.position), str(p.head), str(p.lag), str(p.parked)) for p in health]
    _table(("PROJECTION", "POSITION", "HEAD", "LAG", "PARKED"), rows)
    return 0


def _projections_parked(settings: Settings, _: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        parked = services.read_models.parked()
    finally:
        services.close()
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
    _table(("PROJECTION", "POSITION", "EVENT", "AGGREGATE", "ATTEMPTS", "ERROR"), rows)
    return 0


def _projections_retry_parked(settings: Settings, args: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        known = services.read_models.runners
        unknown = [name for name in args.names if name not in known]
        if unknown:
            raise CliError(f"there is no projection {unknown[0]!r}; there are: {', '.join(known)}")
        applied, failing = services.read_models.retry_parked(args.names or None)
    finally:
        services.close()
    print(f"{applied} applied, {failing} still parked")
    return 1 if failing else 0


def _projections_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    services = _services(settings)
    try:
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
    finally:
        services.close()
    print(f"rebuilt {label} from {applied} events")
    return 0


def _secrets_reencrypt(settings: Settings, _: argparse.Namespace) -> int:
    services = _services(settings)
    try:
        accounts = services.accounts.list()
        for account in accounts:
            services.writer.run_now(services.accounts.reencrypt(account.ig_account_id, by="cli"))
    finally:
        services.close()
    print(f"re-encrypted the credentials of {len(accounts)} accounts under the newest key")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
