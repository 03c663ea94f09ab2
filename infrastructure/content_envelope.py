"""Envelope encryption of message content: AES-256-GCM under a data key per message, the
data keys wrapped by key-encryption keys derived from the deployment's secret keys
(`DMLEDGER_SECRET_KEY`, HKDF as for the hash chain's key).

Destroying a data key (a row of the key table) makes its content unreadable for good,
while the event that holds the ciphertext stays in the log and in its hash chain.
Several secret keys may be configured, as for credentials: the first wraps new data
keys, any of them unwraps (a wrapped key names the key that wrapped it), and `rewrap`
moves a data key under the first.

Why not Fernet (the secret box of credentials) for the wrapping: a Fernet token costs
an HMAC, AES-CBC and base64 through several Python calls, ~130 us to unwrap on this
machine under load, paid for every message a projection or the events stream reads;
AES-GCM with a key object built once costs a few microseconds.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from application.ports import UnreadableContent

NONCE_BYTES = 12
_INFO = b"dmledger content key wrapping v1"
_WRAPPED = b"dmledger data key v1"
"""Bound to every wrapped data key (associated data), so nothing else unwraps as one."""


def _key_encryption_key(secret_key: str) -> tuple[str, AESGCM]:
    raw = base64.urlsafe_b64decode(secret_key.strip().encode())
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(raw)
    return hashlib.sha256(derived).hexdigest()[:16], AESGCM(derived)


class AesGcmEnvelope:
    """The `ContentCipher` of dmledger (see `application.ports`)."""

    def __init__(self, secret_keys: list[str]) -> None:
        keys = [_key_encryption_key(key) for key in secret_keys]
        self._newest = keys[0]
        self._by_id = dict(keys)

    def new_key(self) -> tuple[bytes, str]:
        key = AESGCM.generate_key(bit_length=256)
        return key, self._wrap(key)

    def _wrap(self, key: bytes) -> str:
        key_id, kek = self._newest
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + kek.encrypt(nonce, key, _WRAPPED)
        return f"{key_id}:{base64.b64encode(sealed).decode()}"

    def _unwrap(self, wrapped_key: str) -> bytes:
        key_id, _, sealed_text = wrapped_key.partition(":")
        kek = self._by_id.get(key_id)
        if kek is None:
            raise UnreadableContent(
                "a data key is wrapped by a secret key that is no longer configured"
            )
        sealed = base64.b64decode(sealed_text)
        return kek.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _WRAPPED)

    def seal(self, key: bytes, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, context)

    def open(self, wrapped_key: str, sealed: bytes, context: bytes) -> bytes:
        try:
            key = self._unwrap(wrapped_key)
            return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            raise UnreadableContent(
                "sealed content does not open with its data key and the configured secret keys"
            ) from None

    def rewrap(self, wrapped_key: str) -> str:
        try:
            return self._wrap(self._unwrap(wrapped_key))
        except (InvalidTag, ValueError):
            raise UnreadableContent("a data key does not unwrap with its secret key") from None

    def __repr__(self) -> str:
        return "AesGcmEnvelope(<keys hidden>)"
