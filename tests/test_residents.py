"""Residents after the report: rating (and 重办 on 不满意), remarks on their own case by number, and
what a flood or a blocked account gets."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from bot.app import FACTORY, create_app
from bot.config import Settings
from storage.db import transaction
from storage.lifecycle import Status
from storage.models import InboundMessage
from tests.conftest import LEADER_CH01, LEADER_HP01, RESIDENT, RESIDENT_2, FakeClock, WeChat

DISPATCHER = "o_demo_wanglihua_xf"  # 王丽华, 幸福街道 调度员
REPORT = "幸福里小区3号楼东侧路灯坏了"


async def resolved_case(wechat: WeChat) -> Any:
    await wechat.text(RESIDENT, REPORT)
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, f"办结 {case.number} 已更换灯泡")
    return case


@pytest.mark.parametrize(
    ("answer", "rating"), [("1", "满意"), ("满意", "满意"), ("2", "基本满意"), ("基本满意！", "基本满意")]
)
async def test_rating_closes_the_case(wechat: WeChat, answer: str, rating: str) -> None:
    case = await resolved_case(wechat)
    reply = await wechat.text(RESIDENT, answer)
    assert reply == f"感谢您的评价（{rating}）！工单 {case.number} 已结案。"
    [case] = await wechat.cases()
    assert case.status == Status.CLOSED and case.rating == rating and case.rated_at and case.closed_at


async def test_unsatisfied_rating_reopens_with_the_reason_and_a_new_deadline(wechat: WeChat) -> None:
    case = await resolved_case(wechat)
    wechat.clock.advance(hours=5)
    reply = await wechat.text(RESIDENT, "3，灯还是不亮")
    assert reply is not None and reply.startswith(
        f"很抱歉没有让您满意。工单 {case.number} 已重新交办给和平里第一网格 张伟"
    )
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED and case.reopen_count == 1 and case.rating == "不满意"
    assert case.resolved_at is None and case.due_at is not None and case.due_at > case.created_at.replace(day=29)
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01)[-1].startswith("【重办】居民评价不满意：灯还是不亮")
    await wechat.text(LEADER_HP01, "接单")
    await wechat.text(LEADER_HP01, "办结 更换了整个灯头")
    assert "已结案" in (await wechat.text(RESIDENT, "2") or "")
    [case] = await wechat.cases()
    assert case.status == Status.CLOSED and case.rating == "基本满意"


async def test_residents_who_reported_it_again_hear_of_the_reopening(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, REPORT)
    await wechat.text(RESIDENT_2, REPORT)  # the same problem again: RESIDENT_2 follows the case
    case = (await wechat.cases())[0]
    await wechat.text(LEADER_HP01, f"办结 {case.number} 已更换灯泡")
    await wechat.text(RESIDENT, "不满意")
    await wechat.deliver()
    assert wechat.pushes_to(RESIDENT_2)[-1] == f"您反映的问题（{case.number}）已重新交办给和平里第一网格 张伟处理。"
    assert not any("重新交办" in p for p in wechat.pushes_to(RESIDENT))  # told in the reply instead


async def test_a_report_starting_with_a_digit_is_not_a_rating(wechat: WeChat) -> None:
    await resolved_case(wechat)
    wechat.clock.advance(minutes=10)
    reply = await wechat.text(RESIDENT, "1号楼门口垃圾堆了好几天没人清")
    assert reply is not None and "感谢您的评价" not in reply
    first, second = await wechat.cases()
    assert first.status == Status.AWAITING_RATING and second.category == "市容环境"


async def test_rating_words_without_a_case_waiting_are_an_ordinary_message(wechat: WeChat) -> None:
    reply = await wechat.text(RESIDENT, "满意")
    assert reply is not None and "感谢您的评价" not in reply


async def test_only_the_reporter_rates(wechat: WeChat) -> None:
    case = await resolved_case(wechat)
    reply = await wechat.text(RESIDENT_2, "3 不行")
    assert reply is not None and "感谢" not in reply and "重新交办" not in reply
    assert (await wechat.cases())[0].status == Status.AWAITING_RATING
    assert case.number


async def test_remark_by_number_reaches_the_leader_only_from_the_cases_residents(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, REPORT)
    [case] = await wechat.cases()
    reply = await wechat.text(RESIDENT, f"{case.number} 晚上七点以后最黑，电话13812345678")
    assert reply == f"已补充到工单 {case.number}，已转告负责人。"
    await wechat.deliver()
    assert (
        wechat.pushes_to(LEADER_HP01)[-1]
        == f"【居民补充】工单 {case.number}：{case.number} 晚上七点以后最黑，电话138****5678"
    )
    wechat.clock.advance(minutes=10)
    other = await wechat.text(RESIDENT_2, f"{case.number} 这个也太慢了")
    assert other is not None and "已补充到工单" not in other


async def test_staff_commands_from_residents_are_refused_but_reports_that_start_alike_are_not(wechat: WeChat) -> None:
    for text in ("接单", "通过 G20261122-0001", "屏蔽 #1 广告"):
        reply = await wechat.text(RESIDENT, text)
        assert reply is not None and "是网格员的指令" in reply
    reply = await wechat.text(RESIDENT, "上报一个问题：幸福里小区3号楼东侧路灯坏了")
    assert reply is not None and reply.startswith("已受理：道路设施")


# --- abuse ---------------------------------------------------------------------------------------


async def test_a_flood_is_answered_once_and_makes_no_cases(wechat: WeChat) -> None:
    replies = [await wechat.text(RESIDENT, f"第{i}条：你们管不管") for i in range(12)]
    assert replies[8] == "您发送得太频繁了，请稍后再发。已发送的消息我们都已收到。"
    assert replies[9:] == [None, None, None]  # said once, then "success"
    assert len(await wechat.cases()) <= 1  # the first became a report; the rest were supplements or held
    async with transaction(wechat.app[FACTORY]) as session:
        stored = (await session.exec(select(InboundMessage).where(InboundMessage.sender == RESIDENT))).all()
    assert len(stored) == 12  # nothing lost
    wechat.clock.advance(minutes=2)
    assert (await wechat.text(RESIDENT, "春晖园小区噪音扰民") or "").startswith("已受理")


@pytest.fixture
async def capped(aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: Any) -> WeChat:
    strict = settings.model_copy(update={"resident_max_cases_per_hour": 2})
    return WeChat(await aiohttp_client(create_app(strict, clock=clock, background=False)), clock, fake_wechat, "")


async def test_new_cases_per_hour_are_capped(capped: WeChat) -> None:
    reports = ["幸福里小区3号楼东侧路灯坏了", "春晖园小区噪音扰民", "和平里南区2号楼楼道堆满杂物", "锦绣花园6号楼漏水"]
    replies = []
    for text in reports:
        replies.append(await capped.text(RESIDENT, text))
        capped.clock.advance(minutes=6)
    assert replies[2] is not None and replies[2].startswith("您近一小时已反映 2 个问题")
    assert replies[3] is None  # said once an hour
    assert len(await capped.cases()) == 2
    capped.clock.advance(hours=1)
    assert (await capped.text(RESIDENT, reports[3]) or "").startswith("已受理")


async def test_dispatcher_blocks_and_unblocks_the_reporter_of_a_case(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "加微信领红包 幸福里小区3号楼")
    [case] = await wechat.cases()
    assert await wechat.text(LEADER_HP01, f"屏蔽 {case.number} 广告") == "“屏蔽”须由调度员操作。"
    assert "请写明原因" in (await wechat.text(DISPATCHER, f"屏蔽 {case.number}") or "")
    reply = await wechat.text(DISPATCHER, f"屏蔽 {case.number} 多次发送广告")
    assert reply is not None and reply.startswith(f"已屏蔽 {case.number} 的反映人：多次发送广告")
    assert RESIDENT not in reply  # staff never see openids
    wechat.clock.advance(minutes=10)
    assert await wechat.text(RESIDENT, "春晖园小区噪音扰民") == "您的账号已被限制反映问题。如有疑问，请联系所在社区。"
    assert await wechat.text(RESIDENT, "锦绣花园6号楼漏水") is None
    assert len(await wechat.cases()) == 1
    assert await wechat.text(DISPATCHER, f"解除屏蔽 {case.number}") == f"已解除屏蔽 {case.number} 的反映人。"
    assert (await wechat.text(RESIDENT, "春晖园小区噪音扰民") or "").startswith("已受理")
    other = await wechat.text(LEADER_CH01, f"屏蔽 {case.number} 广告")
    assert other is not None and "不在您负责的范围内" in other


async def test_query_shows_residents_the_steps_but_not_the_offices_internal_reasons(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, REPORT)
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, "转派 #1 春晖园 这片路灯归春晖管")
    await wechat.text(LEADER_CH01, "拒收 #1 产权不清，别甩锅")
    await wechat.text(LEADER_HP01, "进展 已联系供电所，明天维修")
    await wechat.text(DISPATCHER, f"屏蔽 {case.number} 测试")
    await wechat.text(DISPATCHER, f"解除屏蔽 {case.number}")
    reply = await wechat.text(RESIDENT, f"查询 {case.number}")
    assert reply is not None and "转派" in reply and "拒收" in reply and "进展：已联系供电所，明天维修" in reply
    assert "别甩锅" not in reply and "春晖管" not in reply and "屏蔽" not in reply and "测试" not in reply
