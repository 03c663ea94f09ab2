"""Rendering the console's pages: the Jinja templates, their filters, the security headers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from interfaces.console.safety import SECURITY_HEADERS, meta_media_url

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def when(value: int | datetime | None) -> str:
    """A time in milliseconds since the epoch (or a datetime), as people read it, in UTC."""
    if value is None:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["when"] = when
    engine.engine.filters["meta_media"] = meta_media_url


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The console's templates; Jinja escapes every value (autoescape is on)."""
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_filters)


def page(name: str, status_code: int = 200, **context: Any) -> Template:
    """A page or fragment of the console, with its security headers."""
    return Template(
        template_name=name, context=context, status_code=status_code, headers=SECURITY_HEADERS
    )
