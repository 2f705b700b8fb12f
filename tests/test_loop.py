"""The whole loop: resident reports → case routed → leader notified → 接单/办结 → resident told."""

from __future__ import annotations

from bot.app import FACTORY, SERVICES
from storage.cases import timeline
from storage.db import transaction
from storage.lifecycle import Status
from tests.conftest import (
    INSIDE_HP01,
    INSIDE_ZL02,
    LEADER_CH01,
    LEADER_HP01,
    LEADER_ZL,
    RESIDENT,
    RESIDENT_2,
    WeChat,
)


async def test_report_is_routed_accepted_resolved_and_resident_told(wechat: WeChat) -> None:
    reply = await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了好几天了")
    assert reply is not None and "已受理：道路设施" in reply and "和平里第一网格" in reply and "张伟" in reply
    [case] = await wechat.cases()
    assert case.number.startswith("G20261122-") and case.number in reply
    assert case.status == Status.DISPATCHED and case.category == "道路设施"
    await wechat.deliver()
    [card] = wechat.pushes_to(LEADER_HP01)
    assert case.number in card and "路灯坏了" in card and "接单 #1" in card and "办结时限：11月29日 10:00" in card

    reply = await wechat.text(LEADER_HP01, "接单")
    assert reply is not None and f"已接单 {case.number}" in reply
    await wechat.deliver()
    assert any("张伟接单" in p and case.number in p for p in wechat.pushes_to(RESIDENT))

    reply = await wechat.text(LEADER_HP01, f"办结 {case.number} 已更换灯泡，恢复照明")
    assert reply is not None and reply.startswith(f"已办结 {case.number}，已通知居民。")
    await wechat.deliver()
    assert "已办结：已更换灯泡，恢复照明" in wechat.pushes_to(RESIDENT)[-1]
    assert "请您评价：回复 1 满意" in wechat.pushes_to(RESIDENT)[-1]
    [case] = await wechat.cases()
    assert case.status == Status.AWAITING_RATING and case.accepted_at and case.resolved_at


async def test_missing_place_is_asked_for_and_a_pin_routes_the_same_case(wechat: WeChat) -> None:
    reply = await wechat.text(RESIDENT, "路灯不亮了，晚上很黑")
    assert reply is not None and "请问具体在哪里" in reply
    [case] = await wechat.cases()
    assert case.status == Status.NEW and case.grid_id is None

    reply = await wechat.location(RESIDENT, *INSIDE_HP01, label="幸福里小区南门")
    assert reply is not None and case.number in reply and "和平里第一网格" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED and case.lat == INSIDE_HP01[0] and case.place_text == "幸福里小区南门"
    await wechat.deliver()
    assert len(wechat.pushes_to(LEADER_HP01)) == 1


async def test_place_answered_in_words_attaches_to_the_same_case(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "楼道里堆满了杂物")
    reply = await wechat.text(RESIDENT, "在春晖园小区2号楼")
    [case] = await wechat.cases()
    assert reply is not None and case.number in reply and "春晖第一网格" in reply
    assert case.status == Status.DISPATCHED
    await wechat.deliver()
    assert len(wechat.pushes_to(LEADER_CH01)) == 1


async def test_unmappable_place_goes_to_the_street_for_manual_dispatch(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "路边井盖丢了")
    reply = await wechat.text(RESIDENT, "就在我家门口")
    assert reply is not None and "幸福街道人工派遣" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED and case.place_text == "就在我家门口"


async def test_pin_sent_first_is_used_for_the_following_report(wechat: WeChat) -> None:
    reply = await wechat.location(RESIDENT, *INSIDE_HP01)
    assert reply is not None and "请用文字说明" in reply
    reply = await wechat.text(RESIDENT, "这里的垃圾堆好几天没人清")
    assert reply is not None and "和平里第一网格" in reply


async def test_grid_without_leader_falls_back_to_its_community(wechat: WeChat) -> None:
    await wechat.location(RESIDENT, *INSIDE_ZL02)
    reply = await wechat.text(RESIDENT, "垃圾堆好几天没人清")
    assert reply is not None and "枣林社区" in reply and "陈静" in reply
    await wechat.deliver()
    assert len(wechat.pushes_to(LEADER_ZL)) == 1


async def test_resident_cannot_use_leader_commands(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text(RESIDENT_2, f"接单 {case.number}")
    assert reply is not None and "网格员的指令" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED  # unchanged, and no new case was made of the command


async def test_leader_of_another_grid_is_refused(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text(LEADER_CH01, f"接单 {case.number}")
    assert reply is not None and "不在您负责的范围内" in reply and "和平里第一网格" in reply
    reply = await wechat.text(LEADER_CH01, f"办结 {case.number} 已处理")
    assert reply is not None and "不在您负责的范围内" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED


async def test_leader_of_an_ancestor_grid_may_act(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text("o_demo_zhangxiuying_hp", f"接单 {case.number}")
    assert reply is not None and "已接单" in reply
    [case] = await wechat.cases()
    assert case.status == Status.ACCEPTED


async def test_several_open_cases_need_a_number(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    await wechat.text(RESIDENT_2, "幸福里小区垃圾堆好几天没人清")
    first, second = await wechat.cases()
    reply = await wechat.text(LEADER_HP01, "接单")
    assert reply is not None and "2 个" in reply and first.number in reply and second.number in reply
    reply = await wechat.text(LEADER_HP01, f"接单{second.number}")
    assert reply is not None and f"已接单 {second.number}" in reply


async def test_resolve_without_a_note_asks_for_one(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    reply = await wechat.text(LEADER_HP01, "办结")
    assert reply is not None and "请附上处理说明" in reply
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED


async def test_resolved_case_cannot_be_accepted_again(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, f"办结 {case.number} 已修好")
    reply = await wechat.text(LEADER_HP01, f"接单 {case.number}")
    assert reply is not None and "当前状态为“待评价”" in reply


async def test_photo_before_the_report_is_attached_to_it(wechat: WeChat) -> None:
    reply = await wechat.send(wechat.xml(RESIDENT, "image", {"PicUrl": "http://x/1.jpg", "MediaId": "m1"}))
    assert reply is not None and "已收到照片" in reply
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    reply = await wechat.send(wechat.xml(RESIDENT, "image", {"PicUrl": "http://x/2.jpg", "MediaId": "m2"}))
    [case] = await wechat.cases()
    assert reply is not None and case.number in reply
    async with transaction(wechat.app[FACTORY]) as session:
        media = [e.media_id for e in await timeline(session, case.id or 0) if e.media_id]
    assert media == ["m1", "m2"]


async def test_resident_query_lists_their_cases(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text(RESIDENT, "查询")
    assert reply is not None and case.number in reply and "已派遣" in reply
    reply = await wechat.text(RESIDENT_2, f"查询 {case.number}")
    assert reply is not None and "没有找到" in reply


async def test_voice_uses_wechat_recognition(wechat: WeChat) -> None:
    reply = await wechat.send(
        wechat.xml(RESIDENT, "voice", {"MediaId": "v1", "Format": "amr", "Recognition": "幸福里小区路灯坏了"})
    )
    assert reply is not None and "已受理：道路设施" in reply


async def test_case_whose_place_never_comes_goes_to_the_street_level(wechat: WeChat) -> None:
    from handlers.intake import dispatch_unplaced

    await wechat.text(RESIDENT, "路灯不亮了")
    services = wechat.app[SERVICES]
    async with transaction(wechat.app[FACTORY]) as session:
        assert await dispatch_unplaced(session, services=services, now=wechat.clock.now()) == 0  # still waiting
    wechat.clock.advance(minutes=31)
    async with transaction(wechat.app[FACTORY]) as session:
        assert await dispatch_unplaced(session, services=services, now=wechat.clock.now()) == 1
    async with transaction(wechat.app[FACTORY]) as session:
        assert await dispatch_unplaced(session, services=services, now=wechat.clock.now()) == 0  # once
    await wechat.deliver()
    [case] = await wechat.cases()
    assert case.status == Status.DISPATCHED
    assert any("人工派遣" in p for p in wechat.pushes_to(RESIDENT))
    assert len(wechat.pushes_to("o_demo_lijianguo_xf")) == 1  # 李建国, the street-level leader


async def test_urgent_report_is_flagged_in_the_push(wechat: WeChat) -> None:
    reply = await wechat.text(RESIDENT, "幸福里小区3号楼燃气泄漏了，味道很大")
    assert reply is not None and "119" in reply
    await wechat.deliver()
    [card] = wechat.pushes_to(LEADER_HP01)
    assert card.startswith("【紧急】")
