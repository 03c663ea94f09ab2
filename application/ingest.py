"""Ingesting a webhook: verify it, and record each messaging item on its conversation."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import defaultdict
from dataclasses import dataclass

from application.comment_webhook import (
    COMMENT_FIELDS,
    RoutedComment,
    record_comment,
    route_comments,
)
from application.errors import InvalidSignature, MalformedWebhook
from application.instagram_webhook import RoutedItem, read_webhook, record_item, route_items
from application.json_nesting import MAX_DEPTH, nests_deeper_than
from application.ledger_writer import Changes, Command
from application.ports import SecretBox
from application.storable import ID_LENGTH
from application.webhook_signatures import (
    APP_SECRETS_KEPT,
    SIGNATURE_PREFIX,
    DecryptedAppSecrets,
    signature_digest,
)
from domain.account import Account
from domain.conversation import Conversation
from domain.identity import account_id, conversation_id, media_id
from domain.media import Media

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    """What became of one webhook body."""

    recorded: int
    """New events stored."""
    duplicates: int
    """Items already stored before (Meta redelivers)."""
    skipped_accounts: tuple[str, ...]
    """Instagram account ids the body addressed that dmledger does not serve."""
    unroutable: int
    """Items that named no sender or recipient, so belong to no conversation."""
    test_events: int
    """Dashboard test events (`entry[].changes[]`), answered without side effects."""
    comments: int = 0
    """New events of `comments` and `live_comments` changes."""


class WebhookIngest:
    """Turns signed webhook bodies into commands for the ledger writer."""

    def __init__(self, secrets: SecretBox, *, app_secrets_kept: int = APP_SECRETS_KEPT) -> None:
        self.app_secrets = DecryptedAppSecrets(secrets, kept=app_secrets_kept)
        """The decrypted app secrets; `forget` them when an account changes."""

    def command(self, body: bytes, signature: str | None) -> Command[IngestReport]:
        """The command that verifies `body` against `signature` and records its items."""
        given = signature_digest(signature)

        def ingest(changes: Changes) -> IngestReport:
            return self._ingest(changes, body, given)

        return ingest

    def _ingest(self, changes: Changes, body: bytes, given: str) -> IngestReport:
        if nests_deeper_than(body, MAX_DEPTH):
            # JSON parsers recurse: a body nested thousands deep would exhaust the stack.
            raise MalformedWebhook(f"the body is nested more than {MAX_DEPTH} levels deep")
        webhook = read_webhook(body)
        routed, unroutable = route_items(webhook)
        comments = route_comments(webhook.entry)
        by_account: dict[str, list[RoutedItem]] = defaultdict(list)
        for item in routed:
            by_account[item.ig_account_id].append(item)
        comments_by_account: dict[str, list[RoutedComment]] = defaultdict(list)
        for comment in comments:
            comments_by_account[comment.ig_account_id].append(comment)
            by_account.setdefault(comment.ig_account_id, [])

        # Verify against every served account the body addresses before changing anything.
        served: dict[str, list[RoutedItem]] = {}
        skipped: list[str] = []
        for ig_account_id, items in by_account.items():
            account = changes.get(account_id(ig_account_id), Account, fresh=True)
            if account is None or not account.serves_webhooks:
                skipped.append(ig_account_id)
                log.warning(
                    "skipping %d items for Instagram account %s, which is not served",
                    len(items) + len(comments_by_account.pop(ig_account_id, ())),
                    # The sender's words, not an account's: at most an id's length.
                    ig_account_id[:ID_LENGTH] + ("..." if len(ig_account_id) > ID_LENGTH else ""),
                )
                continue
            if not hmac.compare_digest(self._digest(account, body), given):
                raise InvalidSignature(
                    "X-Hub-Signature-256 does not match the app secret of Instagram account "
                    f"{ig_account_id}"
                )
            served[ig_account_id] = items
        if unroutable:
            log.warning(
                "skipping %d messaging items that name no sender or recipient", len(unroutable)
            )

        recorded = duplicates = 0
        for ig_account_id, items in served.items():
            for item in items:
                conversation = self._conversation(changes, ig_account_id, item.participant_id)
                before = len(conversation.pending_events)
                if record_item(conversation, item):
                    recorded += len(conversation.pending_events) - before
                else:
                    duplicates += 1
        recorded_comments = 0
        for items_of_account in comments_by_account.values():
            for comment in items_of_account:
                media = self._media(changes, comment)
                before = len(media.pending_events)
                if record_comment(media, comment):
                    recorded_comments += len(media.pending_events) - before
                else:
                    duplicates += 1
        return IngestReport(
            recorded=recorded + recorded_comments,
            duplicates=duplicates,
            skipped_accounts=tuple(skipped),
            unroutable=len(unroutable),
            test_events=sum(
                1
                for entry in webhook.entry
                for change in entry.changes
                if not (
                    isinstance(change, dict)
                    and change.get("field") in (*COMMENT_FIELDS, "messaging_handover")
                )
            ),
            comments=recorded_comments,
        )

    def _media(self, changes: Changes, comment: RoutedComment) -> Media:
        found = changes.get(media_id(comment.ig_account_id, comment.media), Media)
        if found is not None:
            return found
        media = Media(
            ig_account_id=comment.ig_account_id,
            media=comment.media,
            product_type=comment.value["media"].get("media_product_type"),
        )
        changes.add(media)
        return media

    def _conversation(
        self, changes: Changes, ig_account_id: str, participant_id: str
    ) -> Conversation:
        found = changes.get(conversation_id(ig_account_id, participant_id), Conversation)
        if found is not None:
            return found
        conversation = Conversation(ig_account_id=ig_account_id, participant_id=participant_id)
        changes.add(conversation)
        return conversation

    def _digest(self, account: Account, body: bytes) -> str:
        secret = self.app_secrets.of(account)
        return hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign(body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` header Meta would send for `body`."""
    return SIGNATURE_PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
