"""Meta's user profile API: `GET /{igsid}?fields=name,username,profile_pic,...`.

When to ask is the application's (once per conversation and week, `application/
participant_profiles.py`); this client only asks, and says what the answer means: a
profile, Meta's refusal, or no answer to rely on.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from application.delivery import RETRY_CODES, THROTTLE_CODES, TOKEN_CODES, MetaError
from application.ports import PROFILE_FIELDS
from application.storable import USERNAME_LENGTH
from infrastructure.instagram_api import json_of, meta_error_of
from infrastructure.outgoing_tls import outgoing_tls

log = logging.getLogger(__name__)

MAX_TEXT = 2048
"""A profile's text fields are cut to this many characters (a URL, a name)."""
_NOT_THE_PARTICIPANTS = RETRY_CODES | THROTTLE_CODES | TOKEN_CODES
"""Codes that say nothing of the participant: the lookup is tried again later."""


class GraphApiProfiles:
    """`ParticipantProfiles` over HTTP."""

    def __init__(self, base_url: str, version: str, *, timeout: float = 5.0) -> None:
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, verify=outgoing_tls())

    def lookup(self, access_token: str, participant_id: str) -> dict[str, Any] | MetaError | None:
        try:
            response = self._client.get(
                f"{self._base}/{participant_id}",
                params={"fields": ",".join(PROFILE_FIELDS)},
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as failure:
            log.warning("Graph API profile lookup failed: %s", type(failure).__name__)
            return None
        body = json_of(response)
        if response.status_code == 200:
            return profile_of(body)
        refusal = meta_error_of(body)
        if response.status_code >= 500 or refusal is None or refusal.code in _NOT_THE_PARTICIPANTS:
            log.warning("Graph API profile lookup answered %d", response.status_code)
            return None
        return refusal

    @property
    def closed(self) -> bool:
        """The client's connections are closed."""
        return self._client.is_closed

    def close(self) -> None:
        self._client.close()


def profile_of(body: dict[str, Any]) -> dict[str, Any]:
    """The known fields of Meta's answer that have the type Meta documents (text without
    NUL, a username no longer than `USERNAME_LENGTH`, a count that fits a bigint, a
    boolean); anything else is left out."""
    profile: dict[str, Any] = {}
    for field in PROFILE_FIELDS:
        value = body.get(field)
        if field == "follower_count":
            kept = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
        elif field.startswith("is_"):
            kept = isinstance(value, bool)
        elif field == "username":
            kept = isinstance(value, str) and "\x00" not in value and len(value) <= USERNAME_LENGTH
        else:
            kept = isinstance(value, str) and "\x00" not in value
        if kept:
            profile[field] = value[:MAX_TEXT] if isinstance(value, str) else value
    return profile
