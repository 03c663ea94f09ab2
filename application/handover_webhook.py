"""Meta's handover protocol in the messaging webhooks (`messaging_handover`).

An item with `pass_thread_control` (control passed to this app), `take_thread_control`
(taken from it), `release_thread_control` (given back to the primary receiver) or
`request_thread_control` (another app asks for it) comes in `entry[].messaging[]`, or as a
change (`entry[].changes[]` with `field: messaging_handover` and the item as `value`); each
is recorded on its conversation as `ThreadControlChanged`.
"""

from __future__ import annotations

from typing import Any

from domain.conversation import Conversation

JSONObject = dict[str, Any]

HANDOVERS = {
    "pass_thread_control": "pass",
    "take_thread_control": "take",
    "release_thread_control": "release",
    "request_thread_control": "request",
}
"""A `messaging_handover` item's key, and the action it records."""


def handover_changes(changes: list[JSONObject]) -> list[tuple[int, JSONObject]]:
    """The `messaging_handover` changes of an entry (with their index): messaging items."""
    return [
        (c, change["value"])
        for c, change in enumerate(changes)
        if isinstance(change, dict)
        and change.get("field") == "messaging_handover"
        and isinstance(change.get("value"), dict)
    ]


def record_handover(
    conversation: Conversation, item: JSONObject, *, at: int, standby: bool
) -> bool | None:
    """Record the item's handover on its conversation (False: already recorded); None if
    the item is not a handover."""
    for name, action in HANDOVERS.items():
        control = item.get(name)
        if isinstance(control, dict):
            return conversation.record_thread_control(
                action=action,
                previous_owner_app_id=_id_text(control.get("previous_owner_app_id")),
                new_owner_app_id=_id_text(
                    control.get("new_owner_app_id", control.get("requested_owner_app_id"))
                ),
                metadata=control.get("metadata")
                if isinstance(control.get("metadata"), str)
                else None,
                at=at,
                standby=standby,
            )
    return None


def _id_text(value: object) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    return None
