"""The shop's dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`,
driven by Selenium) against the real stack: sign in, a wrong key refused, search a customer, a
purchase appearing live (no reload), a redelivery, English, the keyboard, and a phone's width.
Screenshots are kept as test artifacts in .data/test-artifacts/dashboard/ (01-… to 09-….png).

Selenium's calls block, and the loopback receiver of outbound webhooks runs on this test's
event loop, so every browser call goes through a thread (`Browser`).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import pytest
from outbound_fakes import Answer, Receiver
from payloads import purchase

from kopilka.core.settings import PROJECT_ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="chromium / chromium-driver missing: run deploy/dev/system-deps.sh as root",
    ),
    # the first test of a session also waits for the stack and the browser to start: on a busy
    # 2-core machine that alone took over the default 180 s once
    pytest.mark.timeout(360),
]
ARTIFACTS = PROJECT_ROOT / ".data" / "test-artifacts" / "dashboard"
LEVELS = [{"name": "Серебро", "min_lifetime_spend": "10000", "bonus_percent": "2"}]


class Browser:
    """A headless Chromium; every call runs in a thread so the event loop keeps serving."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        options = Options()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",  # root in a container has no user namespace sandbox
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,1000",
            "--no-first-run",
            "--disable-background-networking",  # nothing but Kopilka is reached
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=options)

    async def run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def js(self, script: str, *args):
        return await self.run(self.driver.execute_script, script, *args)

    async def find(self, css: str):
        from selenium.webdriver.common.by import By

        return await self.run(self.driver.find_element, By.CSS_SELECTOR, css)

    async def text(self, css: str) -> str:
        return (await self.find(css)).text

    async def type_into(self, css: str, text: str) -> None:
        element = await self.find(css)
        await self.run(element.clear)
        await self.run(element.send_keys, text)

    async def click(self, css: str) -> None:
        await self.run((await self.find(css)).click)

    async def wait_for(self, predicate, what: str, timeout_s: float = 20.0):
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                last = await predicate()
                if last:
                    return last
            except Exception as exc:  # not there yet (a page still loading)
                last = exc
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: never within {timeout_s}s (last: {last!r})")

    async def screenshot(self, name: str, whole_page: bool = False) -> None:
        """Save what is on screen; `whole_page`: the window is made as tall as the page first."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        size = await self.run(self.driver.get_window_size)
        if whole_page:
            height = await self.js("return document.documentElement.scrollHeight")
            await self.run(self.driver.set_window_size, size["width"], min(height + 120, 6000))
        assert await self.run(self.driver.save_screenshot, str(ARTIFACTS / name))
        if whole_page:
            await self.run(self.driver.set_window_size, size["width"], size["height"])

    async def page_lang(self) -> str:
        return await self.js("return document.documentElement.lang")

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.quit()


@pytest.fixture(scope="module")
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def sign_in(browser: Browser, base_url: str, key: str) -> None:
    await browser.get(f"{base_url}/dashboard/sign-in?lang=ru")  # each test starts in Russian
    await browser.type_into("#api_key", key)
    await browser.click("form button[type=submit]")


async def sign_out(browser: Browser) -> None:
    await browser.click("nav form button")
    await browser.wait_for(lambda: browser.find("#api_key"), "the sign-in form after sign-out")


async def test_sign_in_search_english_keyboard_and_phone_width(browser, api, make_tenant, base_url):
    tenant = await make_tenant("Магазин <Ромашка>", levels=LEVELS)
    email = f"anna-{uuid.uuid4().hex[:6]}@example.com"
    status, body, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("ORDER-1", 5000, email=email)
    )
    assert status == 202, body
    # the session's first purchase may wait for the fresh worker's partitions (busy machine)
    await api.wait_for_customer(
        tenant["api_key"], lambda b: b["balance"]["total"] == 250, timeout_s=90, email=email
    )

    # not signed in: every page leads to the sign-in form, in Russian
    await browser.get(f"{base_url}/dashboard/customers")
    assert (await browser.run(lambda: browser.driver.current_url)).endswith("/dashboard/sign-in")
    assert await browser.page_lang() == "ru"
    assert await browser.text("h1") == "Вход в кабинет магазина"

    # a wrong key is refused, and says so
    await sign_in(browser, base_url, "kpk_not-the-shops-key")
    alert = await browser.wait_for(lambda: browser.text("[role=alert]"), "the refusal")
    assert "Ключ не подошёл" in alert
    await browser.screenshot("01-sign-in-refused.png")

    # the right key: the overview with the rules (read-only) and both charts
    await sign_in(browser, base_url, tenant["api_key"])
    await browser.wait_for(lambda: _h1_is(browser, "Обзор"), "the overview")
    assert "Магазин <Ромашка>" in await browser.text("header .shop")  # escaped, shown as text
    assert "Серебро" in await browser.text("dl")
    assert await browser.js("return document.querySelectorAll('#points-chart rect').length") == 60
    assert await browser.js("return document.querySelectorAll('#levels-chart rect').length") == 2
    assert await browser.js("return document.cookie") == ""  # session cookie is HttpOnly
    await browser.screenshot("02-overview.png")

    # find the customer by email: balance, level progress, ledger with reasons
    await browser.click("nav a[href='/dashboard/customers']")
    await browser.type_into("#q", email.upper())
    await browser.click("form[role=search] button")
    total = await browser.wait_for(lambda: browser.text("#balance-total"), "the balance")
    assert total == "250"
    assert await browser.text("#balance-active") == "250"
    assert "Серебро" in await browser.text("label[for=level-progress]")
    assert await browser.js("return document.getElementById('level-progress').value") == 50
    ledger = await browser.text("#ledger")
    assert "ORDER-1" in ledger and "purchase ORDER-1: 5% of 5000" in ledger and "+250" in ledger
    await browser.screenshot("03-customer.png")

    # live: a purchase posted through the webhook appears without a reload
    await browser.wait_for(
        lambda: browser.js("return !document.querySelector('.live-note').hidden"),
        "the event stream to open",
    )
    await browser.js("window.notReloaded = true")
    status, _, _ = await api.post_webhook(
        tenant["webhook_secret"], json=purchase("ORDER-2", 3000, email=email)
    )
    assert status == 202
    try:
        await browser.wait_for(
            lambda: _text_is(browser, "#balance-total", "400"), "the new balance, live", 60
        )
    except AssertionError:
        seen = await browser.js(
            "var p = document.getElementById('customer-panel');"
            " return [p.getAttribute('data-events-seen'), p.getAttribute('data-refreshed')]"
        )
        logs = await browser.run(browser.driver.get_log, "browser")
        raise AssertionError(f"not updated live; events seen, refreshed: {seen}; {logs}") from None
    fresh = await browser.text("#ledger tr.fresh")
    assert "ORDER-2" in fresh and "+150" in fresh
    assert await browser.js("return window.notReloaded === true")  # the same page, no reload
    assert (await browser.text("#ledger tbody tr:first-child")).find("ORDER-2") >= 0
    await browser.screenshot("04-live-update.png")

    # keyboard: the first Tab reaches the skip link, focus is visible
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    await browser.get(f"{base_url}/dashboard/customers?q={email}")
    await browser.run(lambda: ActionChains(browser.driver).send_keys(Keys.TAB).perform())
    focused = await browser.js(
        "const a = document.activeElement; const s = getComputedStyle(a);"
        " return [a.className, s.outlineStyle, s.outlineWidth]"
    )
    assert focused[0] == "skip" and focused[1] != "none" and focused[2] != "0px", focused
    await browser.run(lambda: ActionChains(browser.driver).send_keys(Keys.ENTER).perform())
    assert await browser.js("return document.activeElement.id") == "main"

    # a phone's width: nothing wider than the screen, the customer still readable
    await browser.run(browser.driver.set_window_size, 375, 812)
    await browser.get(f"{base_url}/dashboard/customers?q={email}")
    width = await browser.js(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1] <= 375, width
    assert await browser.text("#balance-total") == "400"
    await browser.screenshot("05-phone-375.png", whole_page=True)
    await browser.get(f"{base_url}/dashboard")
    width = await browser.js(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1] <= 375, width
    await browser.screenshot("09-phone-375-overview.png", whole_page=True)
    await browser.run(browser.driver.set_window_size, 1280, 1000)

    # English on request, remembered across pages
    await browser.click("header a.lang")
    await browser.wait_for(lambda: _h1_is(browser, "Overview"), "the English page")
    assert await browser.page_lang() == "en"
    await browser.click("nav a[href='/dashboard/webhooks']")
    await browser.wait_for(lambda: _h1_is(browser, "Incoming webhooks"), "English remembered")
    assert "accepted" in await browser.text("#webhooks")
    await browser.get(f"{base_url}/dashboard?lang=ru")
    await sign_out(browser)


async def test_refused_webhooks_show_their_reason(browser, api, make_tenant, base_url):
    tenant = await make_tenant()
    status, _, _ = await api.post_webhook(
        tenant["webhook_secret"],
        json={
            "action": "purchase",
            "payload": {"email": "x@example.com", "amount": -5, "orderId": "BAD-1"},
        },
    )
    assert status == 422
    await sign_in(browser, base_url, tenant["api_key"])
    await browser.wait_for(lambda: _h1_is(browser, "Обзор"), "the overview")
    await browser.get(f"{base_url}/dashboard/webhooks?status=rejected")
    table = await browser.wait_for(lambda: browser.text("#webhooks"), "the audit", 30)
    assert "payload.amount" in table and "отклонён" in table and "422" in table
    await browser.screenshot("06-webhooks-refused.png")
    await sign_out(browser)


async def test_a_dead_delivery_is_redelivered_from_the_dashboard(
    browser, api, make_tenant, base_url, receiver, db
):
    tenant = await make_tenant()
    path = f"/hooks/{uuid.uuid4().hex[:12]}"
    receiver.script(path, *[Answer(500)] * 4)  # four attempts fail: dead; the next succeeds
    status, created = await api.admin(
        "POST",
        f"tenants/{tenant['tenant_id']}/endpoints",
        {"url": receiver.base + path, "event_types": ["bonus_awarded"]},
    )
    assert status == 201, created
    await api.post_webhook(
        tenant["webhook_secret"], json=purchase("R-1", 1000, email="r@example.com")
    )
    await receiver.wait_for(path, 4)
    await _delivery_status(db, created["id"], "dead")

    await sign_in(browser, base_url, tenant["api_key"])
    await browser.wait_for(lambda: _h1_is(browser, "Обзор"), "the overview")
    await browser.click("nav a[href='/dashboard/outbound']")
    deliveries = await browser.wait_for(lambda: browser.text("#deliveries"), "the deliveries")
    assert "не доставлено" in deliveries and "bonus_awarded" in deliveries
    await browser.screenshot("07-outbound-dead.png")
    await browser.click("#deliveries button[data-delivery]")
    flash = await browser.wait_for(lambda: browser.text("[role=status]"), "the redelivery")
    assert "Поставлено в очередь: 1" in flash
    await receiver.wait_for(path, 5)
    assert receiver.received[path][-1].answered == 200
    await _delivery_status(db, created["id"], "succeeded")
    await browser.get(f"{base_url}/dashboard/outbound")
    assert "доставлено" in await browser.text("#deliveries")
    await browser.screenshot("08-outbound-redelivered.png")
    await sign_out(browser)


async def _h1_is(browser: Browser, text: str) -> bool:
    return await browser.text("h1") == text


async def _text_is(browser: Browser, css: str, text: str) -> bool:
    return await browser.text(css) == text


async def _delivery_status(db, endpoint_id: str, status: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await db.fetchval(
            "SELECT status FROM webhook_deliveries WHERE endpoint_id = $1", uuid.UUID(endpoint_id)
        )
        if found == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the delivery never became {status} (last: {found})")
