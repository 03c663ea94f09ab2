"""Meta's Conversations API for Instagram: `GET /me/conversations?platform=instagram` and
each conversation's `/messages` edge, page by page (`application/backfill.py` decides
what to read and records it; this client only asks)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from application.ports import HistoryPage, HistoryUnavailable
from infrastructure.instagram_api import json_of, meta_error_of
from infrastructure.outgoing_tls import outgoing_tls

log = logging.getLogger(__name__)

MESSAGE_FIELDS = "id,created_time,from,to,message,attachments"
PAGE_SIZE = 50


class GraphApiHistory:
    """`ConversationHistory` over HTTP."""

    def __init__(self, base_url: str, version: str, *, timeout: float = 10.0) -> None:
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, verify=outgoing_tls())

    def conversations(self, access_token: str, *, after: str | None) -> HistoryPage:
        params = {"platform": "instagram", "fields": "id,updated_time", "limit": str(PAGE_SIZE)}
        return self._page(f"{self._base}/me/conversations", access_token, params, after)

    def messages(
        self, access_token: str, conversation_id: str, *, after: str | None
    ) -> HistoryPage:
        if not conversation_id or "/" in conversation_id or "?" in conversation_id:
            raise HistoryUnavailable(f"Meta named a conversation {conversation_id!r}")
        params = {"fields": MESSAGE_FIELDS, "limit": str(PAGE_SIZE)}
        return self._page(f"{self._base}/{conversation_id}/messages", access_token, params, after)

    def _page(
        self, url: str, access_token: str, params: dict[str, str], after: str | None
    ) -> HistoryPage:
        if after is not None:
            params = {**params, "after": after}
        try:
            response = self._client.get(
                url, params=params, headers={"Authorization": f"Bearer {access_token}"}
            )
        except httpx.HTTPError as failure:
            raise HistoryUnavailable(
                f"no answer from the Graph API ({type(failure).__name__})"
            ) from None
        body = json_of(response)
        if response.status_code != 200:
            error = meta_error_of(body)
            detail = f"{error.code}: {error.message}" if error else f"HTTP {response.status_code}"
            raise HistoryUnavailable(f"the Graph API refused: {detail}")
        data = body.get("data")
        items = [i for i in data if isinstance(i, dict)] if isinstance(data, list) else []
        return HistoryPage(items=items, after=_next_cursor(body))

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    def close(self) -> None:
        self._client.close()


def _next_cursor(body: dict[str, Any]) -> str | None:
    """The `after` cursor of the next page: Meta gives `paging.next` only if there is one."""
    paging = body.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    return after if isinstance(after, str) and after else None
