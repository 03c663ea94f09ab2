"""What can be stored faithfully: JSON values checked at the edge, before they become events.

JSON allows what our stores and read models cannot hold: PostgreSQL's `text` and `jsonb`
refuse the NUL character, `bigint` stops at 2^63-1, and a date past the year 9999 has no
`datetime`. An event that carries one stores fine and then stops every read model that
projects it. So input is checked where it enters, in one walk: `unstorable` names the
first value that cannot be kept, `without_nul` replaces NUL where the input is a message
someone sent (Meta's webhooks), and the REST API refuses it instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NUL = "\x00"
REPLACEMENT = "\ufffd"

LATEST_MS = 253_402_300_800_000
"""Milliseconds since 1970 of 10000-01-01: later times cannot be shown as dates."""

ID_LENGTH = 64
"""The longest id of a participant, comment or media the read models key rows by (their
columns are this wide); Meta's are about 17 digits."""
MID_LENGTH = 255
"""The longest message id (a message's key in the history); Meta's are ~170 characters."""
USERNAME_LENGTH = 64
"""The longest Instagram username the read models keep (Instagram's are at most 30)."""
NAME_LENGTH = 32
"""The longest short name the read models keep in a column of its own (a media's product
type, a message's kind)."""


def unstorable(value: Any, path: str = "") -> tuple[str, str] | None:
    """The path and problem of the first value in `value` that cannot be stored (a NUL in
    a string or a key, an integer outside 64 bits, a float that is not finite), or None.

    Walks without recursion: the depth of the input is not ours to choose.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, str):
            if NUL in current:
                return where, "must not contain the NUL character (U+0000)"
        elif isinstance(current, bool) or current is None:
            continue
        elif isinstance(current, int):
            if not INT64_MIN <= current <= INT64_MAX:
                return where, "is an integer outside the signed 64-bit range"
        elif isinstance(current, float):
            if current != current or current in (float("inf"), float("-inf")):
                return where, "must be a finite number"
        elif isinstance(current, dict):
            children = []
            for key, child in current.items():
                if isinstance(key, str) and NUL in key:
                    return _join(where, repr(key)), "is a key with the NUL character (U+0000)"
                children.append((child, _join(where, str(key))))
            stack.extend(reversed(children))
        elif isinstance(current, list | tuple):
            indexed = [(child, f"{where}[{i}]") for i, child in enumerate(current)]
            stack.extend(reversed(indexed))
    return None


def without_nul(value: Any) -> Any:
    """`value` with every NUL in its strings and keys replaced by U+FFFD (in place for
    dicts and lists; the new value for a string)."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    stack: list[Any] = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key in [k for k in current if isinstance(k, str) and NUL in k]:
                current[key.replace(NUL, REPLACEMENT)] = current.pop(key)
            _replace_children(current.items(), current.__setitem__, stack)
        elif isinstance(current, list):
            _replace_children(enumerate(current), current.__setitem__, stack)
    return value


def _replace_children(
    items: Iterable[tuple[Any, Any]], assign: Callable[[Any, Any], None], stack: list[Any]
) -> None:
    changes = []
    for key, child in items:
        if isinstance(child, str):
            if NUL in child:
                changes.append((key, child.replace(NUL, REPLACEMENT)))
        elif isinstance(child, dict | list):
            stack.append(child)
    for key, child in changes:
        assign(key, child)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
