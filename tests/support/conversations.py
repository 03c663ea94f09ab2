"""Stepping the tests' conversation through the service in-process: letting the projections,
the policy and the dispatcher do what is due, where the CRM posts its replies to it, and the
sends that left for the Instagram Send API."""

from __future__ import annotations

from typing import Any

from domain.identity import conversation_id
from interfaces.composition import Services
from tests.conftest import ACCOUNT, PARTICIPANT
from tests.support.fake_graph import FakeGraphApi

CONVERSATION = conversation_id(ACCOUNT, PARTICIPANT)
REPLIES = f"/api/v1/accounts/{ACCOUNT}/conversations/{CONVERSATION}/replies"
"""Where the CRM posts its replies to the tests' conversation."""


async def step(services: Services, rounds: int = 3) -> None:
    """Let the projections, the policy and the dispatcher do what is due now."""
    for _ in range(rounds):
        services.read_models.catch_up()
        await services.dispatcher.drain()
    services.read_models.catch_up()


def sends(graph: FakeGraphApi) -> list[dict[str, Any]]:
    """The Send API requests the fake got (not the profile lookups)."""
    return [r for r in graph.requests if r["path"].endswith("/messages")]
