"""进展, 工单 and the 办结 photo: working a case in chat."""

from __future__ import annotations

from sqlmodel import select

from bot.app import FACTORY
from handlers import messages as m
from storage.cases import timeline
from storage.db import transaction
from storage.lifecycle import Status
from storage.models import Resident
from tests.conftest import LEADER_CH01, LEADER_HP01, RESIDENT, WeChat


async def test_progress_note_moves_the_case_on_and_reaches_the_resident(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    reply = await wechat.text(LEADER_HP01, "进展：已联系供电所，明天上午维修")
    [case] = await wechat.cases()
    assert reply is not None and f"已记录 {case.number} 的进展" in reply
    assert case.status == Status.IN_PROGRESS and case.accepted_at is not None
    await wechat.deliver()
    assert wechat.pushes_to(RESIDENT)[-1] == f"您反映的问题（{case.number}）有新进展：已联系供电所，明天上午维修"
    reply = await wechat.text(LEADER_HP01, "办结 已更换灯泡")  # the only open case: no number needed
    assert reply is not None and f"已办结 {case.number}" in reply


async def test_progress_without_a_note_asks_for_one(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    reply = await wechat.text(LEADER_HP01, "进展")
    assert reply is not None and "请写明进展" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED


async def test_progress_on_another_grids_case_is_refused(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text(LEADER_CH01, f"进展 {case.number} 在处理")
    assert reply is not None and "不在您负责的范围内" in reply


async def test_case_timeline_for_staff_masks_the_phone(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了，电话13812345678")
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, "接单")
    reply = await wechat.text(LEADER_HP01, f"工单 {case.number}")
    assert reply is not None and case.number in reply and "已接单" in reply
    assert "上报 居民" in reply and "接单 张伟" in reply and "派遣 系统" in reply
    assert "138****5678" in reply and "13812345678" not in reply and RESIDENT not in reply
    other = await wechat.text(LEADER_CH01, f"工单 {case.number}")
    assert other is not None and "不在您负责的范围内" in other and "路灯" not in other


async def test_photo_right_after_resolving_is_the_proof(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, f"办结 {case.number} 已更换灯泡")
    wechat.clock.advance(minutes=2)
    reply = await wechat.send(wechat.xml(LEADER_HP01, "image", {"PicUrl": "http://x/p.jpg", "MediaId": "proof1"}))
    assert reply is not None and f"照片已附到工单 {case.number}" in reply
    async with transaction(wechat.app[FACTORY]) as session:
        proof = [e for e in await timeline(session, case.id or 0) if e.action == "办结照片"]
    assert [e.media_id for e in proof] == ["proof1"]
    wechat.clock.advance(minutes=30)
    late = await wechat.send(wechat.xml(LEADER_HP01, "image", {"PicUrl": "http://x/q.jpg", "MediaId": "late"}))
    assert late is not None and "没有附到任何工单" in late
    assert len(await wechat.cases()) == 1  # a leader's photo never becomes a resident's report


DISPATCHER = "o_demo_wanglihua_xf"  # 王丽华, 幸福街道 调度员
LEADER_HP = "o_demo_zhangxiuying_hp"  # 张秀英, 和平里社区


async def test_return_goes_back_to_the_dispatcher_who_sends_it_on(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    missing = await wechat.text(LEADER_HP01, f"退回 {case.number}")
    assert missing is not None and "请写明原因" in missing
    reply = await wechat.text(LEADER_HP01, f"退回 {case.number} 这是春晖园的路灯，不在我们网格")
    assert reply is not None and "已退回" in reply and "王丽华" in reply
    [case] = await wechat.cases()
    assert case.status == Status.NEW
    await wechat.deliver()
    card = wechat.pushes_to(DISPATCHER)[-1]
    assert card.startswith("【退回】张伟退回：这是春晖园的路灯") and case.number in card
    reply = await wechat.text(DISPATCHER, f"派遣 {case.number} 春晖第一网格")
    assert reply is not None and "已派遣" in reply and "周婷" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED
    await wechat.deliver()
    assert case.number in wechat.pushes_to(LEADER_CH01)[-1]
    async with transaction(wechat.app[FACTORY]) as session:
        actions = [(e.action, e.note) for e in await timeline(session, case.id or 0)]
    assert ("退回", "这是春晖园的路灯，不在我们网格") in actions  # nobody bounces a case without a reason


async def test_escalate_hands_the_case_to_the_parent_level(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, "接单")
    reply = await wechat.text(LEADER_HP01, f"上报 {case.number} 需要供电公司协调，网格解决不了")
    assert reply is not None and "已上报" in reply and "和平里社区 张秀英" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP)[-1].startswith("【上报】张伟上报：需要供电公司协调")
    accepted = await wechat.text(LEADER_HP, f"接单 {case.number}")
    assert accepted is not None and "已接单" in accepted


async def test_dispatch_needs_a_known_grid_and_a_waiting_case(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text(DISPATCHER, f"派遣 {case.number} 火星网格")
    assert reply is not None and "请写明派往的网格" in reply
    reply = await wechat.text(DISPATCHER, f"派遣 {case.number} 春晖第一网格")
    assert reply is not None and "当前状态为“已派遣”" in reply


async def test_dispatcher_cannot_accept_and_other_grids_cannot_return(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text(DISPATCHER, f"接单 {case.number}")
    assert reply is not None and "“接单”须由负责的网格员操作" in reply
    reply = await wechat.text(LEADER_CH01, f"退回 {case.number} 不想管")
    assert reply is not None and "不在您负责的范围内" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED


async def test_a_leaders_pins_and_events_on_the_official_account_make_no_resident_and_no_case(wechat: WeChat) -> None:
    assert await wechat.location(LEADER_HP01, 39.926, 116.403, "幸福里小区") == m.STAFF_LOCATION_UNUSED
    follow = wechat.xml(LEADER_HP01, "event", {"Event": "subscribe", "EventKey": ""})
    assert await wechat.send(follow) == m.STAFF_HELP
    located = {"Event": "LOCATION", "Latitude": 39.926, "Longitude": 116.403, "Precision": 30}
    assert await wechat.send(wechat.xml(LEADER_HP01, "event", located)) is None
    async with transaction(wechat.app[FACTORY]) as session:
        assert (await session.exec(select(Resident))).all() == []
    assert await wechat.cases() == []
