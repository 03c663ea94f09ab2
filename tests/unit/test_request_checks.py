"""Every route's requests go through the app's one `before_request` hook (the auditors'
check and the unstorable-body check), and no route has a guard that would cost Litestar a
copy of its handler per request (interfaces/http/request_checks.py)."""

from __future__ import annotations

from collections.abc import Callable

from litestar.routes import HTTPRoute

from interfaces.composition import Services
from interfaces.http.app import create_app


def test_every_route_handler_resolves_the_apps_one_hook_and_no_guard(
    make_services: Callable[..., Services],
) -> None:
    app = create_app(make_services("memory://"), run_projections=False, run_dispatcher=False)
    hook = app.before_request
    assert hook is not None

    # A hook runs for HTTP handlers only (a guard ran for ASGI and websocket ones too).
    assert [r.path for r in app.routes if not isinstance(r, HTTPRoute)] == []
    handlers = [
        handler
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
    ]

    assert any("/webhooks/instagram" in handler.paths for handler in handlers)
    assert [h for h in handlers if h.resolve_before_request() is not hook] == []
    assert [h for h in handlers if h.resolve_guards()] == []
