"""The log of a dmledger process: one format for every logger, and no secret in any line.

Every entry point calls `configure_logging` once. It installs a log record factory that
redacts each record as it is made (`infrastructure/secret_redaction.py`): ours, uvicorn's,
httpx's and httpcore's records alike, whichever handler writes them, at every level. The
same factory notes the request, account and conversation the record is about
(`application/log_context.py`). One handler on the root logger writes them, as text or as
one JSON object per line; uvicorn's and Litestar's loggers hand their records to it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from application import log_context
from infrastructure.secret_redaction import redact

CONTEXT = "dmledger_context"
"""The record attribute holding the ids of `application/log_context.py`."""

_PLAIN = (int, float, bool, type(None))
_FORWARDED = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "litestar")


def configure_logging(
    level: str, log_format: str = "auto", stream: TextIO | None = None
) -> logging.Handler:
    """Send every logger's records at `level` and above to `stream` (standard error by
    default), as `text` or `json` (`auto`: text on a terminal, JSON otherwise). Replaces
    the handler an earlier call installed; returns the new one."""
    install_redaction()
    handler = _Handler(stream)
    chosen = log_format
    if chosen == "auto":
        chosen = "text" if _is_terminal(stream or sys.stderr) else "json"
    handler.setFormatter(JsonLines() if chosen == "json" else TextLines())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _FORWARDED:
        forwarded = logging.getLogger(name)
        forwarded.handlers.clear()
        forwarded.propagate = True
    return handler


def install_redaction() -> None:
    """Redact every log record of this process when it is made (once; later calls do nothing)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        redact_record(record)
        setattr(record, CONTEXT, log_context.current())
        return record

    make_record.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)


def redact_record(record: logging.LogRecord) -> None:
    """Mask the secrets in `record`'s arguments, message, traceback and stack.

    Arguments are cleaned one by one, so filters that read them (the access log's) still
    can; if the formatted message still shows a secret, it replaces message and arguments."""
    if isinstance(record.args, Mapping):
        record.args = {key: _clean(value) for key, value in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_clean(arg) for arg in record.args)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it, without the secrets
        record.msg, record.args = redact(str(record.msg)), ()
    else:
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _clean(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    text = value if isinstance(value, str) else str(value)
    clean = redact(text)
    return clean if clean != text or isinstance(value, str) else value


class TextLines(logging.Formatter):
    """`time LEVEL logger: message [request_id=... account_id=...]`, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, CONTEXT, None) or {}
        if context:
            ids = " ".join(f"{name}={value}" for name, value in context.items())
            head, newline, rest = line.partition("\n")
            line = f"{head} [{ids}]{newline}{rest}"
        return redact(line)


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids known, the error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(getattr(record, CONTEXT, None) or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["error"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(record.stack_info)
        # Redacted field by field: masking the encoded line could eat a quote's escape.
        return json.dumps(line, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler[TextIO]):
    """Writes to the stream it was given, or to whatever `sys.stderr` is when it writes."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        self._fixed = value if value is not sys.stderr else None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
