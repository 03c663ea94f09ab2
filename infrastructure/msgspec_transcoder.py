"""eventsourcing's `JSONTranscoder`, stored format and all, with msgspec's JSON parser and
encoder doing the work.

The stored format is the library's: compact JSON (`","` and `":"`, UTF-8, not ASCII
escaped), and each value of a registered type (UUID, datetime, Decimal) as
`{"_type_": name, "_data_": encoded}`. Events stored by either transcoder decode with
the other to equal objects, and for the values events hold (strings, integers, booleans,
None, lists, dicts with string keys, registered types) the encoded bytes are the same
(tests/unit/test_msgspec_transcoder.py). Anything else (floats, other types) is left to
the standard library's encoder, so nothing is ever encoded differently.

Why: decoding with the standard library calls a Python `object_hook` on every JSON object
while it parses; it was ~20% of a projection rebuild's CPU time and a share of the ledger
writer's. msgspec parses in C, and the hook becomes a walk that only rebuilds what holds
a `_type_` marker.
"""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.persistence import JSONTranscoder

from infrastructure.eventsourcing_compat import decode_marked

_PLAIN = (str, int, bool, type(None))
_MARKER = b'"_type_"'


class MsgspecTranscoder(JSONTranscoder):
    """`JSONTranscoder`'s format, parsed and written by msgspec."""

    def __init__(self) -> None:
        super().__init__()
        self._decoder = msgspec.json.Decoder()
        self._encoder = msgspec.json.Encoder()

    def encode(self, obj: Any) -> bytes:
        try:
            return self._encoder.encode(self._plain(obj))
        except _Unusual:
            return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            obj = self._decoder.decode(data)
        except msgspec.DecodeError:
            # What msgspec refuses and the standard library accepts (NaN, say).
            return super().decode(data)
        if _MARKER not in data:
            return obj
        return self._revive(obj)

    # -- encoding ------------------------------------------------------------------------

    def _plain(self, obj: Any) -> Any:
        """`obj` with each value of a registered type replaced by its marker object;
        `_Unusual` for anything the standard library may encode otherwise than msgspec."""
        kind = type(obj)
        if kind in _PLAIN:
            return obj
        if kind is dict:
            plain = {}
            for key, value in obj.items():
                if type(key) is not str:
                    raise _Unusual
                plain[key] = self._plain(value)
            return plain
        if kind is list or kind is tuple:
            return [self._plain(value) for value in obj]
        transcoding = self.types.get(kind)
        if transcoding is None:
            raise _Unusual
        return {"_type_": transcoding.name, "_data_": self._plain(transcoding.encode(obj))}

    # -- decoding ------------------------------------------------------------------------

    def _revive(self, obj: Any) -> Any:
        """As the standard library's `object_hook`: inner objects first, then the outer."""
        kind = type(obj)
        if kind is dict:
            for key, value in obj.items():
                if type(value) is dict or type(value) is list:
                    obj[key] = self._revive(value)
            if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
                return decode_marked(self, obj)
            return obj
        if kind is list:
            for index, value in enumerate(obj):
                if type(value) is dict or type(value) is list:
                    obj[index] = self._revive(value)
        return obj


class _Unusual(Exception):
    """A value the standard library's encoder should handle."""
