"""What every request to a route goes through before its handler: the app's one
`before_request` hook.

In this order: an auditor key is refused on every method that could change something
(`read_only.py`), then a JSON body dmledger could not store (`storable_input.py`). Both
run after routing (a path no route matches is 404, whatever key it carries) and before
the handler's dependencies and body are read.

The auditors' check was a Litestar guard until issue 17: for every request to a route
with a guard, Litestar 2.25 copies the route handler (`copy(self)` in
`BaseRouteHandler.authorize_connection`, some 66 attributes), which was ~14% of the
event loop's CPU for a webhook. A hook runs at the same point without that copy.

Litestar takes the `before_request` of the closest layer that sets one: a router,
controller or handler with a hook of its own would skip these checks, and the hook runs
for HTTP handlers only (a guard also ran for websocket and ASGI routes). No layer has a
hook of its own and every route is HTTP: `tests/unit/test_request_checks.py` checks both.
"""

# Litestar reads hook annotations at run time: no `from __future__ import annotations`.

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response

from application.api_keys import ApiKeys
from interfaces.http.read_only import auditors_read_only
from interfaces.http.storable_input import refuse_unstorable_json

BeforeRequest = Callable[[Request[Any, Any, Any]], Awaitable[Response[Any] | None]]


def request_checks(api_keys: ApiKeys) -> BeforeRequest:
    """The app's `before_request` hook: raises `Forbidden` for an auditor's write, answers a
    422 (or 400) problem for an unstorable body, else None (the handler runs)."""
    refuse_auditors = auditors_read_only(api_keys)

    async def check(request: Request[Any, Any, Any]) -> Response[Any] | None:
        await refuse_auditors(request)
        return await refuse_unstorable_json(request)

    return check
