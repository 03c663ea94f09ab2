"""The pieces that keep intake cheap under attack: nesting depth, the database circuit,
the rate-limited refusal log, and the settings that bound connections."""

from __future__ import annotations

import logging
import threading

import pytest

from application.json_nesting import nesting_depth, nests_deeper_than
from infrastructure.postgres_connections import ConnectionCircuit, DatabaseUnavailable
from infrastructure.settings import Settings, SettingsError
from interfaces.refusal_log import RefusalLog


@pytest.mark.parametrize(
    ("document", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[[[", "b": "\\"[[["}', 1),
        (b"[" * 100_000 + b"]" * 100_000, 100_000),
        (b"1", 0),
    ],
)
def test_nesting_depth_ignores_brackets_in_strings(document: bytes, depth: int) -> None:
    assert nesting_depth(document) == depth


def test_only_documents_nested_past_the_limit_are_too_deep() -> None:
    assert not nests_deeper_than(b"[" * 64 + b"]" * 64, 64)
    assert nests_deeper_than(b"[" * 65 + b"]" * 65, 64)
    assert not nests_deeper_than(b"[]" * 1000, 64)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_circuit_opens_after_consecutive_failures_and_a_probe_closes_it() -> None:
    clock = Clock()
    probed = threading.Event()
    circuit = ConnectionCircuit(probed.set, failures_to_open=2, rest=1.0, clock=clock)

    circuit.failed()
    circuit.before_connecting()  # one failure: still closed
    circuit.failed()
    with pytest.raises(DatabaseUnavailable):
        circuit.before_connecting()
    assert not probed.is_set()

    clock.now = 1.0
    with pytest.raises(DatabaseUnavailable):  # the caller that starts the probe fails fast too
        circuit.before_connecting()
    assert probed.wait(5)
    for _ in range(500):
        if not circuit.is_open:
            break
        threading.Event().wait(0.01)
    assert not circuit.is_open
    circuit.before_connecting()


def test_a_failed_probe_keeps_the_circuit_open_for_another_rest() -> None:
    clock = Clock()
    done = threading.Event()

    def probe() -> None:
        done.set()
        raise OSError("still down")

    circuit = ConnectionCircuit(probe, failures_to_open=1, rest=1.0, clock=clock)
    circuit.failed()
    clock.now = 1.5
    with pytest.raises(DatabaseUnavailable):
        circuit.before_connecting()
    assert done.wait(5)
    for _ in range(500):
        if circuit._open_until == 2.5:
            break
        threading.Event().wait(0.01)
    assert circuit.is_open
    with pytest.raises(DatabaseUnavailable):
        circuit.before_connecting()


def test_refusals_are_logged_once_a_minute_at_most(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = RefusalLog(logging.getLogger("t"), "webhook bodies", interval=60, clock=clock)

    for _ in range(1000):
        refusals.note("InvalidSignature")
    clock.now = 61
    refusals.note("MalformedWebhook")

    assert len(caplog.records) == 2
    assert "999 InvalidSignature, 1 MalformedWebhook" in caplog.records[1].getMessage()


def test_connection_settings_are_read_and_checked() -> None:
    settings = Settings.from_environ(
        {
            "DMLEDGER_HEADER_TIMEOUT": "3",
            "DMLEDGER_BODY_TIMEOUT": "7",
            "DMLEDGER_KEEP_ALIVE_TIMEOUT": "2",
            "DMLEDGER_MAX_CONNECTIONS": "50",
            "DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "true",
        }
    )
    assert (settings.header_timeout, settings.body_timeout) == (3, 7)
    assert (settings.keep_alive_timeout, settings.max_connections) == (2, 50)
    assert settings.crm_allow_private_urls is True
    assert Settings.from_environ({}).crm_allow_private_urls is False
    with pytest.raises(SettingsError, match="DMLEDGER_BODY_TIMEOUT"):
        Settings.from_environ({"DMLEDGER_BODY_TIMEOUT": "0"})
    with pytest.raises(SettingsError, match="DMLEDGER_CRM_ALLOW_PRIVATE_URLS"):
        Settings.from_environ({"DMLEDGER_CRM_ALLOW_PRIVATE_URLS": "maybe"})
