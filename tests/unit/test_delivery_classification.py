"""What each answer of Meta's Send API makes the dispatcher do, the backoff between
attempts, and the CRM's retry schedule."""

from __future__ import annotations

import pytest

from application.crm_deliverer import retry_delay_ms
from application.delivery import (
    ACTIONS,
    CRM_RETRY_SCHEDULE_SECONDS,
    Action,
    DeliveryResult,
    MetaError,
    MetaErrorClass,
    SendResult,
    backoff_ms,
    classify,
    crm_retry_delay_ms,
    error_class,
)


def answered(status: int, code: int | None = None, subcode: int | None = None) -> SendResult:
    error = MetaError(code, subcode, "an error") if code is not None else None
    return SendResult("answered", status_code=status, error=error)


@pytest.mark.parametrize(
    ("result", "kind", "action"),
    [
        (answered(200), MetaErrorClass.SENT, Action.SENT),
        (answered(500, 1), MetaErrorClass.TRANSIENT, Action.RETRY),
        (answered(400, 2), MetaErrorClass.TRANSIENT, Action.RETRY),
        (answered(400, 1200), MetaErrorClass.TRANSIENT, Action.RETRY),
        (answered(502), MetaErrorClass.TRANSIENT, Action.RETRY),
        (answered(503, 999), MetaErrorClass.TRANSIENT, Action.RETRY),
        (SendResult("not_sent", detail="ConnectError"), MetaErrorClass.NOT_SENT, Action.RETRY),
        (
            SendResult("timed_out", detail="ReadTimeout"),
            MetaErrorClass.TIMED_OUT,
            Action.AMBIGUOUS,
        ),
        (answered(400, 4), MetaErrorClass.THROTTLED, Action.PAUSE_ACCOUNT),
        (answered(400, 17), MetaErrorClass.THROTTLED, Action.PAUSE_ACCOUNT),
        (answered(400, 32), MetaErrorClass.THROTTLED, Action.PAUSE_ACCOUNT),
        (answered(400, 613), MetaErrorClass.THROTTLED, Action.PAUSE_ACCOUNT),
        (answered(401, 190, 463), MetaErrorClass.TOKEN_INVALID, Action.TOKEN_REJECTED),
        (answered(403, 10), MetaErrorClass.PERMISSION, Action.PAUSE_ALERT),
        (answered(403, 200), MetaErrorClass.PERMISSION, Action.PAUSE_ALERT),
        (answered(403, 250), MetaErrorClass.PERMISSION, Action.PAUSE_ALERT),
        (answered(403, 299), MetaErrorClass.PERMISSION, Action.PAUSE_ALERT),
        (answered(400, 300), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400, 10, 2018278), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400, 1, 2534022), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400, None, 2534022), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400, 551), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400, 551, 1545041), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(500, 551), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400, 100, 2018001), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400, 100), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(400), MetaErrorClass.TERMINAL, Action.TERMINAL),
        (answered(200, 2), MetaErrorClass.TRANSIENT, Action.RETRY),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_answer_of_meta_has_its_class_and_action(
    result: SendResult, kind: MetaErrorClass, action: Action
) -> None:
    assert error_class(result) == kind
    assert classify(result) == action


def test_every_class_has_an_action() -> None:
    assert set(ACTIONS) == set(MetaErrorClass)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(0, 1_000, 2_000), (1, 1_000, 2_000), (2, 2_000, 4_000), (5, 16_000, 32_000)],
)
def test_backoff_doubles_with_each_attempt_with_jitter(attempt: int, low: int, high: int) -> None:
    waits = [backoff_ms(attempt) for _ in range(200)]
    assert all(low <= wait <= high for wait in waits)
    assert len(set(waits)) > 1


def test_backoff_stops_growing_at_its_cap() -> None:
    assert all(1_800_000 <= backoff_ms(40) <= 3_600_000 for _ in range(50))
    assert all(30_000 <= backoff_ms(1, base_ms=60_000) <= 60_000 for _ in range(50))


@pytest.mark.parametrize("attempt", range(len(CRM_RETRY_SCHEDULE_SECONDS)))
def test_the_crm_retry_delay_follows_the_schedule_within_20_percent(attempt: int) -> None:
    seconds = CRM_RETRY_SCHEDULE_SECONDS[attempt]
    for _ in range(50):
        delay = crm_retry_delay_ms(attempt)
        assert delay is not None
        assert seconds * 800 <= delay <= seconds * 1200


def test_the_crm_schedule_runs_out_after_the_last_attempt() -> None:
    assert CRM_RETRY_SCHEDULE_SECONDS == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert crm_retry_delay_ms(len(CRM_RETRY_SCHEDULE_SECONDS)) is None
    assert retry_delay_ms(8, DeliveryResult(500, 3)) is None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_of_a_429_or_503_sets_the_wait(status: int) -> None:
    assert retry_delay_ms(2, DeliveryResult(status, 3, retry_after_seconds=42)) == 42_000
    # up to an hour, and never past the schedule's last attempt
    assert retry_delay_ms(2, DeliveryResult(status, 3, retry_after_seconds=86_400)) == 3_600_000
    assert retry_delay_ms(8, DeliveryResult(status, 3, retry_after_seconds=7)) is None


def test_retry_after_of_other_statuses_is_ignored() -> None:
    delay = retry_delay_ms(2, DeliveryResult(500, 3, retry_after_seconds=42))
    assert delay is not None
    assert 240_000 <= delay <= 360_000
