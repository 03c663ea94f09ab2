"""What the application needs from the outside world; `infrastructure/` implements these."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol


class SecretBox(Protocol):
    """Encrypts credentials before they go into an event, and decrypts them for use."""

    def encrypt(self, plaintext: str) -> str:
        """Return a ciphertext of `plaintext` under the newest key."""
        ...

    def decrypt(self, ciphertext: str) -> str:
        """Return the plaintext of a ciphertext made under any configured key."""
        ...


class KeyUsage(Protocol):
    """When each API key was last used: telemetry, kept outside the event log."""

    def touch(self, key_id: str, at: datetime) -> None:
        """Note that the key was used at `at`."""
        ...

    def last_used(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        """The last use of each key that has been used."""
        ...


class ParticipantProfiles(Protocol):
    """What the Graph API says of a participant (for `{first_name}` and `{username}`)."""

    def lookup(self, access_token: str, participant_id: str) -> dict[str, str] | None:
        """`name` and `username` of the participant, or None if the Graph API will not say."""
        ...
