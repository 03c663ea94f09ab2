"""Deterministic aggregate ids, so a webhook finds its account and conversation without a lookup."""

from __future__ import annotations

from uuid import UUID, uuid5

# Fixed for ever: every stored aggregate id is derived from it.
DMLEDGER_NAMESPACE = UUID("6f1c3f0e-6a0b-5d6e-9a57-3c1f0b8d2e41")


def account_id(ig_account_id: str) -> UUID:
    """The id of the `Account` aggregate of an Instagram professional account."""
    return uuid5(DMLEDGER_NAMESPACE, f"account:{ig_account_id}")


def conversation_id(ig_account_id: str, participant_id: str) -> UUID:
    """The id of the `Conversation` between an account and one participant (an IGSID)."""
    return uuid5(DMLEDGER_NAMESPACE, f"conversation:{ig_account_id}:{participant_id}")


def media_id(ig_account_id: str, media: str) -> UUID:
    """The id of the `Media` aggregate of one post, reel, story or live of an account."""
    return uuid5(DMLEDGER_NAMESPACE, f"media:{ig_account_id}:{media}")
