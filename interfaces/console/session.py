"""The console's session: the API key a person signed in with, in an encrypted, signed cookie.

The cookie is a Fernet token (AES-CBC and HMAC-SHA256) under a key derived from the
deployment's secret key, so it can be neither read nor forged without it. It holds the API
key, so every request authenticates afresh (a revoked key stops working within seconds), and
the CSRF token the session's forms must carry.
"""

from __future__ import annotations

import base64
import hmac
import secrets

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COOKIE = "dmledger_console"
LIFETIME_SECONDS = 12 * 60 * 60
"""A session lasts a working day; then the person signs in again."""


class Session(msgspec.Struct, frozen=True):
    """What the cookie holds."""

    api_key: str
    csrf: str


class SessionCodec:
    """Seals sessions into cookie values and opens them again."""

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"dmledger console session"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def new(self, api_key: str) -> tuple[Session, str]:
        """A new session for `api_key`, and its cookie value."""
        session = Session(api_key=api_key, csrf=secrets.token_urlsafe(24))
        return session, self._fernet.encrypt(msgspec.json.encode(session)).decode()

    def open(self, value: str | None) -> Session | None:
        """The session in a cookie value; None if it is missing, forged or too old."""
        if not value:
            return None
        try:
            plain = self._fernet.decrypt(value.encode(), ttl=LIFETIME_SECONDS)
            return msgspec.json.decode(plain, type=Session)
        except (InvalidToken, msgspec.DecodeError, msgspec.ValidationError):
            return None


def same_token(expected: str, given: str | None) -> bool:
    """Whether a form's CSRF token is the session's (in constant time)."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
