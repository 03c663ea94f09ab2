"""What the fake Graph API (`interfaces/dev_graph_api.py`) refuses, as Meta's Send API
does: each check is written from Meta's Instagram messaging docs (send message, quick
replies, generic template, sender actions, attachment upload), not from dmledger's own
validation, so a reply dmledger lets through that Meta would refuse fails in the tests."""

from __future__ import annotations

from typing import Any

MEDIA = {"image", "video", "audio", "file"}
SENDER_ACTIONS = {"typing_on", "typing_off", "mark_seen", "react", "unreact"}


def _param(name: str, problem: str) -> str:
    return f"(#100) Param {name} {problem}"


def _long(value: Any, limit: int) -> bool:
    return not isinstance(value, str) or not value or len(value) > limit


def send_refusal(body: dict[str, Any]) -> str | None:
    """Meta's message for a Send API body it refuses (code 100), or None."""
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not (recipient.get("id") or recipient.get("comment_id")):
        return _param("recipient", "must be an object with an id or a comment_id")
    action = body.get("sender_action")
    if action is not None:
        return _action_refusal(action, body)
    message = body.get("message")
    if not isinstance(message, dict):
        return _param("message", "is required")
    if "text" in message:
        return _text_refusal(message)
    attachment = message.get("attachment")
    if not isinstance(attachment, dict):
        return _param("message", "must have text or an attachment")
    payload = attachment.get("payload") or {}
    if attachment.get("type") == "template":
        return _template_refusal(payload)
    if attachment.get("type") not in MEDIA:
        return _param("message[attachment][type]", "must be image, video, audio, file")
    if bool(payload.get("url")) == bool(payload.get("attachment_id")):
        return _param("message[attachment][payload]", "needs a url or an attachment_id")
    return None


def _action_refusal(action: Any, body: dict[str, Any]) -> str | None:
    if action not in SENDER_ACTIONS:
        return _param("sender_action", "must be one of " + ", ".join(sorted(SENDER_ACTIONS)))
    if "message" in body:
        return "(#100) sender_action cannot be sent with a message"
    if action in ("react", "unreact"):
        payload = body.get("payload") or {}
        if not payload.get("message_id"):
            return _param("payload[message_id]", "is required")
        if action == "react" and payload.get("reaction") != "love":
            return _param("payload[reaction]", "must be love")
    return None


def _text_refusal(message: dict[str, Any]) -> str | None:
    text = message["text"]
    if not isinstance(text, str) or not text or len(text.encode()) > 1000:
        return _param("message[text]", "must be UTF-8 of 1 to 1000 bytes")
    quick_replies = message.get("quick_replies", [])
    if not isinstance(quick_replies, list) or len(quick_replies) > 13:
        return _param("message[quick_replies]", "must have at most 13 elements")
    for index, quick in enumerate(quick_replies):
        at = f"message[quick_replies][{index}]"
        if quick.get("content_type") != "text":
            return _param(f"{at}[content_type]", "must be text")
        if _long(quick.get("title"), 20):
            return _param(f"{at}[title]", "must be 1 to 20 characters")
        if _long(quick.get("payload"), 1000):
            return _param(f"{at}[payload]", "must be 1 to 1000 characters")
    return None


def _template_refusal(payload: dict[str, Any]) -> str | None:
    if payload.get("template_type") != "generic":
        return _param("template_type", "must be generic")
    elements = payload.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
        return _param("elements", "must have 1 to 10 elements")
    for index, element in enumerate(elements):
        at = f"elements[{index}]"
        if _long(element.get("title"), 80):
            return _param(f"{at}[title]", "must be 1 to 80 characters")
        if "subtitle" in element and _long(element["subtitle"], 80):
            return _param(f"{at}[subtitle]", "must be 1 to 80 characters")
        buttons = element.get("buttons", [])
        if len(buttons) > 3:
            return _param(f"{at}[buttons]", "must have at most 3 buttons")
        for number, button in enumerate(buttons):
            kind = button.get("type")
            needed = {"web_url": "url", "postback": "payload"}.get(kind)
            if needed is None or not button.get(needed) or _long(button.get("title"), 20):
                return _param(f"{at}[buttons][{number}]", "is not a valid button")
    return None


def upload_refusal(body: dict[str, Any]) -> str | None:
    """Meta's message for an attachment upload it refuses, or None."""
    attachment = (body.get("message") or {}).get("attachment") or {}
    payload = attachment.get("payload") or {}
    if body.get("platform") != "instagram":
        return _param("platform", "must be instagram")
    if attachment.get("type") not in MEDIA:
        return _param("message[attachment][type]", "must be image, video, audio, file")
    if not str(payload.get("url") or "").startswith("https://"):
        return _param("message[attachment][payload][url]", "must be an https URL")
    return None
