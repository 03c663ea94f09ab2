"""The fake Instagram Graph API the tests script (it lives in the package, for `dmledger dev
fake-graph` too)."""

from interfaces.dev_graph_api import (
    ALREADY_REPLIED,
    OUTSIDE_WINDOW,
    RATE_LIMITED,
    TEMPORARY,
    TOKEN_EXPIRED,
    USER_UNAVAILABLE,
    FakeGraphApi,
    invalid_parameter,
    meta_error,
    profile_refusal,
)

__all__ = [
    "ALREADY_REPLIED",
    "OUTSIDE_WINDOW",
    "RATE_LIMITED",
    "TEMPORARY",
    "TOKEN_EXPIRED",
    "USER_UNAVAILABLE",
    "FakeGraphApi",
    "invalid_parameter",
    "meta_error",
    "profile_refusal",
]
