"""The fake Graph API's Conversations API: an account's history, in Meta's shapes and pages
(`/me/conversations?platform=instagram`, `/{conversation-id}/messages`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class FakeHistory:
    """Conversations between `account_id` and its participants, for a backfill to read."""

    page_size = 25

    def __init__(self, account_id: str, account_username: str = "myshop") -> None:
        self.account = {"id": account_id, "username": account_username}
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        """Meta's conversation id -> its messages, newest first."""
        self.calls: list[float] = []
        """When each call to this API came (time.monotonic)."""

    def add(self, participant_id: str, messages: list[tuple[str, bool, str, int]]) -> str:
        """A conversation with `participant_id`: (mid, from the participant?, text, ms) each;
        its conversation id."""
        conversation_id = f"aWdfconv{len(self.conversations) + 1}"
        participant = {"id": participant_id, "username": f"user{participant_id[-4:]}"}
        rows = []
        for mid, inbound, text, at in sorted(messages, key=lambda m: -m[3]):
            sender, recipient = (
                (participant, self.account) if inbound else (self.account, participant)
            )
            rows.append(
                {
                    "id": mid,
                    "created_time": _iso(at),
                    "from": sender,
                    "to": {"data": [recipient]},
                    "message": text,
                }
            )
        self.conversations[conversation_id] = rows
        return conversation_id

    @classmethod
    def demo(cls, account_id: str, conversations: int = 3, messages: int = 10) -> FakeHistory:
        """A history to try a backfill on: `conversations` of `messages` each, the last
        hours' (every third message the account's)."""
        history = cls(account_id)
        now = int(time.time() * 1000)
        for n in range(conversations):
            participant = f"56000000000{n + 1:05d}"
            history.add(
                participant,
                [
                    (
                        f"aWdfdemo-{n}-{i}",
                        i % 3 != 2,
                        f"message {i + 1} of conversation {n + 1}",
                        now - (messages - i) * 60_000,
                    )
                    for i in range(messages)
                ],
            )
        return history

    def answer(self, path: str, query: dict[str, list[str]]) -> dict[str, Any] | None:
        """Meta's answer to a GET of this API, or None if `path` is not one of it."""
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[1:] == ["me", "conversations"]:
            self.calls.append(time.monotonic())
            listed = [
                {"id": cid, "updated_time": rows[0]["created_time"] if rows else _iso(0)}
                for cid, rows in self.conversations.items()
            ]
            return self._page(path, listed, query)
        if len(parts) == 3 and parts[2] == "messages" and parts[1] in self.conversations:
            self.calls.append(time.monotonic())
            return self._page(path, self.conversations[parts[1]], query)
        return None

    def _page(
        self, path: str, rows: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> dict[str, Any]:
        start = int((query.get("after") or ["0"])[0] or 0)
        size = min(int((query.get("limit") or [str(self.page_size)])[0]), self.page_size)
        page = rows[start : start + size]
        answer: dict[str, Any] = {"data": page}
        if start + size < len(rows):
            after = str(start + size)
            answer["paging"] = {
                "cursors": {"before": str(start), "after": after},
                "next": f"{path}?after={after}",
            }
        return answer
