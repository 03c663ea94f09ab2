"""What the application needs from the outside world; `infrastructure/` implements these."""

from __future__ import annotations

from typing import Protocol


class SecretBox(Protocol):
    """Encrypts credentials before they go into an event, and decrypts them for use."""

    def encrypt(self, plaintext: str) -> str:
        """Return a ciphertext of `plaintext` under the newest key."""
        ...

    def decrypt(self, ciphertext: str) -> str:
        """Return the plaintext of a ciphertext made under any configured key."""
        ...
