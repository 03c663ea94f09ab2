"""Opaque pagination cursors: what a page stopped at, as url-safe base64 JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from application.errors import InvalidInput


def encode(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode(cursor: str, *, fields: tuple[str, ...]) -> dict[str, Any]:
    """The cursor's content, or a 422 naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        value = None
    if not isinstance(value, dict) or any(not isinstance(value.get(f), int) for f in fields):
        raise InvalidInput("cursor", "cursor is not one this API gave out; start without it")
    return value
