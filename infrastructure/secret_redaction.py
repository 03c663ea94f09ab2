"""What must never reach a log line: the secrets this process knows, and what looks like one.

App secrets and verify tokens are arbitrary strings, so patterns alone cannot find them:
every credential that passes through the secret box (decrypted to be used, or encrypted to
be stored) and every configured key is remembered here, and `redact` replaces each with
`***`. The patterns catch what the process never held in plain text: API keys
(`dml_...`), CRM secrets (`whsec_...`), `Bearer ...` values and credential query
parameters (`access_token=...`).
"""

from __future__ import annotations

import re
import threading

MASK = "***"

SHORTEST_SECRET = 8
"""Shorter values are not remembered: masking every occurrence of a 3-letter secret would
mask ordinary words, and such a secret is no secret anyway."""

MOST_SECRETS = 200_000
"""A bound on the memory the registry takes (a few secrets per account)."""

_PATTERNS = (
    # Query parameters and form fields that carry credentials.
    re.compile(
        r"(?i)((?:access_token|client_secret|app_secret|appsecret_proof|verify_token"
        r"|hub\.verify_token|refresh_token|password)=)[^&\s\"'<>]+"
    ),
    # The same names as JSON or repr keys: "access_token": "...".
    re.compile(
        r"(?i)([\"'](?:access_token|app_secret|verify_token|secret|refresh_token)[\"']\s*:\s*)"
        r"[\"'][^\"']*[\"']"
    ),
    re.compile(r"(?i)(\bBearer\s+)[^\s\"',;]+"),
    re.compile(r"(\b)whsec_[A-Za-z0-9+/=_-]+"),
    re.compile(r"(\b)dml_[A-Za-z0-9_-]+"),
    # A password in a database URL: scheme://user:password@host.
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(?=@)"),
)


class KnownSecrets:
    """The secrets this process holds, found in any text in one pass over it (each
    position is looked up by its first `SHORTEST_SECRET` characters, so the cost does not
    grow with the number of secrets)."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, set[str]] = {}
        self._count = 0
        self._lock = threading.Lock()

    def remember(self, secret: str | None) -> None:
        """Mask `secret` in every log line from now on."""
        if not secret or len(secret) < SHORTEST_SECRET:
            return
        with self._lock:
            if self._count >= MOST_SECRETS:
                return
            found = self._by_prefix.setdefault(secret[:SHORTEST_SECRET], set())
            if secret not in found:
                found.add(secret)
                self._count += 1

    def mask(self, text: str) -> str:
        """`text` with every remembered secret replaced by `***`."""
        if not self._by_prefix or len(text) < SHORTEST_SECRET:
            return text
        pieces: list[str] = []
        start = position = 0
        end = len(text) - SHORTEST_SECRET
        while position <= end:
            candidates = self._by_prefix.get(text[position : position + SHORTEST_SECRET])
            if candidates:
                longest = max(
                    (s for s in tuple(candidates) if text.startswith(s, position)),
                    key=len,
                    default=None,
                )
                if longest is not None:
                    pieces.append(text[start:position])
                    pieces.append(MASK)
                    position += len(longest)
                    start = position
                    continue
            position += 1
        if not pieces:
            return text
        pieces.append(text[start:])
        return "".join(pieces)


KNOWN_SECRETS = KnownSecrets()
"""The process's registry: fed by the secret box and the composition root."""


def remember_secret(secret: str | None) -> None:
    """Mask `secret` in every log line of this process from now on."""
    KNOWN_SECRETS.remember(secret)


def redact(text: str) -> str:
    """`text` without the process's known secrets and without anything shaped like one."""
    text = KNOWN_SECRETS.mask(text)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    return text
