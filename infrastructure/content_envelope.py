"""Envelope encryption of message content: AES-256-GCM under a data key per message, the
data keys wrapped by the deployment's secret keys (`DMLEDGER_SECRET_KEY`, Fernet).

Destroying a data key (a row of the key table) makes its content unreadable for good,
while the event that holds the ciphertext stays in the log and in its hash chain.
Several secret keys may be configured, as for credentials: the first wraps new data
keys, any of them unwraps, and `rewrap` moves a data key under the first.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from application.ports import UnreadableContent

NONCE_BYTES = 12


class AesGcmEnvelope:
    """The `ContentCipher` of dmledger (see `application.ports`)."""

    def __init__(self, secret_keys: list[str]) -> None:
        self._wrapping = MultiFernet([Fernet(key.encode()) for key in secret_keys])

    def new_key(self) -> tuple[bytes, str]:
        key = AESGCM.generate_key(bit_length=256)
        return key, self._wrapping.encrypt(key).decode()

    def seal(self, key: bytes, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, context)

    def open(self, wrapped_key: str, sealed: bytes, context: bytes) -> bytes:
        try:
            key = self._wrapping.decrypt(wrapped_key.encode())
            return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
        except (InvalidToken, InvalidTag, ValueError):
            raise UnreadableContent(
                "sealed content does not open with its data key and the configured secret keys"
            ) from None

    def rewrap(self, wrapped_key: str) -> str:
        return self._wrapping.rotate(wrapped_key.encode()).decode()

    def __repr__(self) -> str:
        return "AesGcmEnvelope(<keys hidden>)"
