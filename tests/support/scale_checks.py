"""What the scale-out scenario checks once everything settled, from the event log (as
`dmledger replay --format jsonl` prints it) and from what the fake servers received.

Each check returns the failures it found, as sentences; none means it held.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from projections.outbox.projection import crm_delivery_id
from tests.support.scale_workload import Account, Body, Sending, reply_text

Event = dict[str, Any]

CRM_TYPES = {
    "Conversation.MessageReceived": "message.received",
    "Conversation.MessageEchoed": "message.echoed",
    "Conversation.ReplySent": "reply.sent",
    "Conversation.ReplyFailed": "reply.failed",
    "Conversation.AutomationPaused": "conversation.updated",
}
"""The events of this workload that the CRM is told about (a retryable `ReplyFailed` is
not: the reply goes again)."""
SILENT = {
    "Conversation.Started",
    "Conversation.ReplyQueued",
    "Conversation.AutoReplySkipped",
    # the workload's fake Graph API knows no participant: each first message's profile
    # lookup is refused, and a refusal is not a CRM notification
    "Conversation.ParticipantProfileRefused",
}
"""The conversation events of this workload that the CRM is not told about."""
DECISIONS = ("Conversation.ReplyQueued", "Conversation.AutoReplySkipped")
MAX_LISTED = 10


def _listed(failures: list[str]) -> list[str]:
    if len(failures) <= MAX_LISTED:
        return failures
    return [*failures[:MAX_LISTED], f"... and {len(failures) - MAX_LISTED} more like these"]


def conversation_events(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if e["type"].startswith("Conversation.")]


def stored_once(bodies: Sequence[Body], sending: Sending, events: Sequence[Event]) -> list[str]:
    """Every item of a body answered 200 is stored exactly once; nothing else is stored."""
    failures = [f"body {n} was refused: {answer}" for n, answer in sending.refused.items()]
    stored = Counter(
        e["data"]["mid"]
        for e in events
        if e["type"] in ("Conversation.MessageReceived", "Conversation.MessageEchoed")
    )
    acknowledged = {item.mid for n in sending.acknowledged for item in bodies[n].items}
    sent = {item.mid for body in bodies for item in body.items}
    for n in range(len(bodies)):
        if n not in sending.acknowledged and n not in sending.refused:
            failures.append(f"body {n} was never answered 200")
    for mid in sorted(acknowledged):
        if stored[mid] != 1:
            failures.append(f"item {mid} was acknowledged and is stored {stored[mid]} times")
    for mid in sorted(set(stored) - sent):
        failures.append(f"item {mid} is stored but was never sent")
    return _listed(failures)


def decided_once(bodies: Sequence[Body], events: Sequence[Event]) -> list[str]:
    """One decision (`ReplyQueued` or `AutoReplySkipped`) per message that matches a rule,
    none for the others, and a queued reply is the matching rule's text."""
    failures = []
    decisions: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e["type"] in DECISIONS and e["data"].get("in_reply_to"):
            decisions[e["data"]["in_reply_to"]].append(e)
    for body in bodies:
        for item in body.items:
            if item.echo:
                continue
            made = decisions.pop(item.mid, [])
            expected = 1 if item.triggers_a_rule else 0
            if len(made) != expected:
                failures.append(
                    f"message {item.mid} ({item.text!r}) has {len(made)} decisions, "
                    f"not {expected}: {[e['type'] for e in made]}"
                )
            for e in made:
                wanted = reply_text(item.keyword or "", item.account)
                if e["type"] == "Conversation.ReplyQueued" and e["data"]["text"] != wanted:
                    failures.append(f"the reply to {item.mid} is {e['data']['text']!r}")
    failures += [f"a decision on {mid}, which was never sent" for mid in sorted(decisions)]
    return _listed(failures)


def sent_to_instagram(events: Sequence[Event], sends: Sequence[dict[str, Any]]) -> list[str]:
    """Every queued reply reached the Send API at least once, nothing else did, a send
    made twice is the same reply, `ReplySent` is recorded once per reply, and each
    conversation's replies left in the order they were queued."""
    failures = []
    participants = {
        e["aggregate_id"]: (e["data"]["ig_account_id"], e["data"]["participant_id"])
        for e in events
        if e["type"] == "Conversation.Started"
    }
    queued: dict[str, Event] = {}
    by_send: dict[tuple[str, str, str], str] = {}
    for e in events:
        if e["type"] != "Conversation.ReplyQueued":
            continue
        reply_id = e["data"]["reply_id"]
        queued[reply_id] = e
        key = (*participants[e["aggregate_id"]], e["data"]["text"])
        if key in by_send:
            failures.append(f"two replies are indistinguishable at the Send API: {key}")
        by_send[key] = reply_id
    counted: Counter[str] = Counter()
    first_sends: dict[str, list[str]] = defaultdict(list)
    for send in sends:
        ig_account_id = send["path"].rstrip("/").split("/")[-2]
        recipient, message = send["body"].get("recipient") or {}, send["body"].get("message") or {}
        key = (ig_account_id, recipient.get("id", ""), message.get("text", ""))
        reply_id = by_send.get(key)
        if reply_id is None:
            failures.append(f"a send of no queued reply: {key}")
            continue
        if not counted[reply_id]:
            first_sends[queued[reply_id]["aggregate_id"]].append(reply_id)
        counted[reply_id] += 1
    recorded = Counter(
        e["data"]["reply_id"] for e in events if e["type"] == "Conversation.ReplySent"
    )
    for reply_id, e in queued.items():
        if not counted[reply_id]:
            failures.append(f"reply {reply_id} ({e['data']['text']!r}) never reached the Send API")
        if recorded[reply_id] != 1:
            failures.append(f"reply {reply_id} has {recorded[reply_id]} ReplySent events")
    for conversation, reply_ids in first_sends.items():
        positions = [queued[r]["position"] for r in reply_ids]
        if positions != sorted(positions):
            failures.append(
                f"conversation {conversation}: replies left in the log positions {positions}"
            )
    return _listed(failures)


def delivered_to_crm(
    account: Account,
    events: Sequence[Event],
    received: Sequence[dict[str, Any]],
    rejected: Sequence[str],
) -> list[str]:
    """Every notification of the account's log reached its CRM, verified, with a stable
    `webhook-id` (a duplicate carries the same payload), and each conversation's in log
    order with `sequence` 1, 2, 3, ... in that order."""
    failures = [f"{account.username}'s CRM rejected a signature: {r}" for r in rejected]
    expected: dict[str, tuple[str, str]] = {}
    order: dict[str, list[str]] = defaultdict(list)
    for e in conversation_events(events):
        kind = CRM_TYPES.get(e["type"])
        if kind is None or (e["type"] == "Conversation.ReplyFailed" and e["data"]["retryable"]):
            if e["type"] not in SILENT and kind is None:
                failures.append(f"the workload made an event it does not expect: {e['type']}")
            continue
        delivery_id = crm_delivery_id(
            Aggregate.Event(
                originator_id=UUID(e["aggregate_id"]),
                originator_version=e["version"],
                timestamp=datetime.now(UTC),  # the delivery id is of the id and version only
            )
        )
        expected[delivery_id] = (kind, e["aggregate_id"])
        order[e["aggregate_id"]].append(delivery_id)
    payloads: dict[str, list[dict[str, Any]]] = defaultdict(list)
    arrivals: dict[str, list[str]] = defaultdict(list)
    for delivery in received:
        if not 200 <= delivery["status"] < 300:
            continue
        delivery_id = delivery["id"]
        if not payloads[delivery_id]:
            arrivals[delivery["payload"]["data"].get("conversation_id", "")].append(delivery_id)
        payloads[delivery_id].append(delivery["payload"])
    for delivery_id in sorted(set(expected) - set(payloads)):
        failures.append(f"{account.username}: {expected[delivery_id]} was never delivered")
    for delivery_id in sorted(set(payloads) - set(expected)):
        failures.append(f"{account.username}: {delivery_id} delivered, but no event made it")
    for delivery_id, copies in payloads.items():
        if any(copy != copies[0] for copy in copies):
            failures.append(f"{account.username}: {delivery_id} arrived with different payloads")
        if delivery_id in expected and copies[0]["type"] != expected[delivery_id][0]:
            failures.append(f"{account.username}: {delivery_id} is a {copies[0]['type']}")
    for conversation, wanted in order.items():
        arrived = arrivals.get(conversation, [])
        if [i for i in arrived if i in expected] != [i for i in wanted if i in payloads]:
            failures.append(f"{account.username}: conversation {conversation} out of log order")
        sequences = [payloads[i][0]["data"]["sequence"] for i in wanted if i in payloads]
        if sequences != list(range(1, len(wanted) + 1)):
            failures.append(
                f"{account.username}: conversation {conversation} has sequences {sequences}"
            )
    return _listed(failures)


def duplicates(counts: Iterable[int]) -> int:
    return sum(count - 1 for count in counts if count > 1)
