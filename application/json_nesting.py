"""How deeply a JSON document nests, found without parsing it (parsers recurse)."""

from __future__ import annotations

import itertools
import re

MAX_DEPTH = 64
"""Meta's webhook bodies nest about ten levels deep; 64 leaves room for what it adds."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket is a step of +1, a closing one of -1 (0xff, as a signed byte).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def nests_deeper_than(document: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest more than `limit` deep in `document`."""
    if document.count(b"[") + document.count(b"{") <= limit:
        return False  # what nearly every body looks like
    return nesting_depth(document) > limit


def nesting_depth(document: bytes) -> int:
    """The deepest nesting of arrays and objects in `document` (brackets in strings aside).

    Linear and non-recursive: the strings are removed by one regular expression, and the
    depth is the largest running sum of the brackets' steps."""
    brackets = _STRING.sub(b"", document).translate(None, _NOT_BRACKETS)
    steps = memoryview(brackets.translate(_STEPS)).cast("b")
    return max(itertools.accumulate(steps), default=0)
