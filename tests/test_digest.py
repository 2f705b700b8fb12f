"""The daily digest, the weekly summary and undelivered pushes (未送达 / 重发), on a fake clock.

The clock starts on Sunday 2026-11-22 10:00 (office time); the digest goes out at 08:30 and the
weekly summary on Mondays at 09:00 (bot/data/policy.yaml)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.app import FACTORY, SERVICES
from handlers.digest import send_scheduled
from storage.db import transaction
from tests.conftest import LEADER_CH01, LEADER_HP, LEADER_HP01, RESIDENT, RESIDENT_2, WeChat

ZONE = ZoneInfo("Asia/Shanghai")
CITY = "o_demo_lijianguo_xf"  # 李建国, 幸福街道 leader
DISPATCHER = "o_demo_wanglihua_xf"  # 王丽华, 幸福街道 dispatcher
LAMP = "幸福里小区3号楼东侧路灯坏了"
GAS = "幸福里小区5号楼燃气泄漏，味道很大"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


async def run_scheduled(wechat: WeChat, when: str) -> int:
    """Move the clock to `when` and run the digest job once, as the scheduler does every minute."""
    wechat.clock.advance(seconds=(at(when) - wechat.clock.now()).total_seconds())
    async with transaction(wechat.app[FACTORY]) as session:
        sent = await send_scheduled(session, services=wechat.app[SERVICES], now=wechat.clock.now())
    await wechat.deliver()
    return sent


def digests_to(wechat: WeChat, openid: str) -> list[str]:
    return [t for t in wechat.pushes_to(openid) if t.startswith("【每日工单提醒】")]


def summaries_to(wechat: WeChat, openid: str) -> list[str]:
    return [t for t in wechat.pushes_to(openid) if "工单周报】" in t]


async def test_each_leader_gets_one_digest_a_day_with_overdue_cases_first(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)  # 7 days to 办结
    await wechat.text(RESIDENT_2, GAS)  # urgent: 2 hours to 办结
    await wechat.deliver()
    lamp, gas = await wechat.cases()

    assert await run_scheduled(wechat, "2026-11-23 08:29") == 0  # Monday, before the hour
    assert await run_scheduled(wechat, "2026-11-23 08:30") > 0
    [digest] = digests_to(wechat, LEADER_HP01)
    lines = digest.splitlines()
    assert lines[0] == "【每日工单提醒】11月23日　张伟，您好："
    assert lines[1] == "未办结 2 件：已超期 1 件，今日到期 0 件，待接单 2 件。"
    assert lines[2].startswith(f"#2 {gas.number} 已派遣") and lines[2].endswith("已超期20小时")
    assert lines[3].startswith(f"#1 {lamp.number} 已派遣") and lines[3].endswith("限11月29日 10:00")
    assert digests_to(wechat, LEADER_CH01) == []  # nothing waits for 周婷: no digest

    # Later the same day, and a second process: nothing more.
    assert await run_scheduled(wechat, "2026-11-23 08:31") == 0
    await run_scheduled(wechat, "2026-11-23 17:00")  # (the weekly summary goes out after 09:00)
    assert len(digests_to(wechat, LEADER_HP01)) == 1
    # The next morning: the next digest.
    await wechat.text(LEADER_HP01, f"接单 {gas.number}")
    assert await run_scheduled(wechat, "2026-11-24 08:30") > 0
    latest = digests_to(wechat, LEADER_HP01)[-1].splitlines()
    assert latest[0].startswith("【每日工单提醒】11月24日") and "待接单 1 件" in latest[1]


async def test_two_processes_send_the_digest_once(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await wechat.deliver()
    wechat.clock.advance(seconds=(at("2026-11-23 08:30") - wechat.clock.now()).total_seconds())

    async def one_process() -> int:
        async with transaction(wechat.app[FACTORY]) as session:
            return await send_scheduled(session, services=wechat.app[SERVICES], now=wechat.clock.now())

    results = await asyncio.gather(one_process(), one_process(), return_exceptions=True)
    await wechat.deliver()
    assert len(digests_to(wechat, LEADER_HP01)) == 1, results


async def test_no_digest_in_quiet_hours_and_a_late_start_still_sends_the_days_digest(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    assert await run_scheduled(wechat, "2026-11-22 23:00") == 0  # quiet hours: not at night
    assert await run_scheduled(wechat, "2026-11-23 06:00") == 0  # still quiet, and before the hour
    # The server was down at 08:30 and comes back at 11:00: the day's digest goes out then.
    assert await run_scheduled(wechat, "2026-11-23 11:00") > 0
    assert len(digests_to(wechat, LEADER_HP01)) == 1


async def test_the_dispatcher_hears_of_undispatched_cases_and_undelivered_pushes(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "路灯坏了")  # no place: waits for a dispatcher
    wechat.fake.fail_next(1, errcode=43004)  # the next push (the card to 张伟) can never be delivered
    await wechat.text(RESIDENT_2, LAMP)
    await wechat.deliver()
    assert await run_scheduled(wechat, "2026-11-23 08:30") > 0
    [digest] = digests_to(wechat, DISPATCHER)
    assert "待派遣工单 1 件" in digest and "有 1 条消息未能送达，回复「未送达」查看" in digest


async def test_undelivered_pushes_are_listed_for_the_dispatcher_and_can_be_sent_again(wechat: WeChat) -> None:
    wechat.fake.fail_next(1, errcode=43004)
    await wechat.text(RESIDENT, LAMP)
    await wechat.deliver()
    (case,) = await wechat.cases()
    assert wechat.pushes_to(LEADER_HP01) == []

    listing = await wechat.text(DISPATCHER, "未送达")
    assert listing is not None
    lines = listing.splitlines()
    assert lines[0] == "近 7 天未能送达的消息（1 条，最新的在前）："
    assert lines[1].endswith(f"工单 {case.number} → 张伟：对方已取消关注公众号（43004 fake failure）")
    assert "回复「重发」" in lines[-1]
    assert await wechat.text(LEADER_HP01, "未送达") == "“未送达”须由调度员操作。"
    # A community's dispatcher would see only their own community; the street sees everything.
    assert await wechat.text(DISPATCHER, "重发") == "已重新发送 1 条消息。"
    await wechat.deliver()
    [card] = wechat.pushes_to(LEADER_HP01)
    assert "路灯坏了" in card
    assert await wechat.text(DISPATCHER, "未送达") == "近 7 天没有未能送达的消息。"


async def test_the_weekly_summary_goes_to_each_community_and_the_street_once(wechat: WeChat) -> None:
    # Last week (Sunday): two reports in 和平里; one resolved on time and rated 满意.
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(RESIDENT_2, GAS)
    lamp, gas = await wechat.cases()
    await wechat.text(LEADER_HP01, f"接单 {lamp.number}")
    await wechat.text(LEADER_HP01, f"办结 {lamp.number} 已更换灯泡")
    await wechat.deliver()
    await wechat.text(RESIDENT, "1")  # 满意

    assert await run_scheduled(wechat, "2026-11-23 08:59") >= 0
    assert summaries_to(wechat, CITY) == []  # Monday, before 09:00
    await run_scheduled(wechat, "2026-11-23 09:00")
    [street] = summaries_to(wechat, CITY)
    assert street.splitlines() == [
        "【幸福街道 工单周报】11月16日—11月22日",
        "新收 2 件，办结 1 件（按期 1 件，100%），评价 1 件，满意 1 件（100%）；周末未办结 1 件，其中超期 1 件。",
        "和平里社区：新收 2 · 办结 1（按期 100%）· 满意 100% · 未办结 1 · 超期 1",
        "春晖社区：新收 0 · 办结 0（按期 —）· 满意 — · 未办结 0 · 超期 0",
        "枣林社区：新收 0 · 办结 0（按期 —）· 满意 — · 未办结 0 · 超期 0",
    ]
    assert summaries_to(wechat, DISPATCHER) == [street]  # the street's dispatcher too
    [community] = summaries_to(wechat, LEADER_HP)
    assert community.splitlines()[0] == "【和平里社区 工单周报】11月16日—11月22日"
    assert community.splitlines()[2].startswith("和平里第一网格：新收 2 · 办结 1")
    assert summaries_to(wechat, LEADER_HP01) == []  # a grid has nothing below it
    # Once a week, however often the job runs.
    await run_scheduled(wechat, "2026-11-24 09:00")
    await run_scheduled(wechat, "2026-11-29 21:00")
    assert len(summaries_to(wechat, CITY)) == 1
    await run_scheduled(wechat, "2026-11-30 09:00")
    assert len(summaries_to(wechat, CITY)) == 2
    assert summaries_to(wechat, CITY)[1].splitlines()[0] == "【幸福街道 工单周报】11月23日—11月29日"
