"""Grid groups: urgent cases and the daily summary, posted by the group's WeCom robot with the leader
@-mentioned, split to the robot's limits and queued in the outbox."""

from __future__ import annotations

from bot.app import FACTORY, SERVICES
from handlers.groups import post_daily_summaries
from storage.db import transaction
from tests.conftest import RESIDENT, RESIDENT_2, WeChat


async def robot_posts(wechat: WeChat) -> list[tuple[str, dict]]:
    return [(row.recipient, row.payload) for row in await wechat.outbox() if row.channel == "wecom_robot"]


async def test_urgent_case_is_posted_to_its_grid_group_with_the_leader_mentioned(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了")  # not urgent: no group post
    assert await robot_posts(wechat) == []
    wechat.clock.advance(minutes=10)
    await wechat.text(RESIDENT_2, "幸福里小区5号楼楼道里燃气泄漏了，味道很大，电话13812345678")
    [(key, payload)] = await robot_posts(wechat)
    assert key == "demo-robot-hp01"
    text = payload["text"]
    assert text["content"].startswith("【紧急工单】G20261122-0002") and "请 张伟 立即处理" in text["content"]
    assert "138****5678" in text["content"] and "13812345678" not in text["content"]
    # 张伟 has no WeCom account: he is @-mentioned by his phone.
    assert text["mentioned_mobile_list"] == ["13900002101"] and "mentioned_list" not in text


async def test_urgent_case_in_a_grid_without_a_robot_goes_to_the_nearest_group_above(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "锦绣花园6号楼着火了，冒烟")
    [(key, payload)] = await robot_posts(wechat)
    assert key == "demo-robot-ch"  # 春晖第二网格 has no group robot; 春晖社区 has
    assert payload["text"]["mentioned_list"] == ["wugang"]  # 吴刚 is on WeCom


async def test_daily_summary_is_posted_once_a_day_per_group_overdue_first(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了")
    wechat.clock.advance(days=8)  # past its 7-day deadline
    await wechat.text(RESIDENT_2, "春晖园小区噪音扰民")

    async def run() -> int:
        async with transaction(wechat.app[FACTORY]) as session:
            return await post_daily_summaries(session, services=wechat.app[SERVICES], now=wechat.clock.now())

    assert await run() == 2
    assert await run() == 0  # the same day again (another process, a restart): nothing twice
    posts = dict(await robot_posts(wechat))
    hp = posts["demo-robot-hp01"]["markdown"]["content"]
    assert hp.startswith("**和平里第一网格 每日工单汇总**") and '超期 <font color="warning">1</font> 件' in hp
    assert "G20261122-0001 已派遣 · 道路设施" in hp and "超期 张伟" in hp
    ch = posts["demo-robot-ch"]["markdown"]["content"]
    assert "> G20261130-0001 已派遣 · 噪音扰民 · 春晖园小区 限12月7日 10:00 周婷" in ch
    wechat.clock.advance(days=1)
    assert await run() == 2
