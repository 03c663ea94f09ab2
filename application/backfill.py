"""Backfill: an account's existing conversations, read from Meta's Conversations API and
stored as events, as if their webhooks had come (but marked `backfilled`).

For a business that connects an account with a history: `dmledger accounts backfill` and
`POST /api/v1/accounts/{id}/backfill` page through `/me/conversations?platform=instagram`,
then through each conversation's messages (newest first, stopping at `since`), and record
each message on its conversation as the participant's (`MessageReceived`) or the
account's (`MessageEchoed`), with `backfilled: true`. Meta's message ids are the `mid`s
its webhooks carry, so a message already stored (by a webhook, or an earlier backfill) is
stored once: running a backfill again stores nothing new.

History is not news: no rule answers a backfilled message, no echo of one pauses
automation, unread counts stay, and the CRM is told only if asked (`notify_crm`, then
with `backfilled: true` in its payloads).

Meta allows about 2 calls a second on this API: `Pace` spaces the calls (it sleeps, as a
rate limit does); one conversation's messages are recorded in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.errors import InvalidInput, NotFound
from application.ledger import Ledger
from application.ledger_writer import Changes, LedgerWriter
from application.ports import ConversationHistory, HistoryUnavailable, SecretBox
from domain.account import Account
from domain.conversation import Conversation
from domain.identity import account_id, conversation_id

log = logging.getLogger(__name__)

CALLS_PER_SECOND = 2.0
"""Meta's limit on the Conversations API, per account."""
MAX_TEXT = 100_000
"""A message's text is cut to this many characters (Meta's are at most 1,000 bytes)."""


@dataclass
class BackfillReport:
    """How far a backfill went: conversations and messages read, and how many of those
    messages were new (the others were stored already)."""

    conversations: int = 0
    messages: int = 0
    stored: int = 0
    done: bool = False


class Pace:
    """At most `per_second` calls a second: `wait` returns when the next call may go."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = clock()

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


@dataclass(frozen=True)
class HistoryMessage:
    """One message of the Conversations API, as dmledger records it."""

    mid: str
    sent_at: int
    from_participant: bool
    participant_id: str
    text: str | None
    attachments: list[dict[str, Any]]


class Backfill:
    """Reads an account's history from Meta and records what is not stored yet."""

    def __init__(
        self,
        ledger: Ledger,
        writer: LedgerWriter,
        secrets: SecretBox,
        history: ConversationHistory | None,
        *,
        pace: Callable[[], Pace] = lambda: Pace(CALLS_PER_SECOND),
    ) -> None:
        self._ledger = ledger
        self._writer = writer
        self._secrets = secrets
        self._history = history
        self._pace = pace

    def serves(self, ig_account_id: str) -> bool:
        """Whether the account is registered (a backfill of it can start)."""
        return self._ledger.account(ig_account_id) is not None

    def run(
        self,
        ig_account_id: str,
        *,
        since: datetime | None = None,
        notify_crm: bool = False,
        progress: Callable[[BackfillReport], None] | None = None,
    ) -> BackfillReport:
        """Backfill the account's conversations (the messages sent at or after `since`,
        if given); `progress` is told after each conversation. Raises NotFound for an
        account not served, InvalidInput when Meta's API cannot be asked, and
        HistoryUnavailable when Meta stops answering (what was stored stays stored: run it
        again)."""
        account = self._ledger.account(ig_account_id)
        if account is None:
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        if self._history is None:
            raise InvalidInput("account", "no Graph API is configured to read the history from")
        token = self._secrets.decrypt(account.access_token)
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        pace = self._pace()
        report = BackfillReport()
        for conversation in self._pages(pace, lambda after: self._conversations(token, after)):
            updated = _ms(conversation.get("updated_time"))
            if since_ms is not None and updated is not None and updated < since_ms:
                continue  # nothing in it since then
            messages = self._messages(pace, token, ig_account_id, str(conversation["id"]), since_ms)
            report.conversations += 1
            report.messages += len(messages)
            if messages:
                report.stored += self._writer.run_now(_record(ig_account_id, messages, notify_crm))
            if progress is not None:
                progress(report)
        report.done = True
        if progress is not None:
            progress(report)
        return report

    def _conversations(self, token: str, after: str | None) -> Any:
        assert self._history is not None
        return self._history.conversations(token, after=after)

    def _messages(
        self, pace: Pace, token: str, ig_account_id: str, graph_id: str, since_ms: int | None
    ) -> list[HistoryMessage]:
        assert self._history is not None
        history = self._history
        found: list[HistoryMessage] = []
        for item in self._pages(pace, lambda after: history.messages(token, graph_id, after=after)):
            message = message_of(item, ig_account_id)
            if message is None:
                continue
            if since_ms is not None and message.sent_at < since_ms:
                break  # newest first: the rest is older
            found.append(message)
        found.reverse()  # recorded oldest first, as they happened
        return found

    @staticmethod
    def _pages(pace: Pace, page: Callable[[str | None], Any]) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            pace.wait()
            answer = page(after)
            yield from answer.items
            after = answer.after
            if after is None:
                return


def _record(
    ig_account_id: str, messages: list[HistoryMessage], notify_crm: bool
) -> Callable[[Changes], int]:
    """The command that records one conversation's messages; how many were new."""

    def record(changes: Changes) -> int:
        if changes.get(account_id(ig_account_id), Account) is None:
            raise NotFound(f"there is no Instagram account {ig_account_id}")
        participant_id = messages[0].participant_id
        conversation = changes.get(conversation_id(ig_account_id, participant_id), Conversation)
        if conversation is None:
            conversation = Conversation(ig_account_id=ig_account_id, participant_id=participant_id)
            changes.add(conversation)
        stored = 0
        for message in messages:
            record_one = (
                conversation.receive_message
                if message.from_participant
                else conversation.record_echo
            )
            if record_one(
                mid=message.mid,
                sent_at=message.sent_at,
                text=message.text,
                attachments=message.attachments,
                backfilled=True,
                notify_crm=notify_crm,
            ):
                stored += 1
        return stored

    return record


_ATTACHMENT_KINDS = {
    "image_data": "image",
    "video_data": "video",
    "audio_data": "audio",
    "animated_gif_data": "animated_image",
}


def message_of(item: dict[str, Any], ig_account_id: str) -> HistoryMessage | None:
    """A message of the Conversations API as dmledger records it; None for one it cannot
    place (no id, no time, or no participant besides the account)."""
    mid, sent_at = item.get("id"), _ms(item.get("created_time"))
    sender = _id(item.get("from"))
    recipients = [_id(r) for r in (item.get("to") or {}).get("data") or [] if isinstance(r, dict)]
    if not isinstance(mid, str) or not mid or sent_at is None or sender is None:
        return None
    from_participant = sender != ig_account_id
    participant = sender if from_participant else next((r for r in recipients if r), None)
    if participant is None or participant == ig_account_id:
        return None
    text = item.get("message")
    return HistoryMessage(
        mid=mid,
        sent_at=sent_at,
        from_participant=from_participant,
        participant_id=participant,
        text=text[:MAX_TEXT].replace("\x00", "\ufffd") if isinstance(text, str) and text else None,
        attachments=_attachments(item.get("attachments")),
    )


def _attachments(value: Any) -> list[dict[str, Any]]:
    """Meta's attachments (`{data: [{image_data: {url}}, ...]}`) as webhooks carry them
    (`{type, payload: {url}}`); URLs only, never bytes."""
    found: list[dict[str, Any]] = []
    listed = value.get("data") if isinstance(value, dict) else None
    for attachment in listed if isinstance(listed, list) else []:
        if not isinstance(attachment, dict):
            continue
        for field, kind in _ATTACHMENT_KINDS.items():
            data = attachment.get(field)
            if isinstance(data, dict) and isinstance(data.get("url"), str):
                found.append({"type": kind, "payload": {"url": data["url"]}})
        if isinstance(attachment.get("file_url"), str):
            found.append({"type": "file", "payload": {"url": attachment["file_url"]}})
    return found


def _id(party: Any) -> str | None:
    value = party.get("id") if isinstance(party, dict) else None
    return value if isinstance(value, str) and value else None


def _ms(value: Any) -> int | None:
    """Meta's time (`2024-07-12T21:22:24+0000`, or seconds as a number or text) in ms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1000) if value < 10**11 else int(value)
    if not isinstance(value, str) or not value:
        return None
    if value.isdigit():
        return _ms(int(value))
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None


__all__ = ["Backfill", "BackfillReport", "HistoryUnavailable", "Pace", "message_of"]
