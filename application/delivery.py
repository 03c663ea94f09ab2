"""What came of sending a reply to Instagram or a notification to a CRM, and what to do next.

The classification follows Meta's Graph API error codes for the Send API.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

RETRY_CODES = frozenset({1, 2, 1200})
THROTTLE_CODES = frozenset({4, 17, 32, 613})
TOKEN_CODES = frozenset({190})
PERMISSION_CODES = frozenset({10, *range(200, 300)})
TERMINAL = ((10, 2018278), (None, 2534022), (551, None), (100, 2018001), (10900, None))
"""(code, subcode) pairs that no retry will fix (None matches any); they win over the
code's own class (10/2018278 is outside the messaging window, not a permission; 10900 is
a second private reply to one comment)."""

CRM_RETRY_SCHEDULE_SECONDS = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
"""When each attempt of a CRM delivery is made, after the previous one failed."""


@dataclass(frozen=True)
class MetaError:
    """Meta's `error` object."""

    code: int | None
    subcode: int | None
    message: str
    fbtrace_id: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class SendResult:
    """What the Send API answered, or how the request failed."""

    transport: Literal["answered", "not_sent", "timed_out"]
    """`not_sent`: the request never reached Meta (safe to retry); `timed_out`: it may have."""
    status_code: int | None = None
    message_id: str | None = None
    error: MetaError | None = None
    regain_access_seconds: int | None = None
    detail: str = ""


class MetaErrorClass(StrEnum):
    """What kind of answer (or silence) the Send API gave."""

    SENT = "sent"
    NOT_SENT = "not_sent"
    """The request never reached Meta (no connection): safe to send again."""
    TIMED_OUT = "timed_out"
    """Meta may have got it: sending again might send twice."""
    TRANSIENT = "transient"
    """Codes 1, 2, 1200, or any HTTP 5xx: Meta asks to try again later."""
    THROTTLED = "throttled"
    """Codes 4, 17, 32, 613: the account sends too much."""
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a name, not a secret
    """Code 190: the access token is expired or revoked."""
    PERMISSION = "permission"
    """Codes 10 and 200-299: the app lacks a permission for this account."""
    TERMINAL = "terminal"
    """Listed in `TERMINAL`, or anything not known: no retry will fix it."""


class Action(StrEnum):
    """What the dispatcher does about a reply's answer."""

    SENT = "sent"
    """Record `ReplySent`; the delivery is done."""
    RETRY = "retry"
    """Record a retryable `ReplyFailed` and try again after a backoff (until the last attempt)."""
    PAUSE_ACCOUNT = "pause_account"
    """Pause the account's sends (`SendsPaused`) for as long as Meta says; the reply waits."""
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 - a name, not a secret
    """Record `TokenRejected`: the account's sends wait for new credentials."""
    PAUSE_ALERT = "pause_alert"
    """Pause the account's sends for an hour and log an error for the operator."""
    TERMINAL = "terminal"
    """Record a final `ReplyFailed`; the delivery is dead."""
    AMBIGUOUS = "ambiguous"
    """Record a final `ReplyFailed` (`ambiguous`): never sent again, it may have gone."""


ACTIONS: Mapping[MetaErrorClass, Action] = MappingProxyType(
    {
        MetaErrorClass.SENT: Action.SENT,
        MetaErrorClass.NOT_SENT: Action.RETRY,
        MetaErrorClass.TIMED_OUT: Action.AMBIGUOUS,
        MetaErrorClass.TRANSIENT: Action.RETRY,
        MetaErrorClass.THROTTLED: Action.PAUSE_ACCOUNT,
        MetaErrorClass.TOKEN_INVALID: Action.TOKEN_REJECTED,
        MetaErrorClass.PERMISSION: Action.PAUSE_ALERT,
        MetaErrorClass.TERMINAL: Action.TERMINAL,
    }
)
"""What to do about each class of answer."""

_CODE_CLASSES = (
    (TOKEN_CODES, MetaErrorClass.TOKEN_INVALID),
    (THROTTLE_CODES, MetaErrorClass.THROTTLED),
    (PERMISSION_CODES, MetaErrorClass.PERMISSION),
    (RETRY_CODES, MetaErrorClass.TRANSIENT),
)
"""Each class of Meta's codes, in the order they are tried (after `TERMINAL`)."""


def error_class(result: SendResult) -> MetaErrorClass:
    """Which class of answer a Send API result is."""
    if result.transport == "not_sent":
        return MetaErrorClass.NOT_SENT
    if result.transport == "timed_out":
        return MetaErrorClass.TIMED_OUT
    status = result.status_code or 0
    if 200 <= status < 300 and result.error is None:
        return MetaErrorClass.SENT
    code = result.error.code if result.error else None
    subcode = result.error.subcode if result.error else None
    if _terminal(code, subcode):
        return MetaErrorClass.TERMINAL
    for codes, kind in _CODE_CLASSES:
        if code in codes:
            return kind
    if status >= 500:
        return MetaErrorClass.TRANSIENT
    return MetaErrorClass.TERMINAL


def classify(result: SendResult) -> Action:
    """What to do about a Send API result."""
    return ACTIONS[error_class(result)]


def _terminal(code: int | None, subcode: int | None) -> bool:
    return any(
        (terminal_code is None or terminal_code == code)
        and (terminal_subcode is None or terminal_subcode == subcode)
        for terminal_code, terminal_subcode in TERMINAL
    )


def backoff_ms(attempt: int, *, base_ms: int = 2_000, cap_ms: int = 3_600_000) -> int:
    """Exponential backoff with full jitter for the `attempt`-th retry."""
    ceiling = min(cap_ms, base_ms * 2 ** max(attempt - 1, 0))
    return int(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not secrecy


def crm_retry_delay_ms(
    attempt: int, schedule: Sequence[int] = CRM_RETRY_SCHEDULE_SECONDS
) -> int | None:
    """The wait before CRM attempt `attempt + 1` (±20 % jitter), or None when exhausted.
    `schedule` holds, for each attempt, its wait after the one before failed (0 first)."""
    if attempt >= len(schedule):
        return None
    seconds = schedule[attempt]
    return int(seconds * 1000 * random.uniform(0.8, 1.2))  # noqa: S311


@dataclass(frozen=True)
class DeliveryResult:
    """What a CRM endpoint answered to one delivery."""

    status_code: int | None
    latency_ms: int
    error: str | None = None
    response: str = ""
    retry_after_seconds: int | None = None
