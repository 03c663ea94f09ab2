"""Keeps the webhook verify token out of uvicorn's access log (it arrives in the query string)."""

from __future__ import annotations

import logging
import re

_VERIFY_TOKEN = re.compile(r"(hub\.verify_token=)[^&\s]*")


class RedactVerifyToken(logging.Filter):
    """Replaces the value of `hub.verify_token` in access-log records with `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _VERIFY_TOKEN.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _VERIFY_TOKEN.sub(r"\1***", record.msg)
        return True
