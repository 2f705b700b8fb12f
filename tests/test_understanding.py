"""Residents write in pieces, twice, in danger, with phone numbers: what the bot makes of it."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from bot.app import FACTORY
from storage.db import transaction
from storage.lifecycle import Status
from storage.models import LabelledExample
from tests.conftest import INSIDE_HP01, LEADER_CH01, LEADER_HP01, RESIDENT, RESIDENT_2, WeChat

STREET_LEADER = "o_demo_lijianguo_xf"
INSIDE_CH01 = (39.92625, 116.42250)


async def test_confirmation_is_a_one_line_summary(wechat: WeChat) -> None:
    reply = await wechat.text(RESIDENT, "幸福里小区三号楼东侧路灯坏了好几天了")
    [case] = await wechat.cases()
    assert reply is not None
    assert reply.splitlines()[0] == f"已受理：道路设施 · 幸福里小区3号楼东侧 · 编号 {case.number}"


async def test_text_photo_and_pin_within_minutes_are_one_case(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    wechat.clock.advance(minutes=1)
    await wechat.send(wechat.xml(RESIDENT, "image", {"PicUrl": "http://x/1.jpg", "MediaId": "m1"}))
    wechat.clock.advance(minutes=1)
    reply = await wechat.location(RESIDENT, *INSIDE_HP01, label="幸福里小区南门")
    wechat.clock.advance(minutes=1)
    more = await wechat.text(RESIDENT, "晚上走路很危险，路灯一直不亮")
    [case] = await wechat.cases()
    assert reply is not None and "已补充定位" in reply and case.number in reply
    assert more is not None and "已补充到工单" in more
    assert case.lat == INSIDE_HP01[0] and "一直不亮" in case.description


async def test_pin_wins_over_text_and_moves_an_unaccepted_case(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区门口垃圾堆好几天没人清")
    reply = await wechat.location(RESIDENT, *INSIDE_CH01)  # actually standing in 春晖第一网格
    [case] = await wechat.cases()
    assert reply is not None and "春晖第一网格" in reply
    assert case.status == Status.DISPATCHED and case.place_text == "幸福里小区门口"  # text kept as description
    await wechat.deliver()
    assert len(wechat.pushes_to(LEADER_CH01)) == 1
    assert "已改派给春晖第一网格" in wechat.pushes_to(LEADER_HP01)[-1]


async def test_same_problem_reported_again_is_linked_and_both_are_told(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区3号楼路灯坏了")
    reply = await wechat.text(RESIDENT_2, "幸福里三号楼的路灯不亮了")
    original, repeat = await wechat.cases()
    assert reply is not None and "已有居民反映" in reply and original.number in reply
    assert repeat.status == Status.DUPLICATE and repeat.duplicate_of_id == original.id
    await wechat.deliver()
    assert len(wechat.pushes_to(LEADER_HP01)) == 1  # one card, not two
    await wechat.text(LEADER_HP01, f"接单 {original.number}")
    await wechat.deliver()
    assert any("接单" in p for p in wechat.pushes_to(RESIDENT))
    assert any("接单" in p for p in wechat.pushes_to(RESIDENT_2))
    status = await wechat.text(RESIDENT_2, f"查询 {original.number}")
    assert status is not None and "已接单" in status


async def test_pins_within_200_m_are_the_same_report(wechat: WeChat) -> None:
    await wechat.location(RESIDENT, *INSIDE_HP01)
    await wechat.text(RESIDENT, "这里的井盖丢了")
    await wechat.location(RESIDENT_2, INSIDE_HP01[0] + 0.001, INSIDE_HP01[1])  # about 110 m north
    reply = await wechat.text(RESIDENT_2, "路上井盖没了很危险")
    assert reply is not None and "已有居民反映" in reply


async def test_other_category_at_the_same_place_is_a_new_case(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区3号楼路灯坏了")
    reply = await wechat.text(RESIDENT_2, "幸福里小区3号楼楼上装修噪音太大")
    assert reply is not None and "已受理：噪音扰民" in reply
    assert [c.status for c in await wechat.cases()] == [Status.DISPATCHED, Status.DISPATCHED]


async def test_old_case_is_not_a_duplicate_after_72_hours(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区3号楼路灯坏了")
    wechat.clock.advance(hours=73)
    reply = await wechat.text(RESIDENT_2, "幸福里小区3号楼路灯坏了")
    assert reply is not None and "已受理" in reply


async def test_urgent_report_without_a_place_is_routed_at_once_then_moved(wechat: WeChat) -> None:
    reply = await wechat.text(RESIDENT, "楼下燃气泄漏了，味道很大")
    assert reply is not None and "【紧急】" in reply and "已立即转幸福街道" in reply
    await wechat.deliver()
    assert wechat.pushes_to(STREET_LEADER)[0].startswith("【紧急】")
    reply = await wechat.text(RESIDENT, "在幸福里小区5号楼")
    [case] = await wechat.cases()
    assert reply is not None and "和平里第一网格" in reply
    assert case.status == Status.DISPATCHED and case.urgent
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01)[0].startswith("【紧急】")


async def test_phone_is_kept_and_masked_in_the_push(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了，有事打我电话 138 1234 5678")
    await wechat.deliver()
    [card] = wechat.pushes_to(LEADER_HP01)
    assert "138****5678" in card and "12345678" not in card.replace("138****5678", "")


async def test_low_confidence_is_flagged_and_a_correction_is_learned(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区那边有个情况想反映一下")
    await wechat.deliver()
    [card] = wechat.pushes_to(LEADER_HP01)
    assert "待确认" in card
    [case] = await wechat.cases()
    bad = await wechat.text(LEADER_HP01, f"改类 {case.number} 外星人")
    assert bad is not None and "可选类别" in bad
    reply = await wechat.text(LEADER_HP01, f"改类 {case.number} 矛盾纠纷")
    assert reply is not None and "改为“矛盾纠纷”" in reply
    [case] = await wechat.cases()
    assert case.category == "矛盾纠纷" and case.confidence == 1.0
    async with transaction(wechat.app[FACTORY]) as session:
        [example] = (await session.exec(select(LabelledExample))).all()
    assert example.category == "矛盾纠纷" and "有个情况" in example.text


async def test_leader_of_another_grid_cannot_reclassify(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    reply = await wechat.text(LEADER_CH01, f"改类 {case.number} 市容环境")
    assert reply is not None and "不在您负责的范围内" in reply


async def test_query_shows_the_timeline_to_the_reporter_only(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, "幸福里小区路灯坏了")
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, "接单")
    reply = await wechat.text(RESIDENT, f"查询 {case.number}")
    assert reply is not None and "派遣" in reply and "接单" in reply and "张伟" in reply
    assert "路灯坏了" not in reply.splitlines()[1]  # the resident's own words are not echoed
    other = await wechat.text(RESIDENT_2, f"查询 {case.number}")
    assert other is not None and "没有找到" in other


async def test_traditional_characters_are_understood(wechat: WeChat) -> None:
    reply = await wechat.text(RESIDENT, "幸福里小區3號樓的電梯壞了")
    assert reply is not None and "已受理：物业管理" in reply and "和平里第一网格" in reply


async def test_photos_are_fetched_into_local_storage(with_media: WeChat, tmp_path: Path) -> None:
    await with_media.text(RESIDENT, "幸福里小区路灯坏了")
    await with_media.send(with_media.xml(RESIDENT, "image", {"PicUrl": "http://x/1.jpg", "MediaId": "photo_1"}))
    await with_media.send(with_media.xml(RESIDENT, "image", {"PicUrl": "http://x/2.jpg", "MediaId": "missing_2"}))
    await with_media.deliver()
    saved = tmp_path / "media" / "photo_1.jpg"
    assert saved.read_bytes().startswith(b"\xff\xd8") and b"photo_1" in saved.read_bytes()
    parked = [r for r in await with_media.outbox() if r.status == "parked"]
    assert [r.payload["media_id"] for r in parked] == ["missing_2"]  # WeChat no longer has it: 40007
