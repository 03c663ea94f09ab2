"""The event stream holds a page at a time: 100,000 events take no more memory than 1,000.

The endpoint is called as an ASGI app whose `send` only counts what it is given, so
the measurement is the server's, not a client's buffer (no timing is asserted).
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from litestar import Litestar

from domain.conversation import Conversation
from domain.recorded_keys import OlderKeys
from interfaces.composition import Services
from interfaces.http.app import create_app
from tests.conftest import issue_key, register_account

SMALL, LARGE = "17841400000000011", "17841400000000012"


def fill(services: Services, ig_account_id: str, events: int, per_conversation: int = 1000) -> None:
    """`events` events of the account, in conversations of `per_conversation` events each."""
    stored = participant = 0
    while stored < events:
        participant += 1
        conversation = Conversation(ig_account_id=ig_account_id, participant_id=str(participant))
        # Past its recent keys a conversation asks about older ones (the writer gives it this).
        conversation.older_keys = OlderKeys()
        for i in range(min(per_conversation, events - stored) - 1):
            conversation.receive_message(mid=f"{participant}-{i}", sent_at=i, text="hello " * 10)
        stored += len(conversation.pending_events)
        services.ledger.save(conversation)


async def stream(app: Litestar, path: str, token: str) -> tuple[int, int]:
    """GET `path` through the ASGI app; (lines, bytes) of the body, which is not kept."""
    sent = {"lines": 0, "bytes": 0}
    finished = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            sent["lines"] += body.count(b"\n")
            sent["bytes"] += len(body)
            if not message.get("more_body", False):
                finished.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    # (Litestar types a scope as its own, with the keys its app adds: not a server's plain
    # ASGI scope, which is what an app is given)
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent["lines"], sent["bytes"]


async def peak_while(run: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = await run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_streaming_100000_events_takes_as_little_memory_as_1000(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    # given two accounts in one log: one with 1,000 events, one with 100,000
    services = make_services(f"sqlite:///{tmp_path}/ledger.sqlite3")
    for account in (SMALL, LARGE):
        register_account(services, account)
    fill(services, SMALL, 999)
    fill(services, LARGE, 99_999)
    token = issue_key(services, "auditor")
    app = create_app(services, run_projections=False)

    # when each is streamed, with the same log to read through
    (small, _), small_peak = await peak_while(
        lambda: stream(app, f"/api/v1/accounts/{SMALL}/events", token)
    )
    (large, size), large_peak = await peak_while(
        lambda: stream(app, f"/api/v1/accounts/{LARGE}/events", token)
    )

    # then the large one is all there, and took about the same memory
    assert (small, large) == (1_000, 100_000)
    assert size > 30 * 1024 * 1024
    assert large_peak < 2 * small_peak, (small_peak, large_peak)
    assert large_peak < size / 10
