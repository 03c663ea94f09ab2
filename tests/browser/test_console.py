"""The console in a real headless Chromium, against a running dmledger and the fake Graph API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from application.rules import RuleDefinition, Trigger
from domain.identity import conversation_id
from interfaces.composition import Services
from tests.browser.conftest import LiveServer
from tests.conftest import ACCOUNT
from tests.support.fake_graph import FakeGraphApi

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page

pytestmark = pytest.mark.browser

PARTICIPANT = "5500000000000001"
META_IMAGE = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18050000000000001&signature=s"
THREAD = f"/console/accounts/{ACCOUNT}/conversations/{conversation_id(ACCOUNT, PARTICIPANT)}"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_signing_in_lists_the_conversations_and_a_new_message_appears_in_the_open_thread(
    browser_page: Page,
    server: LiveServer,
    services: Services,
    sign_in: Callable[..., None],
    send_webhook: Callable[..., None],
    screenshots: Path,
) -> None:
    page = browser_page
    # A rule that greets by name has the participant's profile (and username) recorded.
    shipping = RuleDefinition(
        name="shipping",
        triggers=[Trigger(type="keyword", value="ship")],
        reply="Hi {first_name}! We ship worldwide.",
    )
    services.writer.run_now(services.rules.add(ACCOUNT, shipping, by="test"))
    send_webhook("Hi! Do you ship to Munich?", "mid-1")
    sign_in(page)
    wait_until(
        lambda: page.reload() is not None and page.get_by_role("link", name="@anna").count() == 1,
        "the profile's username is listed",
    )
    page.screenshot(path=screenshots / "conversations.png")

    page.get_by_role("link", name="@anna").click()
    page.get_by_text("Hi! Do you ship to Munich?").wait_for()
    page.locator("[data-reply-status=sent]", has_text="sent").wait_for()
    page.evaluate("window.notReloaded = true")

    # when Meta posts new messages while the thread is open
    send_webhook(None, "mid-2", image=META_IMAGE)
    send_webhook("And to Vienna?", "mid-3")

    # then they appear, and the page was not loaded again
    page.get_by_text("And to Vienna?").wait_for()
    assert page.evaluate("window.notReloaded") is True
    # Meta's image URL cannot be loaded here (as when it has expired): a placeholder.
    page.get_by_text("image (expired or unavailable)").wait_for()
    page.screenshot(path=screenshots / "thread.png", full_page=True)


def test_a_reply_reaches_the_graph_api_and_turns_sent(
    browser_page: Page,
    server: LiveServer,
    sign_in: Callable[..., None],
    send_webhook: Callable[..., None],
    graph: FakeGraphApi,
    screenshots: Path,
) -> None:
    page = browser_page
    send_webhook("Do you have it in blue?", "mid-1")
    sign_in(page)
    page.goto(server.url + THREAD)

    page.fill("textarea[name=text]", "Yes, in blue and green.")
    page.get_by_role("button", name="Send").click()

    wait_until(
        lambda: any(
            s["body"].get("message", {}).get("text") == "Yes, in blue and green."
            for s in graph.sent
        ),
        "the reply reaches the Graph API",
    )
    reply = page.locator("li.message.outbound", has_text="Yes, in blue and green.")
    reply.locator("[data-reply-status=sent]").wait_for()
    assert len(graph.sent) == 1
    page.screenshot(path=screenshots / "thread-reply-sent.png", full_page=True)


def test_a_rule_is_created_and_answers_the_dry_run(
    browser_page: Page, server: LiveServer, sign_in: Callable[..., None], screenshots: Path
) -> None:
    page = browser_page
    sign_in(page)
    page.goto(f"{server.url}/console/accounts/{ACCOUNT}/rules")

    form = page.locator("form.rule-form")
    form.locator("input[name=name]").fill("shipping")
    form.locator("input[name=priority]").fill("10")
    form.locator("textarea[name=triggers]").fill("keyword: ship")
    form.locator("textarea[name=reply]").fill(
        "Hi {first_name}! {account_username} ships worldwide."
    )
    form.get_by_role("button", name="Add rule").click()
    page.locator("table.rules", has_text="shipping").wait_for()

    page.fill("input[name=text]", "Do you ship to Munich?")
    page.fill("input[name=username]", "anna")
    page.get_by_role("button", name="Try").click()

    result = page.locator(".dry-run")
    result.wait_for()
    assert "shipping" in result.inner_text()
    assert "Hi anna! shop ships worldwide." in result.inner_text()
    page.screenshot(path=screenshots / "rules.png", full_page=True)


def test_the_audit_timeline_shows_the_conversation_at_an_earlier_version(
    browser_page: Page,
    server: LiveServer,
    sign_in: Callable[..., None],
    send_webhook: Callable[..., None],
    services: Services,
    screenshots: Path,
) -> None:
    page = browser_page
    send_webhook("First message", "mid-1")
    send_webhook("Second message", "mid-2")
    sign_in(page, "auditor")
    page.goto(server.url + THREAD)
    page.get_by_text("Second message").wait_for()
    page.get_by_role("link", name="Audit timeline").click()

    events = page.locator("ol.events li")
    events.first.wait_for()
    assert "Conversation.Started" in events.first.inner_text()
    state = page.locator("section", has_text="State at version")
    assert "Second message" in state.inner_text()

    # when the slider moves back to version 2 (the first message)
    page.locator("input#version").fill("2")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"version=2"))

    state = page.locator("section", has_text="State at version 2")
    assert "First message" in state.inner_text()
    assert "Second message" not in state.inner_text()

    # an auditor may verify the hash chain (it changes nothing)
    page.get_by_role("button", name="Verify now").click()
    page.locator(".verification .badge", has_text="intact").wait_for()
    page.screenshot(path=screenshots / "audit.png", full_page=True)


def test_an_auditor_is_offered_no_write_controls(
    browser_page: Page,
    server: LiveServer,
    sign_in: Callable[..., None],
    send_webhook: Callable[..., None],
    screenshots: Path,
) -> None:
    page = browser_page
    send_webhook("Hello", "mid-1")
    sign_in(page, "auditor")

    page.goto(server.url + THREAD)
    page.get_by_text("Hello").wait_for()
    page.screenshot(path=screenshots / "thread-auditor.png", full_page=True)
    assert page.locator("textarea[name=text]").count() == 0
    assert page.locator(".actions button").count() == 0
    page.goto(f"{server.url}/console/accounts/{ACCOUNT}/rules")
    page.screenshot(path=screenshots / "rules-auditor.png", full_page=True)
    # Only the sign-out form posts anything.
    assert page.locator("form[method=post]").count() == 1


def test_a_message_written_as_html_is_shown_as_text_and_runs_nothing(
    browser_page: Page,
    server: LiveServer,
    sign_in: Callable[..., None],
    send_webhook: Callable[..., None],
    screenshots: Path,
) -> None:
    page = browser_page
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    hostile = "<img src=x onerror=alert(1)>"
    send_webhook(hostile, "mid-1")
    sign_in(page)

    page.goto(server.url + THREAD)
    page.locator("p.text", has_text=hostile).wait_for()
    # and again through the live update's swap
    send_webhook(hostile + " again", "mid-2")
    page.locator("p.text", has_text=hostile + " again").wait_for()

    assert page.locator("img[src=x]").count() == 0
    assert dialogs == []
    page.screenshot(path=screenshots / "thread-hostile-text.png", full_page=True)


def test_an_admin_suspends_and_reactivates_an_account(
    browser_page: Page, server: LiveServer, sign_in: Callable[..., None], screenshots: Path
) -> None:
    page = browser_page
    sign_in(page, "admin")
    row = page.locator("tr", has_text="@shop")
    assert "active" in row.inner_text()

    row.get_by_role("button", name="Suspend").click()
    page.locator("tr", has_text="@shop").get_by_text("suspended").wait_for()
    page.screenshot(path=screenshots / "accounts.png", full_page=True)

    page.locator("tr", has_text="@shop").get_by_role("button", name="Reactivate").click()
    page.locator("tr", has_text="@shop").get_by_role("button", name="Suspend").wait_for()
    page.goto(f"{server.url}/console/accounts/{ACCOUNT}/deliveries")
    page.get_by_text("This account has no CRM endpoint").wait_for()
    page.screenshot(path=screenshots / "deliveries.png", full_page=True)
