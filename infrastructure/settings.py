"""dmledger's settings, read once from `DMLEDGER_*` environment variables at start-up."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import msgspec

PREFIX = "DMLEDGER_"
DEFAULT_DATABASE_URL = "sqlite:///./var/dmledger.sqlite3"
"""The default before `from_environ` resolves it (see `default_directory`)."""
SOURCE = Path(__file__).resolve().parents[1]
"""Where dmledger's packages are: a checkout (an editable install), or site-packages."""
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("auto", "text", "json")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own variable (read by the library too): where the workers of one
`serve --workers N` keep their counts."""


class SettingsError(ValueError):
    """An environment variable has a value dmledger cannot use; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable about one dmledger process."""

    database_url: str = DEFAULT_DATABASE_URL
    """`postgresql://user:password@host:port/db`, `sqlite:///path`, or `memory://` (tests)."""
    secret_keys: tuple[str, ...] = ()
    """Fernet keys for credentials, newest first (`DMLEDGER_SECRET_KEY`, comma-separated)."""
    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_format: Literal["auto", "text", "json"] = "auto"
    """`text` for people, `json` (one object per line) for log collectors; `auto` picks
    text when standard error is a terminal, JSON otherwise."""
    webhook_max_body_bytes: int = 1024 * 1024
    keep_alive_timeout: int = 5
    """Seconds an idle keep-alive connection stays open after a response."""
    header_timeout: int = 10
    """Seconds a client has to send a request's line and headers."""
    body_timeout: int = 30
    """Seconds a client has to send a request's whole body, once its headers are in."""
    max_connections: int = 1000
    """Connections served at once; more are closed as soon as they are made."""
    data_dir: str = "./var"
    """Where development state lives (the SQLite default, a generated development key)."""
    graph_api_url: str = "https://graph.instagram.com"
    """The Instagram Graph API (tests point it at a fake server on loopback)."""
    graph_api_version: str = "v21.0"
    ready_stall_seconds: int = 60
    """`/readyz` says `degraded` when a projection has not moved this long while events wait."""
    crm_allow_private_urls: bool = False
    """Whether CRM endpoints may be on loopback or private addresses, and use http://
    (outside production): for tests and local trials."""
    dispatch_lease_seconds: int = 60
    """How long a dispatcher holds the deliveries it leased: a dispatcher that dies holding
    them leaves them to the others after this long."""
    text_sends_per_second: int = 300
    """Meta's limit on an account's sends a second (text, links, reactions, templates,
    images), held by all dispatchers together."""
    media_sends_per_second: int = 10
    """Meta's limit on an account's sends of audio or video a second."""
    crm_retry_schedule_seconds: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    """The seconds before each retry of a failed CRM delivery (±20 %); after the last
    retry fails, the delivery is dead."""
    metrics_token: str | None = None
    """A bearer token that may read `/metrics` (besides admin API keys): Prometheus'."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    """Where `project` and `dispatch` serve their `/metrics`; None: they serve none."""
    metrics_account_labels: bool = False
    """Whether the metrics of sends, CRM deliveries and token refreshes carry the account
    id as a label (one series per account: for a few accounts only)."""
    metrics_multiprocess_dir: str | None = None
    """`PROMETHEUS_MULTIPROC_DIR`: set by `serve --workers N` for its workers."""

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, cwd: Path | None = None) -> Settings:
        """Read and validate the settings; raise `SettingsError` naming the bad variable.
        Relative paths are resolved here, once, against `cwd` (the current directory); the
        defaults are under `default_directory`."""
        start = cwd or Path.cwd()
        home = default_directory(start) / "var"

        def get(name: str) -> str | None:
            value = environ.get(PREFIX + name)
            return value.strip() if value is not None and value.strip() else None

        values: dict[str, object] = {
            "database_url": f"sqlite:///{home}/dmledger.sqlite3",
            "data_dir": str(home),
        }
        if (url := get("DATABASE_URL")) is not None:
            if not url.startswith(("postgresql://", "postgres://", "sqlite://", "memory://")):
                raise SettingsError(
                    f"{PREFIX}DATABASE_URL must start with postgresql://, sqlite:/// or "
                    f"memory://, got {url.split('://')[0]!r}"
                )
            values["database_url"] = _absolute_sqlite(url, start)
        if (keys := get("SECRET_KEY")) is not None:
            values["secret_keys"] = tuple(k.strip() for k in keys.split(",") if k.strip())
        if (env := get("ENV")) is not None:
            if env not in ("development", "production"):
                raise SettingsError(
                    f"{PREFIX}ENV must be 'development' or 'production', got {env!r}"
                )
            values["environment"] = env
        if (host := get("HOST")) is not None:
            values["host"] = host
        if (port := get("PORT")) is not None:
            values["port"] = _whole_number("PORT", port, 1, 65535)
        if (level := get("LOG_LEVEL")) is not None:
            if level.lower() not in LOG_LEVELS:
                raise SettingsError(
                    f"{PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
                )
            values["log_level"] = level.lower()
        if (form := get("LOG_FORMAT")) is not None:
            if form.lower() not in LOG_FORMATS:
                known = ", ".join(LOG_FORMATS)
                raise SettingsError(f"{PREFIX}LOG_FORMAT must be one of {known}, got {form!r}")
            values["log_format"] = form.lower()
        if (limit := get("WEBHOOK_MAX_BODY_BYTES")) is not None:
            values["webhook_max_body_bytes"] = _whole_number(
                "WEBHOOK_MAX_BODY_BYTES", limit, 1024, 64 * 1024 * 1024
            )
        for name, high in (
            ("KEEP_ALIVE_TIMEOUT", 3600),
            ("HEADER_TIMEOUT", 3600),
            ("BODY_TIMEOUT", 3600),
            ("MAX_CONNECTIONS", 1_000_000),
        ):
            if (number := get(name)) is not None:
                values[name.lower()] = _whole_number(name, number, 1, high)
        if (data_dir := get("DATA_DIR")) is not None:
            values["data_dir"] = str(start / data_dir)  # an absolute one stays as it is
        if (graph := get("GRAPH_API_URL")) is not None:
            if not graph.startswith(("http://", "https://")):
                raise SettingsError(f"{PREFIX}GRAPH_API_URL must be an http(s) URL, got {graph!r}")
            values["graph_api_url"] = graph
        if (version := get("GRAPH_API_VERSION")) is not None:
            values["graph_api_version"] = version
        if (stall := get("READY_STALL_SECONDS")) is not None:
            values["ready_stall_seconds"] = _whole_number("READY_STALL_SECONDS", stall, 0, 86400)
        if (allow := get("CRM_ALLOW_PRIVATE_URLS")) is not None:
            values["crm_allow_private_urls"] = _yes_or_no("CRM_ALLOW_PRIVATE_URLS", allow)
        if (lease := get("DISPATCH_LEASE_SECONDS")) is not None:
            values["dispatch_lease_seconds"] = _whole_number(
                "DISPATCH_LEASE_SECONDS", lease, 1, 86_400
            )
        for name in ("TEXT_SENDS_PER_SECOND", "MEDIA_SENDS_PER_SECOND"):
            if (rate := get(name)) is not None:
                values[name.lower()] = _whole_number(name, rate, 1, 10_000)
        if (schedule := get("CRM_RETRY_SCHEDULE")) is not None:
            values["crm_retry_schedule_seconds"] = _retry_schedule(schedule)
        values.update(_metrics_settings(get))
        if multiprocess := (environ.get(MULTIPROCESS_DIR) or "").strip():
            values["metrics_multiprocess_dir"] = multiprocess
        return cls(**values)  # type: ignore[arg-type]


def _metrics_settings(get: Callable[[str], str | None]) -> dict[str, object]:
    values: dict[str, object] = {}
    if (token := get("METRICS_TOKEN")) is not None:
        if len(token) < 16:
            raise SettingsError(f"{PREFIX}METRICS_TOKEN must be at least 16 characters long")
        values["metrics_token"] = token
    if (host := get("METRICS_HOST")) is not None:
        values["metrics_host"] = host
    if (port := get("METRICS_PORT")) is not None:
        values["metrics_port"] = _whole_number("METRICS_PORT", port, 1, 65535)
    if (labels := get("METRICS_ACCOUNT_LABELS")) is not None:
        values["metrics_account_labels"] = _yes_or_no("METRICS_ACCOUNT_LABELS", labels)
    return values


def _retry_schedule(value: str) -> tuple[int, ...]:
    """Comma-separated whole seconds, 0 to a week each, at most 50 of them; `none`: no
    retry at all."""
    if value.lower() == "none":
        return ()
    name = "CRM_RETRY_SCHEDULE"
    steps = [step.strip() for step in value.split(",")]
    if len(steps) > 50:
        raise SettingsError(f"{PREFIX}{name} has {len(steps)} steps; at most 50 are allowed")
    try:
        return tuple(_whole_number(name, step, 0, 7 * 86_400) for step in steps)
    except SettingsError:
        raise SettingsError(
            f"{PREFIX}{name} must be comma-separated whole seconds from 0 to 604800 "
            f"(or 'none'), got {value!r}"
        ) from None


def _yes_or_no(name: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise SettingsError(f"{PREFIX}{name} must be 'true' or 'false', got {value!r}")


def _whole_number(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise SettingsError(
            f"{PREFIX}{name} must be a whole number from {low} to {high}, got {value!r}"
        )
    return number


def default_directory(cwd: Path, *, source: Path = SOURCE) -> Path:
    """Where the default `var/` (the SQLite database, a development key) is: the checkout
    when dmledger runs from one (`./dev`, `.venv/bin/dmledger`, from any directory), else
    the current directory (an installed package: Docker, pip)."""
    pyproject = source / "pyproject.toml"
    if pyproject.is_file() and 'name = "dmledger"' in pyproject.read_text(errors="replace"):
        return source
    return cwd


def _absolute_sqlite(url: str, cwd: Path) -> str:
    """`sqlite:///relative/path` made absolute against `cwd`; any other URL as it is."""
    path = url.removeprefix("sqlite:///")
    if path == url or not path or path == ":memory:" or path.startswith("/"):
        return url
    return f"sqlite:///{cwd / path}"
