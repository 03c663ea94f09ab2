"""Each event class declared in an aggregate has the fields of the `@event` method that
records it, in the same order and with the same defaults: the library builds the event
from the class and calls the method with its fields, so a field added to one of them only
(a merge that adds a parameter) would be refused or never stored."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from application.eventsourcing_compat import declared_events
from domain.account import Account
from domain.api_key import ApiKey
from domain.conversation import Conversation

BASE_FIELDS = {f.name for f in dataclasses.fields(Aggregate.Created)}


def fields_of(event_class: type[Any]) -> list[tuple[str, Any]]:
    return [
        (f.name, f.default) for f in dataclasses.fields(event_class) if f.name not in BASE_FIELDS
    ]


def parameters_of(method: Any) -> list[tuple[str, Any]]:
    missing = dataclasses.MISSING
    return [
        (p.name, missing if p.default is inspect.Parameter.empty else p.default)
        for p in list(inspect.signature(method).parameters.values())[1:]
    ]


DECLARED = [
    pytest.param(event_class, method, id=event_class.__qualname__)
    for aggregate in (Account, Conversation, ApiKey)
    for event_class, method in declared_events(aggregate)
]


def test_the_events_the_projections_read_are_declared() -> None:
    names = {p.id for p in DECLARED}
    assert {"Conversation.MessageReceived", "Conversation.Started", "Account.RuleAdded"} <= names


@pytest.mark.parametrize(("event_class", "method"), DECLARED)
def test_a_declared_event_has_the_fields_of_its_method(event_class: type[Any], method: Any) -> None:
    assert fields_of(event_class) == parameters_of(method)
