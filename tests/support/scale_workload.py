"""The webhooks of the scale-out scenario, and a sender that behaves as Meta does.

Three accounts (each with its own app secret) and a few dozen participants each. A
participant writes texts; some carry one of the accounts' rule keywords (each keyword at
most once per conversation, so that a reply's text and recipient name the reply); in some
conversations of the last account a person answers from the Instagram app (an echo dmledger
did not send), which pauses automation there. About one body in ten carries two items.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from application.ingest import sign

KEYWORDS = ("ship", "price", "size", "return", "open", "gift")
ACCESS_TOKEN = "IGAA-scale-out-token"
PLAIN = (
    "hello there",
    "is anyone around",
    "thanks a lot",
    "I like the blue one",
    "see you soon",
    "what about tomorrow",
)


@dataclass(frozen=True)
class Account:
    ig_account_id: str
    username: str
    app_secret: str
    verify_token: str


def accounts() -> list[Account]:
    return [
        Account(f"1784140000000010{n}", f"shop{n}", f"app-secret-{n}", f"verify-{n}")
        for n in (1, 2, 3)
    ]


def reply_text(keyword: str, account: Account) -> str:
    """What the rule of `keyword` answers, rendered (its template names the account)."""
    return f"[{keyword}] Thanks from {account.username}!"


def rules() -> list[dict[str, object]]:
    return [
        {
            "name": f"answer-{keyword}",
            "priority": 10,
            "triggers": [{"type": "keyword", "value": keyword}],
            "reply": f"[{keyword}] Thanks from {{account_username}}!",
        }
        for keyword in KEYWORDS
    ]


@dataclass(frozen=True)
class Item:
    """One messaging item: a participant's text, or an echo of a person's answer."""

    mid: str
    account: Account
    participant_id: str
    text: str
    echo: bool = False
    keyword: str | None = None

    @property
    def triggers_a_rule(self) -> bool:
        return self.keyword is not None


@dataclass
class Body:
    """A webhook body as Meta posts it, signed with its account's app secret."""

    raw: bytes
    signature: str
    items: list[Item]


def workload(size: int, participants: int, seed: int = 7) -> list[Body]:
    """`size` bodies over 3 accounts of `participants` participants each."""
    rng = random.Random(seed)
    every = accounts()
    per_participant = max(3, round(size * 1.1 / (len(every) * participants)))
    streams: dict[tuple[int, int], list[Item]] = {}
    for a, account in enumerate(every):
        for p in range(participants):
            participant_id = f"55{a + 1}{p:013d}"
            streams[(a, p)] = _stream(rng, account, participant_id, per_participant, a == 2, p)
    bodies: list[Body] = []
    now = int(time.time() * 1000)
    while len(bodies) < size and any(streams.values()):
        key = rng.choice([k for k, items in streams.items() if items])
        items = [streams[key].pop(0)]
        others = [k for k, s in streams.items() if s and k[0] == key[0] and k != key]
        if others and rng.random() < 0.1:
            items.append(streams[rng.choice(others)].pop(0))
        bodies.append(_body(items, now + len(bodies)))
    return bodies


def _stream(
    rng: random.Random,
    account: Account,
    participant_id: str,
    count: int,
    with_echoes: bool,
    p: int,
) -> list[Item]:
    triggers = rng.sample(range(count), min(len(KEYWORDS), count // 3))
    keywords = rng.sample(KEYWORDS, len(triggers))
    chosen = dict(zip(triggers, keywords, strict=True))
    items = []
    for n in range(count):
        mid = f"mid.{participant_id}.{n}"
        keyword = chosen.get(n)
        text = rng.choice(PLAIN) + (f", {keyword}?" if keyword else "")
        items.append(Item(mid, account, participant_id, text, keyword=keyword))
    if with_echoes and p % 3 == 0:
        at = rng.randrange(1, count)
        echo = Item(f"echo.{participant_id}", account, participant_id, "answered in the app", True)
        items.insert(at, echo)
    return items


def _body(items: list[Item], at: int) -> Body:
    account = items[0].account
    messaging = []
    for item in items:
        message: dict[str, object] = {"mid": item.mid, "text": item.text}
        sender, recipient = item.participant_id, account.ig_account_id
        if item.echo:
            message["is_echo"] = True
            sender, recipient = recipient, sender
        messaging.append(
            {
                "sender": {"id": sender},
                "recipient": {"id": recipient},
                "timestamp": at,
                "message": message,
            }
        )
    raw = json.dumps(
        {
            "object": "instagram",
            "entry": [{"id": account.ig_account_id, "time": at, "messaging": messaging}],
        },
        separators=(",", ":"),
    ).encode()
    return Body(raw, sign(raw, account.app_secret), items)


@dataclass
class Sending:
    """What came of sending the bodies."""

    acknowledged: set[int] = field(default_factory=set)
    """The bodies answered 200."""
    refused: dict[int, str] = field(default_factory=dict)
    """The bodies answered 4xx (none should be), with the answer."""
    attempts: int = 0
    answered_5xx: int = 0
    transport_errors: int = 0
    redelivered: int = 0

    def finished(self, total: int) -> bool:
        return len(self.acknowledged) + len(self.refused) >= total


async def send_like_meta(
    bodies: Sequence[Body],
    urls: Sequence[str],
    *,
    concurrency: int = 24,
    redeliver_share: float = 0.03,
    deadline: float = 120.0,
    progress: Callable[[Sending], None] = lambda _: None,
    seed: int = 11,
) -> Sending:
    """POST every body until it is answered 200, alternating between `urls` (two web
    machines): a body whose POST failed or got a 5xx is sent again, as Meta does, and a
    few acknowledged ones are sent once more (Meta sometimes delivers twice)."""
    rng = random.Random(seed)
    queue: asyncio.Queue[tuple[int, bool]] = asyncio.Queue()
    for n in range(len(bodies)):
        queue.put_nowait((n, False))
    result = Sending()
    turn = 0
    stop_at = time.monotonic() + deadline
    timeout = httpx.Timeout(30.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal turn
        while time.monotonic() < stop_at:
            try:
                n, again = queue.get_nowait()
            except asyncio.QueueEmpty:
                if result.finished(len(bodies)) and queue.empty():
                    return
                await asyncio.sleep(0.01)
                continue
            body = bodies[n]
            url = urls[turn % len(urls)]
            turn += 1
            result.attempts += 1
            try:
                response = await client.post(
                    url,
                    content=body.raw,
                    headers={
                        "content-type": "application/json",
                        "x-hub-signature-256": body.signature,
                    },
                )
            except httpx.TransportError:
                result.transport_errors += 1
                queue.put_nowait((n, again))
                await asyncio.sleep(0.05)
                continue
            if response.status_code >= 500:
                result.answered_5xx += 1
                queue.put_nowait((n, again))
                continue
            if response.status_code != 200:
                result.refused[n] = f"{response.status_code} {response.text[:200]}"
                continue
            if n not in result.acknowledged and rng.random() < redeliver_share:
                queue.put_nowait((n, True))
            if again:
                result.redelivered += 1
            result.acknowledged.add(n)
            progress(result)

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return result
