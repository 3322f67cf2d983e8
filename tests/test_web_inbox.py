"""The web inbox (/ui) in a real headless Chromium, against the running gateway.

Debian's chromium, driven by Playwright's Python client with its executable path set
(nothing downloads a browser build; scripts/ensure-browser installs the package). Each
page records every request it makes, every response of the page's own files and every
console message: after each test, no request left the gateway, every UI response
carried the CSP, and the console shows no error and no CSP violation. Conditions are
awaited with Playwright's expect (no sleeps).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import ADMIN_TOKEN, API_KEY, OTHER_KEY, CallbackReceiver, RunningGateway
from tests.smpp_clients import smpplib_esme
from tests.test_smpp_server import submit_fields

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 10_000
HANDSET = "+46701234567"
SLOW = "+46701110000"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="Debian's chromium is not installed (scripts/ensure-browser installs it)",
    ),
]


@pytest.fixture
def config_dict(config_dict: dict[str, Any]) -> dict[str, Any]:
    """conftest's config, with one number delivered slowly enough to watch it change,
    and the reset routes on (the page's delete and reset buttons use them)."""
    config_dict["simulator"]["allow_reset"] = True
    rule = {"number": SLOW, "outcome": "delivered", "latency": ["2s", "2s"]}
    config_dict["simulator"]["rules"].insert(0, rule)
    return config_dict


@dataclass
class Watched:
    """A page and what it did: requests, UI responses without the CSP, console trouble."""

    page: Page
    gateway: str
    requests: list[str] = field(default_factory=list)
    missing_csp: list[str] = field(default_factory=list)
    trouble: list[str] = field(default_factory=list)

    def check(self) -> None:
        outside = [url for url in self.requests if not url.startswith(self.gateway + "/")]
        assert outside == [], "requests outside the gateway"
        assert self.missing_csp == [], "UI responses without a Content-Security-Policy"
        assert self.trouble == [], "console errors or CSP violations"


async def launch() -> tuple[Any, Browser]:
    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    return playwright, browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    playwright, browser = await launch()
    try:
        yield browser
    finally:
        await browser.close()
        await playwright.stop()


async def open_page(browser: Browser, gateway: RunningGateway) -> Watched:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watched = Watched(page, gateway.url)
    page.on("request", lambda request: watched.requests.append(request.url))

    def on_response(response: Any) -> None:
        path = response.url.removeprefix(gateway.url)
        if re.fullmatch(r"/(ui(/.*)?)?", path) and "content-security-policy" not in (
            response.headers
        ):
            watched.missing_csp.append(path)

    def on_console(message: Any) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            watched.trouble.append(f"{message.type}: {message.text}")

    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.trouble.append(f"pageerror: {error}"))
    return watched


@pytest.fixture
async def inbox(browser: Browser, gateway: RunningGateway) -> AsyncIterator[Watched]:
    watched = await open_page(browser, gateway)
    yield watched
    watched.check()
    await watched.page.context.close()


async def sign_in(watched: Watched, key: str = API_KEY) -> Page:
    page = watched.page
    await page.goto(watched.gateway + "/")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("status")).to_have_text("live")
    return page


async def open_handset(page: Page, msisdn: str = HANDSET) -> None:
    await page.get_by_role("button", name=re.compile(re.escape(msisdn))).click()
    await expect(page.get_by_role("heading", name=msisdn)).to_be_visible()


def bubbles(page: Page) -> Any:
    return page.get_by_role("list", name="Conversation").get_by_role("listitem")


async def test_http_and_smpp_messages_arrive_live_and_status_updates_the_bubble(
    inbox: Watched, gateway: RunningGateway
) -> None:
    page = await sign_in(inbox)
    assert (await gateway.send(body="first, over HTTP")).status == 202
    await open_handset(page)
    await expect(bubbles(page).filter(has_text="first, over HTTP")).to_be_visible()
    await page.evaluate("window.notReloaded = true")

    async with smpplib_esme(gateway.smpp_port) as esme:
        await esme.send(**submit_fields(text=b"second, over SMPP"))
        assert (await esme.next("submit_sm_resp")).status == 0
    smpp_bubble = bubbles(page).filter(has_text="second, over SMPP")
    await expect(smpp_bubble).to_be_visible()
    await expect(smpp_bubble).to_contain_text("smpp")
    await expect(smpp_bubble.locator(".status")).to_have_text("delivered")

    # SLOW is delivered after 2 s: the open bubble shows it on its way, then delivered.
    assert (await gateway.send(to=SLOW, body="taking its time")).status == 202
    await open_handset(page, SLOW)
    slow_status = bubbles(page).filter(has_text="taking its time").locator(".status")
    await expect(slow_status).to_have_text(re.compile("accepted|enroute"))
    await expect(slow_status).to_have_text("delivered")
    assert await page.evaluate("window.notReloaded") is True
    await expect(page).to_have_title(re.compile(r"smsgw inbox"))


async def test_unread_counter_in_the_title(inbox: Watched, gateway: RunningGateway) -> None:
    page = await sign_in(inbox)
    await expect(page).to_have_title("smsgw inbox")
    assert (await gateway.send(to="+46701112233", body="one")).status == 202
    assert (await gateway.send(to="+46701112233", body="two")).status == 202
    await expect(page).to_have_title("(2) smsgw inbox")
    await open_handset(page, "+46701112233")
    await expect(page).to_have_title("smsgw inbox")


async def test_stop_reply_appears_as_mo_and_the_next_send_shows_blocked(
    inbox: Watched, gateway: RunningGateway
) -> None:
    page = await sign_in(inbox)
    assert (await gateway.send(body="want offers?")).status == 202
    await open_handset(page)
    await expect(bubbles(page).filter(has_text="want offers?")).to_be_visible()
    await page.get_by_label("Reply as handset").fill("STOP")
    await page.get_by_role("button", name="Send reply").click()
    reply = page.locator(".bubble.mo").filter(has_text="STOP")
    await expect(reply).to_be_visible()
    await expect(reply.locator(".keyword")).to_have_text("STOP")

    await reply.click()
    consent = page.get_by_role("region", name="Consent")
    await expect(consent).to_contain_text("Opted out" + "yes")
    await consent.get_by_role("button", name="Show history").click()
    await expect(consent.get_by_role("listitem")).to_contain_text("opted_out · keyword")
    await page.keyboard.press("Escape")

    refused = await gateway.send(body="one more offer")
    assert refused.status == 403
    blocked = page.locator(".bubble.blocked")
    await expect(blocked).to_contain_text("recipient_opted_out")
    await expect(blocked.locator(".blocked-badge")).to_have_text("blocked")

    # Nothing was stored, but the gateway keeps the attempt in memory: a reload shows it.
    await page.reload()
    await expect(page.get_by_role("status")).to_have_text("live")
    await open_handset(page)
    await expect(page.locator(".bubble.blocked")).to_contain_text("recipient_opted_out")


async def test_segments_of_a_long_ucs2_message(inbox: Watched, gateway: RunningGateway) -> None:
    body = "Price: 5 ✓ " + "a" * 189  # 200 characters; the check mark forces UCS-2
    assert len(body) == 200
    page = await sign_in(inbox)
    assert (await gateway.send(body=body)).status == 202
    await open_handset(page)
    bubble = bubbles(page).filter(has_text="Price: 5")
    await expect(bubble.locator(".status")).to_have_text("delivered")
    await bubble.click()
    segments = page.get_by_role("list", name="Segments").get_by_role("listitem")
    await expect(segments).to_have_count(3)
    await expect(segments.nth(0)).to_contain_text("Part 1 of 3")
    await expect(segments.nth(2)).to_contain_text("Part 3 of 3")
    await expect(segments.locator("mark.forced")).to_have_count(1)
    await expect(segments.locator("mark.forced")).to_have_text("✓")
    await expect(segments.nth(0).locator("mark.forced")).to_have_text("✓")
    await expect(page.locator(".facts").first).to_contain_text("UCS-2")
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("heading", name="Message detail")).to_be_hidden()


async def test_search_finds_a_message_by_text(inbox: Watched, gateway: RunningGateway) -> None:
    assert (await gateway.send(body="your parcel is here")).status == 202
    assert (await gateway.send(to="+46701112233", body="meeting at noon")).status == 202
    page = await sign_in(inbox)
    await page.get_by_role("button", name="Messages", exact=True).click()
    await page.get_by_label("Text").fill("PARCEL")
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("#results tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("your parcel is here")
    await expect(rows).to_contain_text(HANDSET)


async def test_another_tenant_sees_none_of_it(
    browser: Browser, inbox: Watched, gateway: RunningGateway
) -> None:
    assert (await gateway.send(body="for acme's handset")).status == 202
    page = await sign_in(inbox)
    await expect(page.get_by_role("button", name=re.compile(re.escape(HANDSET)))).to_be_visible()

    other = await open_page(browser, gateway)
    other_page = await sign_in(other, OTHER_KEY)
    await expect(other_page.get_by_text("No handset has traffic yet.")).to_be_visible()
    assert (await gateway.send(body="later, still acme's")).status == 202
    await expect(page.get_by_text("later, still acme's")).to_be_visible()
    await other_page.get_by_role("button", name="Messages", exact=True).click()
    await expect(other_page.locator("#results-caption")).to_have_text("0 message(s)")
    await expect(other_page.get_by_text(HANDSET)).to_have_count(0)
    other.check()
    await other_page.context.close()


async def test_keyboard_moves_through_handsets_and_opens_one(
    inbox: Watched, gateway: RunningGateway
) -> None:
    for to in (HANDSET, "+46701112233"):
        assert (await gateway.send(to=to, body=f"hello {to}")).status == 202
    page = await sign_in(inbox)
    await expect(page.locator("button.handset")).to_have_count(2)
    await page.keyboard.press("j")
    await expect(page.locator("button.handset").nth(0)).to_be_focused()
    await page.keyboard.press("j")
    second = page.locator("button.handset").nth(1)
    await expect(second).to_be_focused()
    # Both were active in the same millisecond: their order is not ours to assume.
    label = await second.inner_text()
    number = next(to for to in (HANDSET, "+46701112233") if to in label)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name=number)).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("heading", name=number)).to_be_hidden()


async def test_an_operator_token_switches_between_tenants(
    inbox: Watched, gateway: RunningGateway
) -> None:
    assert (await gateway.send(body="acme's message")).status == 202
    page = inbox.page
    await page.goto(inbox.gateway + "/ui/")
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_label("It is an operator token").check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("status")).to_have_text("live")
    await expect(page.get_by_label("Tenant")).to_have_value("acme")
    await open_handset(page)
    await expect(bubbles(page).filter(has_text="acme's message")).to_be_visible()
    await page.get_by_label("Tenant").select_option("other")
    await expect(page.get_by_text("No handset has traffic yet.")).to_be_visible()
    await expect(page.get_by_role("button", name=re.compile(re.escape(HANDSET)))).to_have_count(0)


async def test_operator_views_show_instances_sessions_retention_links_and_edit_chaos(
    inbox: Watched, gateway: RunningGateway
) -> None:
    page = inbox.page
    await page.goto(inbox.gateway + "/ui/")
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_label("It is an operator token").check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Reset simulator")).to_be_hidden()
    async with smpplib_esme(gateway.smpp_port):
        await page.get_by_role("button", name="Operator", exact=True).click()
        sessions = page.get_by_role("table").filter(has_text="system_id")
        await expect(sessions).to_contain_text("transceiver")
    # On SQLite the gateway is the one instance: itself, live, where it listens.
    instances = page.get_by_role("table").filter(has_text="last heartbeat")
    await expect(instances).to_contain_text("1 live, this one")
    await expect(instances.get_by_role("row").filter(has_text=gateway.url)).to_contain_text("live")
    await expect(page.get_by_role("link", name="Prometheus metrics")).to_have_attribute(
        "href", "/metrics"
    )
    await expect(page.get_by_text("dashboards/smsgw.json")).to_be_visible()
    await expect(page.get_by_text("Pseudonymised after")).to_be_visible()
    await page.get_by_label("Chaos settings for acme").fill('{"outcomes": {"undeliverable": 1}}')
    await page.get_by_role("button", name="Save chaos").click()
    await expect(page.get_by_role("table").filter(has_text="settings")).to_contain_text(
        '"undeliverable":1'
    )
    await page.get_by_role("button", name="Turn chaos off").click()
    await expect(page.get_by_role("table").filter(has_text="settings")).to_contain_text(
        '"undeliverable":0'
    )


async def test_force_an_outcome_and_resend_a_callback(
    inbox: Watched, gateway: RunningGateway, callback_receiver: CallbackReceiver
) -> None:
    page = await sign_in(inbox)
    assert (await gateway.send(to=SLOW, body="on its way")).status == 202
    await open_handset(page, SLOW)
    bubble = bubbles(page).filter(has_text="on its way")
    await bubble.click()
    await page.get_by_role("button", name="Deliver now").click()
    await expect(bubble.locator(".status")).to_have_text("delivered")
    await page.keyboard.press("Escape")

    # A scheduled message has the same buttons: expired now, it never goes out.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await gateway.send(to=SLOW, body="in an hour", send_at=later)).status == 202
    scheduled = bubbles(page).filter(has_text="in an hour")
    await expect(scheduled.locator(".status")).to_have_text("scheduled")
    await scheduled.click()
    await page.get_by_role("button", name="Expire").click()
    await expect(scheduled.locator(".status")).to_have_text("expired")
    await page.keyboard.press("Escape")

    sent = await gateway.send(body="call me back", callback_url=callback_receiver.url)
    assert sent.status == 202
    await callback_receiver.next()
    await open_handset(page)
    await bubbles(page).filter(has_text="call me back").click()
    attempts = page.get_by_role("list", name="Callback attempts").get_by_role("listitem")
    await refreshed_until(page, attempts, 1)
    await expect(attempts).to_contain_text("HTTP 204")
    await page.get_by_role("button", name="Re-send callback").click()
    await callback_receiver.next()
    await refreshed_until(page, attempts, 2)


async def refreshed_until(page: Page, items: Any, count: int) -> None:
    """Press the detail's Refresh until ``items`` number ``count`` (attempts are recorded
    as the callback's answer comes back, just after the receiver saw the request; they
    are not on the event stream)."""
    for _ in range(20):
        await page.get_by_role("button", name="Refresh").click()
        try:
            await expect(items).to_have_count(count, timeout=500)
            return
        except AssertionError:
            continue
    await expect(items).to_have_count(count)


async def test_the_key_stays_out_of_urls_and_in_the_session_only(
    inbox: Watched, gateway: RunningGateway
) -> None:
    page = await sign_in(inbox)
    assert (await gateway.send(body="hello")).status == 202
    await open_handset(page)
    await expect(bubbles(page)).to_have_count(1)
    assert not [url for url in inbox.requests if API_KEY in url]
    assert await page.evaluate("localStorage.length") == 0
    assert API_KEY in await page.evaluate("sessionStorage.getItem('smsgw.session')")
    await page.reload()
    await expect(page.get_by_role("status")).to_have_text("live")  # the tab's session kept it
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_help_button_delete_and_reset(inbox: Watched, gateway: RunningGateway) -> None:
    page = await sign_in(inbox)
    page.on("dialog", lambda dialog: dialog.accept())
    assert (await gateway.send(body="welcome aboard")).status == 202
    await open_handset(page)
    await expect(bubbles(page).filter(has_text="welcome aboard")).to_be_visible()
    await page.get_by_role("button", name="HELP", exact=True).click()
    help_reply = page.locator(".bubble.mo").filter(has_text="HELP")
    await expect(help_reply.locator(".keyword")).to_have_text("HELP")
    await expect(page.locator(".bubble.mt")).to_have_count(2)  # the tenant's help text

    await page.get_by_role("button", name="Delete messages").click()
    await expect(bubbles(page).filter(has_text="welcome aboard")).to_have_count(0)
    await expect(page.locator(".bubble.mt").filter(has_text="(body not kept)")).to_have_count(2)
    await expect(help_reply).to_be_visible()  # what the handset sent is not its inbox

    await page.get_by_role("button", name="Reset simulator").click()
    await expect(page.locator(".bubble.mo")).to_have_count(0)
