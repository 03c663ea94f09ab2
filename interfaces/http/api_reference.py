"""The API reference page (Scalar), with its script and stylesheet served by the app itself.

Litestar's plugin loads Scalar from a CDN at `@latest` by default: a blank page without
internet access, and a page that changes under us. Here the bundle is vendored at a pinned
version (`static/VENDORED.md`), and Scalar is told not to fetch its fonts, send telemetry or
offer its hosted agent."""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).parent / "static"
ASSETS = "/api-reference"
SCALAR_VERSION = "1.76.0"


def api_reference_plugin(path: str) -> ScalarRenderPlugin:
    """Scalar at `path` under the OpenAPI path, loading only what `assets_router` serves."""
    return ScalarRenderPlugin(
        path=path,
        js_url=f"{ASSETS}/scalar-api-reference-{SCALAR_VERSION}.js",
        css_url=f"{ASSETS}/api-reference.css",
        favicon="",
        options={"withDefaultFonts": False, "telemetry": False, "agent": {"disabled": True}},
    )


def assets_router() -> Router:
    """The vendored Scalar bundle and our stylesheet; the bundle's name carries its version."""
    return create_static_files_router(
        path=ASSETS,
        directories=[STATIC],
        cache_control=CacheControlHeader(max_age=86_400),
        include_in_schema=False,
    )
