"""The console in a real browser: headless Chromium (Debian's package, driven by Playwright) on a
phone-sized screen — log in, find the case, resolve it, and keep a screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storage.lifecycle import Status
from tests.conftest import RESIDENT, WeChat
from tests.test_console import PASSWORD, report, set_password

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")

PHONE = {"width": 390, "height": 844}


async def test_a_leader_resolves_a_case_on_a_phone(wechat: WeChat, tmp_path: Path) -> None:
    case = await report(wechat)
    await set_password(wechat, "hp01_leader")
    base = str(wechat.client.make_url("")).rstrip("/")
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True)
            await page.goto(f"{base}/console/cases")
            assert page.url.endswith("/console/login")
            await page.fill("#key", "hp01_leader")
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/cases")
            await page.click(f"text={case.number}")
            await page.wait_for_url(f"**/console/cases/{case.number}")
            # One column on a phone: the page is no wider than the screen.
            assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            await page.fill("#resolve-note", "已更换灯泡")
            await page.click("form[action$='/resolve'] button")
            await page.wait_for_selector("#reply")
            assert f"已办结 {case.number}" in (await page.text_content("#reply") or "")
            shot = tmp_path / "console-case-resolved.png"
            await page.screenshot(path=str(shot), full_page=True)
        finally:
            await browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert (await wechat.cases())[-1].status == Status.AWAITING_RATING
    await wechat.deliver()
    assert "已办结：已更换灯泡" in wechat.pushes_to(RESIDENT)[-1]
