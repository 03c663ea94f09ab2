"""The API reference at /docs works on a machine without internet access."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from interfaces.composition import Services
from interfaces.http.app import create_app


class _References(HTMLParser):
    """Every URL a page makes the browser load: script sources, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "data-url"} and value:
                self.urls.append(value)


@pytest.fixture
async def client(
    make_services: Callable[..., Services],
) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(make_services("memory://"), run_projections=False, run_dispatcher=False)
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def test_the_api_reference_names_no_other_host(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/docs", follow_redirects=True)

    assert page.status_code == 200
    # no http://, https:// or protocol-relative //host anywhere in the page
    assert re.findall(r"(?:https?:)?//[\w.-]+", page.text) == []


async def test_every_asset_of_the_api_reference_is_served_by_the_app(
    client: AsyncTestClient[Any],
) -> None:
    page = await client.get("/schema/docs")
    references = _References()
    references.feed(page.text)

    scripts = [url for url in references.urls if url.endswith(".js")]
    stylesheets = [url for url in references.urls if url.endswith(".css")]
    assert scripts, page.text
    assert stylesheets, page.text
    for url in references.urls:
        response = await client.get(url)
        assert response.status_code == 200, url
    for url in scripts:
        response = await client.get(url)
        assert "javascript" in response.headers["content-type"], url
        assert len(response.content) > 100_000, url  # the whole Scalar bundle, not a stub
