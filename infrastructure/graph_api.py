"""The Instagram Graph API: participants' profiles (`GET /{igsid}?fields=name,username`)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, cast

import httpx
from cachetools import TTLCache

log = logging.getLogger(__name__)

PROFILE_TTL_SECONDS = 24 * 3600
"""A looked-up profile is reused this long (people rarely rename themselves)."""
PROFILES_KEPT = 50_000
"""Participants whose profile is kept at most (the least recently used go first)."""

_NOT_KEPT = object()


class GraphApiProfiles:
    """`ParticipantProfiles` over HTTP, with an in-memory cache."""

    def __init__(self, base_url: str, version: str, *, timeout: float = 5.0) -> None:
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        self._cache: TTLCache[str, dict[str, str] | None] = TTLCache(
            maxsize=PROFILES_KEPT, ttl=PROFILE_TTL_SECONDS, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def lookup(self, access_token: str, participant_id: str) -> dict[str, str] | None:
        with self._lock:
            cached = self._cache.get(participant_id, _NOT_KEPT)
        if cached is not _NOT_KEPT:
            return cast(dict[str, str] | None, cached)
        profile = self._fetch(access_token, participant_id)
        with self._lock:
            self._cache[participant_id] = profile
        return profile

    def _fetch(self, access_token: str, participant_id: str) -> dict[str, str] | None:
        try:
            response = self._client.get(
                f"{self._base}/{participant_id}",
                params={"fields": "name,username"},
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as error:
            log.warning("Graph API profile lookup failed: %s", type(error).__name__)
            return None
        if response.status_code != 200:
            log.warning("Graph API profile lookup answered %d", response.status_code)
            return None
        body: Any = response.json()
        if not isinstance(body, dict):
            return None
        return {k: str(body[k]) for k in ("name", "username") if isinstance(body.get(k), str)}

    @property
    def closed(self) -> bool:
        """The client's connections are closed."""
        return self._client.is_closed

    def close(self) -> None:
        self._client.close()
