"""The console in a real browser: headless Chromium (Debian's package, driven by Playwright) on a
phone-sized screen — log in, find the case, resolve it, and keep a screenshot."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storage.lifecycle import Status
from tests.conftest import LEADER_HP01, RESIDENT, WeChat
from tests.test_console import PASSWORD, report, set_password

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")

PHONE = {"width": 390, "height": 844}
ZONE = ZoneInfo("Asia/Shanghai")


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


# The rates page ------------------------------------------------------------------------------------

LEADERS = {"hp01": LEADER_HP01, "hp02": "o_demo_zhaomin_hp02", "hp03": "o_demo_sunlei_hp03"}
# A week's work in 和平里社区: (grid, report, hours to 接单, hours to 办结, rating). The response
# deadline is 24 h (water: 2 h to answer, 24 h to resolve), so some answers and some fixes are late.
WEEK = [
    ("hp01", "幸福里小区{n}号楼东侧路灯坏了", 1, 6, "1"),
    ("hp02", "和平里北区12号楼门口垃圾没人清，第{n}次了", 3, 20, "1"),
    ("hp03", "和平里南区2号楼{n}单元楼道堆满杂物", 30, 30, "2"),
    ("hp02", "和平里北区{n}号楼停水了", 1, 30, "1"),
    ("hp01", "建设路{n}号井盖松动", 2, 48, "2"),
]


async def a_few_weeks(wechat: WeChat, weeks: int) -> None:
    """`weeks` weeks of cases worked through the chat, from Monday 11-23; the clock ends on the
    Tuesday after, so "last week" is the last of them. Later weeks go better than earlier ones."""
    start = datetime(2026, 11, 23, 9, 0, tzinfo=ZONE)
    n = 0
    for week in range(weeks):
        for day, (grid, text, accept, resolve, rating) in enumerate(WEEK[: 3 + week]):  # 3, 4, 5, 5 …
            if week >= 3 and accept > 24:
                accept = 2  # the street office's pressure shows
            n += 1
            resident = f"o_resident_{n:03d}"
            wechat.clock.advance(seconds=(start + timedelta(days=7 * week + day) - wechat.clock.now()).total_seconds())
            await wechat.text(resident, text.format(n=n % 9 + 1))
            if week == weeks - 1 and day == len(WEEK) - 1:
                break  # the last report of the last week is still waiting for 接单
            wechat.clock.advance(hours=accept)
            await wechat.text(LEADERS[grid], "接单")
            wechat.clock.advance(hours=resolve)
            await wechat.text(LEADERS[grid], "办结 已处理")
            wechat.clock.advance(hours=1)
            await wechat.text(resident, rating if (week, day) != (1, 2) else "3 还是很乱")
            if (week, day) == (1, 2):  # reopened: the leader fixes it again, the resident is content
                await wechat.text(LEADERS[grid], "接单")
                wechat.clock.advance(hours=5)
                await wechat.text(LEADERS[grid], "办结 已再次清理")
                await wechat.text(resident, "2")
    end = start + timedelta(days=7 * weeks + 1, hours=1)  # Tuesday 10:00
    wechat.clock.advance(seconds=(end - wechat.clock.now()).total_seconds())


async def test_a_community_sees_its_rates_and_charts_on_a_phone(wechat: WeChat, tmp_path: Path) -> None:
    await a_few_weeks(wechat, weeks=5)
    cases = await wechat.cases()
    assert len(cases) == 22 and sum(c.status == Status.DISPATCHED for c in cases) == 1
    await set_password(wechat, "hp_leader")  # 张秀英, 和平里社区
    base = str(wechat.client.make_url("")).rstrip("/")
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True)
            await page.goto(f"{base}/console/login")
            await page.fill("#key", "hp_leader")
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/cases")
            await page.click("header nav >> text=统计")
            await page.wait_for_url("**/console/rates")
            assert "和平里社区 2026-12-21 至 2026-12-27" in (await page.text_content("main") or "")
            # The charts are drawn, and their marks carry the figures.
            trend = await page.locator("#trend-chart .point title").all_text_contents()
            assert "和平里社区 12-21 响应率 80.0%（4/5）" in trend  # the last report is not answered
            assert "和平里社区 12-14 响应率 100.0%（5/5）" in trend
            assert "和平里社区 11-23 响应率 66.7%（2/3）" in trend  # 和平里第三网格 answered after 30 h
            received = await page.locator("#received-chart rect.bar title").all_text_contents()
            assert len(received) == 5 and received[-1] == "和平里社区 12-21 受理 5 件"  # since the first case
            nodes = await page.locator("#node-chart rect.bar title").all_text_contents()
            assert "和平里第二网格 按期办结率 50.0%（1/2）" in nodes
            bar = await page.locator("#node-chart rect.bar").first.bounding_box()
            assert bar is not None and bar["width"] > 100  # drawn to scale, not collapsed
            # A phone shows it all without scrolling sideways; the wide table scrolls inside its box.
            assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            shot = tmp_path / "console-rates.png"
            await page.screenshot(path=str(shot), full_page=True)
            # The selector: another grid of the community, then a month.
            await page.select_option("#node", "xf-hp-02")
            await page.click("form.filters button")
            await page.wait_for_url("**/console/rates?**node=xf-hp-02**")
            assert "和平里第二网格 2026-12-21 至 2026-12-27" in (await page.text_content("main") or "")
            assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        finally:
            await browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    keep_screenshot(shot)


def keep_screenshot(shot: Path) -> None:
    """A copy for people to look at, when GRIDBOT_SCREENSHOT_DIR names a folder."""
    keep = os.environ.get("GRIDBOT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
