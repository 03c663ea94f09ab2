"""What came of sending a reply to Instagram or a notification to a CRM, and what to do next.

The classification follows Meta's Graph API error codes for the Send API.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

RETRY_CODES = {1, 2, 1200}
THROTTLE_CODES = {4, 17, 32, 613}
PERMISSION_CODES = {10, *range(200, 300)}
TERMINAL = {(10, 2018278), (None, 2534022), (551, None), (100, 2018001)}
"""(code, subcode) pairs that no retry will fix (None matches any)."""

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


Action = Literal[
    "sent", "retry", "pause_account", "token_rejected", "pause_alert", "terminal", "ambiguous"
]


def classify(result: SendResult) -> Action:
    """What to do about a Send API result."""
    if result.transport == "not_sent":
        return "retry"
    if result.transport == "timed_out":
        return "ambiguous"
    status = result.status_code or 0
    if 200 <= status < 300 and result.error is None:
        return "sent"
    error = result.error
    code = error.code if error else None
    subcode = error.subcode if error else None
    if _terminal(code, subcode):
        return "terminal"
    if code == 190:
        return "token_rejected"
    if code in THROTTLE_CODES:
        return "pause_account"
    if code in PERMISSION_CODES:
        return "pause_alert"
    if code in RETRY_CODES or status >= 500:
        return "retry"
    return "terminal"


def _terminal(code: int | None, subcode: int | None) -> bool:
    for terminal_code, terminal_subcode in TERMINAL:
        if (terminal_code is None or terminal_code == code) and (
            terminal_subcode is None or terminal_subcode == subcode
        ):
            return True
    return False


def backoff_ms(attempt: int, *, base_ms: int = 2_000, cap_ms: int = 3_600_000) -> int:
    """Exponential backoff with full jitter for the `attempt`-th retry."""
    ceiling = min(cap_ms, base_ms * 2 ** max(attempt - 1, 0))
    return int(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not secrecy


def crm_retry_delay_ms(attempt: int) -> int | None:
    """The wait before CRM attempt `attempt + 1` (±20 % jitter), or None when exhausted."""
    if attempt >= len(CRM_RETRY_SCHEDULE_SECONDS):
        return None
    seconds = CRM_RETRY_SCHEDULE_SECONDS[attempt]
    return int(seconds * 1000 * random.uniform(0.8, 1.2))  # noqa: S311


@dataclass(frozen=True)
class DeliveryResult:
    """What a CRM endpoint answered to one delivery."""

    status_code: int | None
    latency_ms: int
    error: str | None = None
    response: str = ""
    retry_after_seconds: int | None = None
