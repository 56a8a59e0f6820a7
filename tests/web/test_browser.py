"""End to end in a real headless Chromium (Debian's `chromium`, driven by
Playwright; no browser is downloaded): sign in, create a feed link, copy it,
rotate it (the old URL answers 404), invite a staff member and read the
email at a real SMTP server (aiosmtpd). A second run does the same actions
with JavaScript switched off. The staff page's screenshot is kept in
test-artifacts/ (and, with CALBRIDGE_README_SCREENSHOT=path, for the README).

The browser flow runs on SQLite only; every console action is also tested
through aiohttp_client on SQLite and PostgreSQL (test_pages, test_invite).
Install: `apt-get install -y chromium` and `pip install playwright`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from bridge.app import create_app
from bridge.config import Settings
from bridge.db.engine import Database
from bridge.demo import load_demo
from tests.conftest import ROOT, make_settings
from tests.web.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "calbridge.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
async def server(db_url: str, tmp_path: Path, smtp_server: Any) -> AsyncIterator[dict[str, Any]]:
    """The whole server on a real port, demo data loaded, mail to aiosmtpd."""
    import bridge.web.demo  # noqa: F401  (the demo admin)

    port = free_port()
    settings: Settings = make_settings(
        db_url, tmp_path, server={"public_url": f"http://127.0.0.1:{port}"},
        smtp={"port": smtp_server.port, "from_address": "Demo Clinic <calendar@demo.example.com>"},
        sync={"enabled": False})
    db = Database(settings.database)
    info = load_demo(db, settings)
    db.sync_engine.dispose()
    email, password = info["admin_console"].split("sign in as ")[1].rstrip(")").split(" / ")
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield {"base": f"http://127.0.0.1:{port}", "email": email, "password": password,
           "inbox": smtp_server}
    await runner.cleanup()


@pytest.fixture
def chromium_path() -> str:
    assert os.path.exists(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=chromium_path, args=ARGS,
                                           headless=True)
        yield chromium
        await chromium.close()


async def fetch_status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        await response.read()
        return response.status


async def sign_in(page: Page, base: str, email: str, password: str) -> None:
    await page.goto(f"{base}/admin/staff")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Staff")).to_be_visible()


async def test_admin_console_in_a_real_browser(
    server: dict[str, Any], browser: Browser
) -> None:
    base = server["base"]
    context = await browser.new_context(viewport={"width": 1280, "height": 1100},
                                        locale="en-GB", timezone_id="Europe/Paris")
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = await context.new_page()
    await sign_in(page, base, server["email"], server["password"])
    await expect(page.get_by_role("link", name="Anna Müller")).to_be_visible()

    await page.get_by_role("link", name="Anna Müller").click()
    await expect(page.get_by_role("heading", name="Anna Müller")).to_be_visible()
    links_before = await page.locator("li.feed").count()
    await page.locator("form.create-feed select[name=privacy]").select_option("limited")
    await page.locator("form.create-feed input[name=label]").fill("Work phone")
    await page.get_by_role("button", name="Create feed link").click()
    await expect(page.get_by_role("status")).to_have_text("Feed link created.")
    new = page.locator("li.feed", has_text="Work phone")
    await expect(new).to_have_count(1)
    assert await page.locator("li.feed").count() == links_before + 1

    await new.get_by_role("button", name="Copy").click()
    await expect(new.get_by_role("button", name="Copied")).to_be_visible()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == await new.locator("input.feed-url").input_value()
    assert copied.startswith(f"{base}/feeds/") and copied.endswith(".ics")
    assert await new.get_by_role("link", name="Apple Calendar").get_attribute("href") == \
        "webcal://" + copied.split("://", 1)[1]
    assert await fetch_status(copied) == 200

    await new.get_by_role("link", name="Rotate…").click()
    await expect(page.get_by_role("heading", name="Rotate this feed link?")).to_be_visible()
    await page.get_by_role("button", name="Rotate link").click()
    await expect(page.get_by_role("status")).to_contain_text("the old URL no longer works")
    rotated = await page.locator("li.feed", has_text="Work phone").locator(
        "input.feed-url").input_value()
    assert rotated != copied
    assert await fetch_status(copied) == 404
    assert await fetch_status(rotated) == 200

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "console-staff.png"), full_page=True)
    readme_shot = os.environ.get("CALBRIDGE_README_SCREENSHOT")
    if readme_shot:
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=readme_shot, clip={"x": 0, "y": 0, "width": 1280, "height": 980})

    await page.get_by_role("link", name="Invite by email…").click()
    await expect(page.get_by_role("heading", name="Invite Anna Müller")).to_be_visible()
    await page.get_by_label("Subject").fill("Your Demo Health Clinic calendar, Anna")
    body = await page.get_by_label("Message").input_value()
    await page.get_by_label("Message").fill(body.replace("Hello Anna,", "Hello Anna, welcome!"))
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status")).to_have_text("Invitation sent.")
    await expect(page.locator("ol.changes")).to_contain_text("sent an invitation to Anna Müller")

    [msg] = server["inbox"].messages
    assert msg["To"] == "Anna Müller <anna@demo.example.com>"
    assert msg["Subject"] == "Your Demo Health Clinic calendar, Anna"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "Hello Anna, welcome!" in text
    assert "Username: anna@demo.example.com" in text and f"{base}/dav/" in text
    assert "https://calendar.google.com/calendar/render?cid=webcal" in text
    assert "https://outlook.live.com/calendar/0/addfromweb?url=webcal" in text
    assert copied not in text and copied not in html  # the rotated-away URL is gone
    feed_url = next(w for w in text.split() if w.startswith(f"{base}/feeds/"))
    assert f'<a href="{feed_url}">' in html
    assert await fetch_status(feed_url) == 200

    await page.get_by_role("link", name="Recent changes").click()
    await page.get_by_label("Made in").select_option("admin")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("ol.changes li").first).to_contain_text(
        "sent an invitation to Anna Müller")
    await context.close()


async def test_every_action_works_without_javascript(
    server: dict[str, Any], browser: Browser
) -> None:
    base = server["base"]
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await sign_in(page, base, server["email"], server["password"])
    await page.get_by_label("Search").fill("chlo")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("table.list tbody tr")).to_have_count(1)
    await page.get_by_role("link", name="Chloé Durand").click()
    await expect(page.get_by_role("button", name="Copy")).to_have_count(0)  # JS only
    await page.locator("form.create-feed input[name=label]").fill("No-JS link")
    await page.get_by_role("button", name="Create feed link").click()
    link = page.locator("li.feed", has_text="No-JS link")
    url = await link.locator("input.feed-url").input_value()
    await link.get_by_role("link", name="Revoke…").click()
    await page.get_by_role("button", name="Revoke link").click()
    await expect(page.get_by_role("status")).to_contain_text("Feed link revoked")
    assert await fetch_status(url) == 404

    await page.locator("#app-passwords input[name=label]").fill("Laptop")
    await page.get_by_role("button", name="Create app password").click()
    password = await page.locator("#new-app-password").input_value()
    assert len(password) == 27
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(f"{base}/admin/changes")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await context.close()
