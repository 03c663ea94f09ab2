"""The auto-reply decision: on each inbound message, which rule answers, and the event that
records it (`ReplyQueued`, or `AutoReplySkipped` with a reason an auditor needs)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.participant_profiles import ProfileAnswer, ProfileLookups
from application.ports import Clock, ParticipantProfiles, SecretBox
from application.reply_messages import as_json, kind_of, text_of
from application.rules import Inbound, Match, choose, render
from domain import conversation as topics
from domain.account import Account
from domain.conversation import Conversation, Status
from domain.identity import account_id

WINDOW_MS = 24 * 3_600_000
TRIGGER_TOPICS = (topics.MESSAGE_RECEIVED, topics.POSTBACK_RECEIVED)


def trigger_key(event: Any) -> str:
    """The record key of the message or postback, as the conversation keeps it."""
    if type(event).TOPIC == topics.MESSAGE_RECEIVED:
        return f"message:{event.mid}"
    # The event's own key (in clear), not one rebuilt from its payload: that is content,
    # gone once shredded.
    return str(event.key)


def inbound_of(event: Any, conversation: Conversation) -> Inbound:
    key = trigger_key(event)
    first = conversation.first_inbound_key == key
    if type(event).TOPIC == topics.POSTBACK_RECEIVED:
        return Inbound(
            text=None, postback_payload=event.payload, first_message=first, sent_at=event.sent_at
        )
    attachments = event.attachments or []
    reply_to = event.reply_to or {}
    return Inbound(
        text=event.text,
        story_mention=any(a.get("type") == "story_mention" for a in attachments),
        story_reply="story" in reply_to,
        first_message=first,
        sent_at=event.sent_at,
    )


class AutoReplies:
    """Decides automated replies, one inbound message at a time, and records the
    participant's profile when their conversation needs it (`ProfileLookups`)."""

    def __init__(
        self,
        ledger: Ledger,
        secrets: SecretBox,
        profiles: ParticipantProfiles | None,
        clock: Clock,
    ) -> None:
        self.clock = clock
        """The service's clock."""
        self.ledger = ledger
        """The ledger (the comment decisions of the same policy read profiles from it)."""
        self._profiles = ProfileLookups(ledger, secrets, profiles, lambda: self.clock.now_ms())

    def observe(self, event: Any) -> None:
        """Learn from an event of the log (a profile recorded or refused)."""
        self._profiles.observe(event)

    def commands_for(self, events: list[Any]) -> list[Command[str | None]]:
        """`command_for` each event; each account is read, and each conversation's
        profile asked, once for all of them."""
        accounts: dict[str, Account | None] = {}
        answered: dict[UUID, ProfileAnswer] = {}
        return [self.command_for(event, accounts=accounts, answered=answered) for event in events]

    def command_for(
        self,
        event: Any,
        *,
        accounts: dict[str, Account | None] | None = None,
        answered: dict[UUID, ProfileAnswer] | None = None,
    ) -> Command[str | None]:
        """The command that records the decision on `event`; it returns what was decided.

        The participant's profile is looked up here, before the command, on the
        conversation's first message and when the last lookup is a week old: no network in
        the writer. The command records it before deciding, so a reply's `{first_name}`
        has it. `accounts` keeps the accounts read, for the commands of one batch of
        events (the command itself reads the account again, as committed).
        """
        profile = self._profiles.answer_for(
            event, {} if accounts is None else accounts, {} if answered is None else answered
        )
        decided_at = self.clock.now_ms()

        def decide(changes: Changes) -> str | None:
            conversation = changes.get(event.originator_id, Conversation)
            if conversation is None:
                return None
            known: dict[str, Any] | None = None
            if profile is not None:
                profile.record_on(conversation)
                # This batch's answer, recorded by this command or an earlier one of the
                # batch (not stored yet, so not to be read back).
                known = profile.found if isinstance(profile.found, dict) else None
            account = changes.get(account_id(conversation.ig_account_id), Account, fresh=True)
            if account is None:
                return None
            return self._decide(account, conversation, event, decided_at, known)

        return decide

    def _decide(
        self,
        account: Account,
        conversation: Conversation,
        event: Any,
        now: int,
        profile: dict[str, Any] | None,
    ) -> str | None:
        """`profile`: the one this command records, if any; else the conversation's
        last, opened from its sealed event only if a reply is rendered."""
        key = "decision:" + trigger_key(event)
        if conversation.has_recorded(key):
            return None
        inbound = inbound_of(event, conversation)
        match = choose(
            account.rules, account.settings, inbound, replied_at=conversation.auto_replied_at
        )
        if match is None:
            return None
        reason = self._reason_not_to_reply(account, conversation, inbound, now)
        if reason is None and (
            getattr(event, "standby", False)
            or conversation.owned_by_another_app(primary_receiver=account.settings.primary_receiver)
        ):
            # Handover: the thread's owner answers (its messages reach us on `standby`).
            reason = "thread_owned_by_another_app"
        mid = getattr(event, "mid", None)
        if reason is not None:
            conversation.skip_auto_reply(
                key=key, in_reply_to=mid, rule_id=match.rule_id, reason=reason
            )
            return reason
        message = match.message(
            render(
                match.template,
                profile=profile
                if profile is not None
                else self.ledger.participant_profile(conversation),
                account_username=account.username,
            )
        )
        conversation.queue_reply(
            reply_id=str(uuid5(conversation.id, key)),
            text=text_of(message),
            message=as_json(message),
            kind=kind_of(message),
            key=key,
            automated=True,
            in_reply_to=mid,
            rule_id=match.rule_id,
            rule_version=match.rule_version,
            trigger_at=inbound.sent_at,
            by="rule" if match.rule_id else "fallback",
        )
        return "queued"

    @staticmethod
    def _reason_not_to_reply(
        account: Account, conversation: Conversation, inbound: Inbound, now: int
    ) -> str | None:
        if not account.automates:
            return "account_suspended"
        if not account.settings.auto_reply:
            return "auto_reply_off"
        if conversation.status == Status.BLOCKED:
            return "conversation_blocked"
        paused_at = conversation.automation_paused_at
        if paused_at is not None:
            resume_after = account.settings.auto_resume_after_hours
            if resume_after is None or inbound.sent_at < paused_at + resume_after * 3_600_000:
                return "automation_paused"
            conversation.resume_automation(by="auto-resume")
        if now - inbound.sent_at > WINDOW_MS:
            return "window_closed"
        return None


def preview(
    account: Account, inbound: Inbound, profile: dict[str, Any]
) -> tuple[Match | None, str | None]:
    """Which rule would answer `inbound` now, and its rendered reply (stores nothing)."""
    match = choose(account.rules, account.settings, inbound, replied_at={})
    if match is None:
        return None, None
    return match, render(match.template, profile=profile, account_username=account.username)


def echo_command(event: Any) -> Command[bool]:
    """The command that pauses automation when an echo shows a person answered from the
    Instagram app: an echo of none of our replies, and not one of a reply of ours on its
    way (whose echo can arrive before the Send API's answer: it has that reply's text).
    The echo of a reply whose send got no answer (`ambiguous`) records that reply as sent,
    under the echo's id: it is never sent a second time.

    The conversation is read fresh: the dispatcher records sends from its own process,
    and a copy kept here from before would still show the reply in flight (and change
    nothing, so no conflict would tell)."""

    def check(changes: Changes) -> bool:
        conversation = changes.get(event.originator_id, Conversation, fresh=True)
        if conversation is None or event.mid in conversation.sent_message_ids:
            return False
        ambiguous = conversation.ambiguous_reply_echoed(event.text)
        if ambiguous is not None:
            # A send that got no answer went after all: its echo says so, and gives its id.
            return conversation.record_reply_sent(
                reply_id=ambiguous, message_id=event.mid, sent_at=event.sent_at
            )
        if conversation.may_echo_a_queued_reply(event.text):
            return False
        return conversation.pause_automation(
            at=event.sent_at, by="instagram-app", reason="human_replied_in_app"
        )

    return check
