"""Signed webhooks generated from Meta's recorded bodies, each changed where an attacker or
a broken sender could change it, against `dmledger serve` on loopback (hypothesis):

- no body gets a 5xx, signed as it is: it is stored (200) or refused as a problem (4xx);
- nothing stored stops a read model: every projection reaches the log's head with no
  event parked (`/readyz?strict=true` answers 200), so what the edge accepts the read
  models can hold;
- another account's message, sent after all of them, is in its history;
- the tests' account's rules answered what they match (to a fake Graph API), and its CRM
  (a fake one verifying each signature) was given every notification, once.

The examples are derandomized: a run finds what the previous one found.
`DMLEDGER_FUZZ_EXAMPLES` asks for more of them (an exploration, not CI).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import (
    ACCOUNT,
    issue_key,
    meta_json,
    register_account,
    signed_headers,
)
from tests.support.fake_crm import FakeCrm
from tests.support.fake_graph import FakeGraphApi
from tests.support.generated import assert_holding_everything, derandomized, followed_read_models
from tests.support.rules import SHIPPING, definition
from tests.support.served import Served, serve
from tests.support.webhooks import OTHER, text_body

pytestmark = pytest.mark.heavy  # 300 webhooks a backend: ~14 s each on a quiet 2-core machine

EXAMPLES = int(os.environ.get("DMLEDGER_FUZZ_EXAMPLES", "300"))
KINDS = sorted(p.stem for p in (Path(__file__).parents[1] / "fixtures" / "meta").glob("*.json"))
COMMENT_FIELDS = ["comments", "live_comments"]
"""Comment webhooks (`entry[].changes[]`), which the recorded bodies do not hold."""


def comment_body(field: str, number: int) -> dict[str, Any]:
    """A `comments` or `live_comments` webhook as Meta sends it for Instagram Login."""
    value = {
        "from": {"id": "5500000000000001", "username": "bob"},
        "media": {"id": "18000000000000001", "media_product_type": "FEED"},
        "id": f"1790000000000{number:04d}",
        "parent_id": "17900000000000000",
        "text": "How much is it?",
    }
    change = {"field": field, "value": value}
    return {
        "object": "instagram",
        "entry": [{"id": ACCOUNT, "time": 1767225600, "changes": [change]}],
    }


CUSTOMER = "5500000000000999"
"""A customer of the other account whom no generated body names."""

BODIES = itertools.count()

Json = Any
Path_ = tuple[str | int, ...]

NASTY_INTEGERS = st.sampled_from(
    [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)]
)
NASTY_TEXTS = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "\ud800",  # a lone surrogate: valid JSON (\\ud800), not encodable as UTF-8
        "\udfff\ud800",
        "x" * 70_000,
        "../../etc/passwd",
        "' OR 1=1 --",
        "\u202e\u200b\ufeff",
        "17841400000000001",
        "5500000000000001",
        "1767225600000",
        "-1",
        "1e400",
        "https://127.0.0.1:9/",
        "null",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NASTY_INTEGERS,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    NASTY_TEXTS,
    st.text(max_size=40),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(value: Json, at: Path_ = ()) -> Iterator[Path_]:
    """Every place in a JSON value, the root's children and deeper."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*at, key)
            yield from paths_of(child, (*at, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*at, index)
            yield from paths_of(child, (*at, index))


def parent_of(body: Json, path: Path_) -> Any:
    for step in path[:-1]:
        body = body[step]
    return body


@st.composite
def changed_bodies(draw: st.DrawFn) -> bytes:
    """One of Meta's recorded bodies, its messages new (not redeliveries) and its entries
    the tests' accounts', then changed in one to three places: a value replaced, a key
    removed or added, a list's item repeated. Now and then encoded as JSON the standard
    forbids (NaN, Infinity)."""
    kind = draw(st.sampled_from(KINDS + COMMENT_FIELDS))
    number = next(BODIES)
    body = comment_body(kind, number) if kind in COMMENT_FIELDS else meta_json(kind)
    for place in list(paths_of(body)):  # new messages, not redeliveries of the recorded ones
        if place[-1] == "mid" and isinstance(parent_of(body, place)[place[-1]], str):
            parent_of(body, place)["mid"] = f"mid-fuzz-{number}"
    for entry in body.get("entry", []):
        entry["id"] = draw(st.sampled_from([ACCOUNT, OTHER, entry.get("id", ACCOUNT)]))
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths_of(body))
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent = parent_of(body, path)
        how = draw(st.sampled_from(["replace", "replace", "remove", "add", "repeat"]))
        if how == "replace":
            parent[path[-1]] = draw(st.one_of(NASTY_TEXTS, NASTY_INTEGERS, VALUES))
        elif how == "remove":
            del parent[path[-1]]
        elif how == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=12))] = draw(VALUES)
        elif how == "repeat" and isinstance(parent, list) and isinstance(path[-1], int):
            parent.append(json.loads(json.dumps(parent[path[-1]])))
    return json.dumps(body).encode()


RULES = [
    SHIPPING,
    {"name": "prices", "triggers": [{"type": "regex", "value": "pri(ce|s)"}], "reply": "Soon!"},
    {
        "name": "comments on the post",
        "triggers": [{"type": "comment", "value": "much", "media_id": "18000000000000001"}],
        "reply": "Hi {username}! Prices: https://shop.example/prices",
        "public_reply": "Sent you a DM!",
    },
]
"""The tests' account answers some messages by itself, so the bodies go through its rules."""


@pytest.fixture
def served(
    sql_url: str,
    tmp_path: Path,
    make_services: Callable[..., Services],
    graph: FakeGraphApi,
    crm: FakeCrm,
) -> Iterator[tuple[Served, str]]:
    """`dmledger serve` on the backend's database, holding two accounts; an admin key. The
    tests' account has auto-reply rules (sending to the fake Graph API) and a CRM (the fake
    one, which verifies every delivery)."""
    services = make_services(sql_url)
    register_account(services)
    register_account(services, OTHER)
    for rule in RULES:
        services.writer.run_now(services.rules.add(ACCOUNT, definition(rule), by="test"))
    endpoint = services.writer.run_now(
        services.crm_endpoints.set(
            ACCOUNT, url=crm.url, event_types=None, rotate_secret=False, by="test"
        )
    )
    crm.secret = endpoint.secret
    token = issue_key(services)
    services.close()
    server = serve(
        sql_url,
        tmp_path / "var",
        DMLEDGER_GRAPH_API_URL=graph.url,
        DMLEDGER_CRM_ALLOW_PRIVATE_URLS="true",
    )
    yield server, token
    server.stop()
    # What a failure needs: why each read model parked what it parked.
    print("\n".join(line for line in server.output.splitlines() if "parks the event" in line))


def settled_deliveries(http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    """The tests' account's CRM deliveries, once none is pending or being sent (or as they
    are after two minutes)."""
    deliveries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        deliveries, cursor = [], None
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            page = http.get(
                f"/api/v1/accounts/{ACCOUNT}/deliveries", params=params, headers=headers
            ).json()
            deliveries += page["deliveries"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if all(d["status"] not in ("pending", "sending") for d in deliveries):
            break
        time.sleep(0.2)
    return deliveries


def test_no_signed_body_gets_a_5xx_or_stops_a_read_model_or_a_delivery(
    served: tuple[Served, str], crm: FakeCrm
) -> None:
    server, token = served
    answers: dict[int, int] = {}
    failures: list[str] = []

    with httpx.Client(base_url=server.url, timeout=30) as http:

        @given(body=changed_bodies())
        @derandomized(EXAMPLES)
        def stored_or_refused(body: bytes) -> None:
            answer = http.post("/webhooks/instagram", content=body, headers=signed_headers(body))
            answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
            if answer.status_code >= 500:
                failures.append(f"{answer.status_code} {answer.text[:300]} for {body[:600]!r}")
            elif answer.status_code >= 400:
                assert answer.headers["content-type"].startswith("application/problem+json")

        stored_or_refused()

        # when another account's customer writes after all of them
        sent_at = int(time.time() * 1000)
        canary = text_body("mid-fuzz-canary", sent_at=sent_at, participant=CUSTOMER, account=OTHER)
        assert http.post(
            "/webhooks/instagram", content=canary, headers=signed_headers(canary)
        ).is_success
        headers = {"authorization": f"Bearer {token}"}
        conversation = conversation_id(OTHER, CUSTOMER)
        messages = f"/api/v1/accounts/{OTHER}/conversations/{conversation}/messages"
        projections = followed_read_models(server.url)
        listed = http.get(messages, headers=headers)
        deliveries = settled_deliveries(http, headers)

    assert failures == [], "\n".join(failures)
    assert answers.get(200, 0) > EXAMPLES // 5, answers  # the bodies reached the ledger too
    # then every read model followed the log, parking nothing, and the canary is there
    assert_holding_everything(projections)
    assert [m["mid"] for m in listed.json()["messages"]] == ["mid-fuzz-canary"]
    # and the CRM was given every notification, each verified once it arrived
    assert deliveries, "the tests' account's CRM got nothing"
    assert {d["status"] for d in deliveries} == {"delivered"}, [
        (d["type"], d["status"], d["attempts"][-1:])
        for d in deliveries
        if d["status"] != "delivered"
    ]
    assert crm.rejected == []
    assert {d["id"] for d in crm.delivered()} == {d["id"] for d in deliveries}
