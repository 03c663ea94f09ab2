"""Credentials encrypted with Fernet; several keys may be configured so a key can be rotated."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from infrastructure.secret_redaction import remember_secret


class SecretKeyError(ValueError):
    """A configured secret key is not a Fernet key."""


class SecretDecryptionError(ValueError):
    """A ciphertext was made under none of the configured keys, or was altered."""


class FernetSecretBox:
    """Encrypts with the first (newest) key; decrypts with any configured key.

    Every plaintext that passes through, and every key, is remembered by
    `infrastructure/secret_redaction.py`, so no log line shows it."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretKeyError("at least one secret key is needed")
        fernets = []
        for position, key in enumerate(keys, start=1):
            remember_secret(key)
            try:
                fernets.append(Fernet(key.encode()))
            except ValueError:
                raise SecretKeyError(
                    f"secret key #{position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; make one with `dmledger secrets new-key`)"
                ) from None
        self._fernet = MultiFernet(fernets)

    @staticmethod
    def new_key() -> str:
        """A fresh random key."""
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str) -> str:
        remember_secret(plaintext)
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretDecryptionError(
                "a stored credential cannot be decrypted with the configured secret keys"
            ) from None
        remember_secret(plaintext)
        return plaintext

    def __repr__(self) -> str:
        return "FernetSecretBox(<keys hidden>)"
