"""Who may read the metrics: an admin API key, or `DMLEDGER_METRICS_TOKEN` when set.

The metrics are never open by default: they tell how busy each part is and, with
`DMLEDGER_METRICS_ACCOUNT_LABELS`, which accounts exist. Both `/metrics` of `serve` and
the metrics port of `project` and `dispatch` (`interfaces/metrics_server.py`) ask here.
"""

from __future__ import annotations

import hmac

from application.api_keys import ApiKeys
from application.errors import Forbidden
from domain.api_key import Role


def allow_scraper(authorization: str | None, *, token: str | None, api_keys: ApiKeys) -> None:
    """Return if `Authorization: Bearer ...` carries the metrics token or an admin key;
    raise `Unauthenticated` (no or a wrong credential) or `Forbidden` (a key that is not
    an admin's) otherwise."""
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return
    principal = api_keys.authenticate(authorization)
    if principal.role != Role.ADMIN:
        raise Forbidden("only an admin API key or DMLEDGER_METRICS_TOKEN may read the metrics")
