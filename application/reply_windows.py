"""What Meta would refuse to send: a text too long, or a reply outside its window."""

from __future__ import annotations

from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_TEXT_BYTES = 1000


def refusal(
    text: str,
    *,
    automated: bool,
    last_inbound: int | None,
    now: int,
    message: bool = True,
) -> tuple[str, str] | None:
    """The field at fault (`text` or `conversation`) and the reason Meta would refuse this
    reply now, or None. Automated replies may go within 24 hours of the participant's last
    message, a person's within 7 days (tagged `HUMAN_AGENT` after the first day); what is
    not a `message` (a reaction, a sender action) takes no tag: within 24 hours only."""
    size = len(text.encode())
    if size > MAX_TEXT_BYTES:
        return "text", f"the text is {size} bytes of UTF-8; Meta takes at most {MAX_TEXT_BYTES}"
    if last_inbound is None:
        return "conversation", "the participant has never written: there is no window to reply in"
    elapsed = now - last_inbound
    if (automated or not message) and elapsed > DAY_MS:
        what = "an automated reply" if automated else "a reaction or sender action"
        return "conversation", f"{what} more than 24 hours after the participant's last message"
    if not automated and elapsed > 7 * DAY_MS:
        return "conversation", "more than 7 days after the participant's last message"
    return None


def window(
    reply: dict[str, Any], last_inbound: int | None, now: int, *, message: bool = True
) -> tuple[str | None, str | None]:
    """A reason Meta would refuse the reply (or None), and the tag it needs: a person's
    message after the first 24 hours goes tagged `HUMAN_AGENT`."""
    automated = bool(reply.get("automated"))
    refused = refusal(
        reply.get("text") or "",
        automated=automated,
        last_inbound=last_inbound,
        now=now,
        message=message,
    )
    if refused is not None:
        return refused[1], None
    late = not automated and last_inbound is not None and now - last_inbound > DAY_MS
    return None, "HUMAN_AGENT" if late else None
