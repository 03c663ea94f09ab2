"""What Meta would refuse to send: a text too long, or a reply outside its window."""

from __future__ import annotations

from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_TEXT_BYTES = 1000


def refusal(
    text: str, *, automated: bool, last_inbound: int | None, now: int
) -> tuple[str, str] | None:
    """The field at fault and the reason Meta would refuse this reply now, or None."""
    reason, _ = window({"text": text, "automated": automated}, last_inbound, now)
    if reason is None:
        return None
    return ("text" if reason.startswith("the text") else "conversation"), reason


def window(
    reply: dict[str, Any], last_inbound: int | None, now: int
) -> tuple[str | None, str | None]:
    """A reason Meta would refuse the reply (or None), and the tag it needs.

    Automated replies may go within 24 hours of the participant's last message; a
    person's within 7 days, tagged `HUMAN_AGENT` after the first 24 hours.
    """
    text = reply.get("text") or ""
    if len(text.encode()) > MAX_TEXT_BYTES:
        return (
            f"the text is {len(text.encode())} bytes of UTF-8; Meta takes at most {MAX_TEXT_BYTES}",
            None,
        )
    if last_inbound is None:
        return "the participant has never written: there is no window to reply in", None
    elapsed = now - last_inbound
    if reply.get("automated"):
        if elapsed > DAY_MS:
            return (
                "an automated reply more than 24 hours after the participant's last message",
                None,
            )
        return None, None
    if elapsed > 7 * DAY_MS:
        return "more than 7 days after the participant's last message", None
    return None, "HUMAN_AGENT" if elapsed > DAY_MS else None
