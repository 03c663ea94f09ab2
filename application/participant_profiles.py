"""Knowing the participant: when Meta's user profile API is asked, and how its answer is
recorded on the conversation.

It is asked on a conversation's first message (the person messaged the account: Meta's
consent), and again at the first message after `PROFILE_REFRESH_MS`; Meta's refusal is
recorded too, so a refused lookup also waits that long instead of being retried at every
message. A lookup that got no answer to rely on (no connection, a 5xx, a throttle) is
recorded nowhere, and the account's lookups wait `RETRY_AFTER_MS` (a Graph API that hangs
would otherwise hold the auto-reply policy for a timeout at every new conversation).

The lookup is made before the command that records it (no network in the writer); the
command records it only if the conversation still needs it (`Conversation.profile_due`), so
a lookup made twice (two messages in one batch, a policy run again) is recorded once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cachetools import LRUCache

from application.delivery import MetaError
from application.ledger import Ledger
from application.ports import ParticipantProfiles, SecretBox
from domain import conversation as topics
from domain.account import Account
from domain.conversation import PROFILE_REFRESH_MS, Conversation

log = logging.getLogger(__name__)

RETRY_AFTER_MS = 5 * 60_000
"""After a lookup that got no answer to rely on, the account's next lookup waits this long."""
CONVERSATIONS_KEPT = 4_096
"""Conversations whose lookup time is kept in memory (the least recently used go first):
~400 bytes each (1.6 MiB in all, `benchmarks/probe.py`); a forgotten one is read again from
its first event when it next needs a lookup."""
_LOOKED_UP = (topics.PARTICIPANT_PROFILE_RECORDED, topics.PARTICIPANT_PROFILE_REFUSED)


@dataclass(frozen=True)
class ProfileAnswer:
    """What the user profile API answered at `at` (ms): a profile, or Meta's refusal."""

    found: dict[str, Any] | MetaError
    at: int

    def record_on(self, conversation: Conversation) -> bool:
        """Record the answer on `conversation`, unless it no longer needs one."""
        if isinstance(self.found, MetaError):
            return conversation.refuse_participant_profile(
                code=self.found.code, message=self.found.message, looked_up_at=self.at
            )
        return conversation.record_participant_profile(profile=self.found, looked_up_at=self.at)


_UNREAD = -1
"""`looked_up_at` of a conversation whose state has not been read yet."""


@dataclass(slots=True)
class _Known:
    """What a lookup needs of a conversation; `looked_up_at` follows the log."""

    ig_account_id: str
    participant_id: str
    looked_up_at: int | None = _UNREAD


class ProfileLookups:
    """Asks the user profile API for the participants whose conversation needs it."""

    def __init__(
        self,
        ledger: Ledger,
        secrets: SecretBox,
        profiles: ParticipantProfiles | None,
        clock: Callable[[], int],
    ) -> None:
        self._ledger = ledger
        self._secrets = secrets
        self._profiles = profiles
        self._clock = clock
        self._known: LRUCache[UUID, _Known] = LRUCache(maxsize=CONVERSATIONS_KEPT)
        self._retry_at: dict[str, int] = {}
        """When each account whose last lookup got no answer may be asked again (ms)."""

    def observe(self, event: Any) -> None:
        """Learn from the log that a conversation's profile was looked up, or erased
        (what was known went with it: the next message asks again)."""
        topic = type(event).TOPIC
        if topic in _LOOKED_UP or topic == topics.PARTICIPANT_ERASED:
            known = self._known.get(event.originator_id)
            if known is not None:
                known.looked_up_at = getattr(event, "looked_up_at", None)

    def answer_for(
        self,
        event: Any,
        accounts: dict[str, Account | None],
        answered: dict[UUID, ProfileAnswer],
    ) -> ProfileAnswer | None:
        """The lookup for the conversation of `event` (a message or postback of its
        participant) if it needs one now; `accounts` and `answered` keep what one batch of
        events has read and asked."""
        if self._profiles is None:
            return None
        conversation_id: UUID = event.originator_id
        if conversation_id in answered:
            return answered[conversation_id]
        known = self._conversation(conversation_id)
        now = self._clock()
        if known is None or now < self._retry_at.get(known.ig_account_id, 0):
            return None
        if known.looked_up_at == _UNREAD:
            # Read once a lookup may be made, not for every conversation of a paused account.
            conversation = self._ledger.find(conversation_id)
            if not isinstance(conversation, Conversation):
                return None
            known.looked_up_at = conversation.profile_looked_up_at
        if known.looked_up_at is not None and now - known.looked_up_at < PROFILE_REFRESH_MS:
            return None
        if known.ig_account_id not in accounts:
            accounts[known.ig_account_id] = self._ledger.account(known.ig_account_id)
        account = accounts[known.ig_account_id]
        if account is None or not account.automates or account.token_rejected:
            return None
        found = self._lookup(account, known.participant_id)
        if found is None:
            self._retry_at[known.ig_account_id] = now + RETRY_AFTER_MS
            return None
        self._retry_at.pop(known.ig_account_id, None)
        answered[conversation_id] = ProfileAnswer(found, now)
        return answered[conversation_id]

    def _conversation(self, conversation_id: UUID) -> _Known | None:
        known = self._known.get(conversation_id)
        if known is None:
            # Its first event names the account and the participant (it never changes).
            started: Any = next(iter(self._ledger.events.get(conversation_id, lte=1)), None)
            if started is None:
                return None
            known = _Known(started.ig_account_id, started.participant_id)
            self._known[conversation_id] = known
        return known

    def _lookup(self, account: Account, participant_id: str) -> dict[str, Any] | MetaError | None:
        assert self._profiles is not None
        try:
            token = self._secrets.decrypt(account.access_token)
            return self._profiles.lookup(token, participant_id)
        except Exception as error:
            log.warning("no profile for a participant of %s: %s", account.ig_account_id, error)
            return None
