"""Working a case in chat, end to end through the signed webhook: 转派, 挂起, 延期, 核查, 重复, 不属实,
and the short references (#N) printed on case cards."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.app import FACTORY, SERVICES
from handlers.holds import wake_suspended
from storage.cases import timeline
from storage.db import transaction
from storage.lifecycle import Status
from storage.models import Case
from tests.conftest import LEADER_CH01, LEADER_HP, LEADER_HP01, RESIDENT, RESIDENT_2, WeChat

WATER = "o_demo_qianwei_water"  # 钱伟, 供水服务站 (a department)
INSPECTOR = "o_demo_heping_hp"  # 何平, 和平里社区 核查员


async def report(wechat: WeChat, text: str = "幸福里小区3号楼东侧路灯坏了", who: str = RESIDENT) -> Case:
    await wechat.text(who, text)
    return (await wechat.cases())[-1]


async def current(wechat: WeChat, case: Case) -> Case:
    return next(c for c in await wechat.cases() if c.id == case.id)


async def actions(wechat: WeChat, case: Case) -> list[tuple[str, str | None]]:
    async with transaction(wechat.app[FACTORY]) as session:
        return [(e.action, e.note) for e in await timeline(session, case.id or 0)]


# --- 转派: first-receiver ownership ---------------------------------------------------------------


async def test_transfer_to_a_department_stays_with_the_first_receiver_until_taken(wechat: WeChat) -> None:
    case = await report(wechat, "幸福里小区3号楼停水了")
    await wechat.text(LEADER_HP01, "接单")
    reply = await wechat.text(LEADER_HP01, "转派 #1 供水 小区总阀门坏了，归供水站维修")
    assert reply == f"已转派 {case.number} 给供水服务站 钱伟。对方接收前仍由您负责（首接负责）。"
    case = await current(wechat, case)
    assert case.status == Status.TRANSFERRING and case.assignee_id is not None
    mine = await wechat.text(LEADER_HP01, "我的工单")
    assert mine is not None and case.number in mine and "转派中" in mine  # still the owner's
    await wechat.deliver()
    card = wechat.pushes_to(WATER)[-1]
    assert card.startswith("【转派】张伟转派：小区总阀门坏了，归供水站维修") and "回复“接单 #1”接收" in card

    reply = await wechat.text(WATER, "接单")
    assert reply is not None and reply.startswith(f"已接收 {case.number}")
    case = await current(wechat, case)
    assert case.status == Status.ACCEPTED and case.transfer_to_id is None
    assert wechat.app[SERVICES].grids.refs[case.grid_id].name == "供水服务站"
    await wechat.deliver()
    assert wechat.pushes_to(RESIDENT)[-1] == f"您反映的问题（{case.number}）已转由供水服务站处理。"
    assert wechat.pushes_to(LEADER_HP01)[-1] == f"工单 {case.number} 已由供水服务站 钱伟接收，您无需再处理。"
    done = await wechat.text(WATER, "办结 已更换总阀门")
    assert done is not None and done.startswith(f"已办结 {case.number}")


async def test_refused_transfer_goes_back_to_the_owner_with_the_reason(wechat: WeChat) -> None:
    case = await report(wechat, "幸福里小区3号楼停水了")
    await wechat.text(LEADER_HP01, "转派 #1 供水 总阀门坏了")
    missing = await wechat.text(WATER, "拒收")
    assert missing is not None and "请写明原因" in missing
    reply = await wechat.text(WATER, f"退回 {case.number} 是楼内管道，归物业")  # 退回 from the target = 拒收
    assert reply == f"已拒收 {case.number}，交还张伟继续处理。"
    case = await current(wechat, case)
    assert case.status == Status.ACCEPTED and case.transfer_grid_id is None
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01)[-1].startswith("【转派被拒】钱伟拒收：是楼内管道，归物业")
    assert ("拒收", "是楼内管道，归物业") in await actions(wechat, case)


async def test_transfer_needs_a_known_target_and_a_reason(wechat: WeChat) -> None:
    case = await report(wechat)
    for text in ("转派 #1", "转派 #1 供水", "转派 #1 火星 不归我们"):
        reply = await wechat.text(LEADER_HP01, text)
        assert reply is not None and "请写明转派去向和原因" in reply and "城管执法中队" in reply
    same = await wechat.text(LEADER_HP01, "转派 #1 幸福里 不归我们")
    assert same == f"工单 {case.number} 已在和平里第一网格，无需转派。"
    to_grid = await wechat.text(LEADER_HP01, "转派 #1 春晖园 路灯产权属春晖园")
    assert to_grid == f"已转派 {case.number} 给春晖第一网格 周婷。对方接收前仍由您负责（首接负责）。"
    stranger = await wechat.text(WATER, f"接单 {case.number}")
    assert stranger is not None and "不在您负责的范围内" in stranger
    taken = await wechat.text(LEADER_CH01, "接收")
    assert taken is not None and taken.startswith(f"已接收 {case.number}")


# --- 挂起 -----------------------------------------------------------------------------------------


async def test_suspended_case_wakes_on_its_date_and_its_leader_is_told(wechat: WeChat) -> None:
    case = await report(wechat)
    early = await wechat.text(LEADER_HP01, "挂起 到12月1日 等待路灯配件")
    assert early == f"工单 {case.number} 当前状态为“已派遣”，不能挂起。"  # accept it first
    await wechat.text(LEADER_HP01, "接单")
    assert "晚于今天" in (await wechat.text(LEADER_HP01, "挂起 到11月20日 等配件") or "")
    assert "请写明挂起到哪天和原因" in (await wechat.text(LEADER_HP01, "挂起 到12月1日") or "")
    reply = await wechat.text(LEADER_HP01, "挂起 到12月1日 等待路灯配件")
    assert reply is not None and reply.startswith(f"已挂起 {case.number} 到 12月1日")
    case = await current(wechat, case)
    assert case.status == Status.SUSPENDED
    assert case.suspended_until == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 12月1日 00:00 in Shanghai
    await wechat.deliver()
    told = f"您反映的问题（{case.number}）暂缓处理：等待路灯配件。预计 12月1日 恢复处理。"
    assert wechat.pushes_to(RESIDENT)[-1] == told
    blocked = await wechat.text(LEADER_HP01, f"进展 {case.number} 配件到了一半")
    assert blocked == f"工单 {case.number} 当前状态为“挂起”，不能进展。"

    async def wake() -> int:
        async with transaction(wechat.app[FACTORY]) as session:
            return await wake_suspended(session, services=wechat.app[SERVICES], now=wechat.clock.now())

    wechat.clock.advance(days=8, hours=13)  # 11-30 23:00 in Shanghai: not yet
    assert await wake() == 0
    wechat.clock.advance(hours=1)
    assert await wake() == 1
    assert await wake() == 0  # once
    case = await current(wechat, case)
    assert case.status == Status.IN_PROGRESS and case.suspended_until is None
    await wechat.deliver()
    # Nine days since the leader last wrote: outside WeChat's 48 h window, and no template message
    # configured, so the notice waits for the leader's next message (bot/delivery.py).
    assert not wechat.pushes_to(LEADER_HP01)[-1].startswith("【恢复】")
    await wechat.text(LEADER_HP01, "我的工单")
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01)[-1].startswith("【恢复】挂起到期（等待路灯配件），请继续处理。")


async def test_leader_resumes_a_suspended_case_early(wechat: WeChat) -> None:
    case = await report(wechat)
    await wechat.text(LEADER_HP01, "接单")
    await wechat.text(LEADER_HP01, "挂起 3天 等天晴施工")
    assert await wechat.text(LEADER_HP01, "恢复") == f"已恢复处理 {case.number}。"
    assert (await current(wechat, case)).status == Status.IN_PROGRESS


# --- 延期 -----------------------------------------------------------------------------------------


async def test_extension_is_decided_by_the_level_above_and_the_resident_told(wechat: WeChat) -> None:
    case = await report(wechat)
    await wechat.text(LEADER_HP01, "接单")
    not_later = await wechat.text(LEADER_HP01, "延期 到11月25日 施工队排期")
    assert not_later == "延期后的时限须晚于现在的办结时限 11月29日 10:00。"
    reply = await wechat.text(LEADER_HP01, "延期 到12月10日 施工队排期")
    assert reply == f"已提交延期申请（{case.number} 延至 12月10日 23:59），等待张秀英审批。"
    again = await wechat.text(LEADER_HP01, "延期 到12月12日 再等等")
    assert again is not None and "已有延期申请" in again
    self_approval = await wechat.text(LEADER_HP01, f"同意延期 {case.number}")
    assert self_approval == f"工单 {case.number}：“同意延期”须由上级操作。"
    await wechat.deliver()
    card = wechat.pushes_to(LEADER_HP)[-1]
    assert card.startswith("【延期申请】张伟申请将办结时限由 11月29日 10:00 延至 12月10日 23:59：施工队排期")
    assert "回复“同意延期 #1”" in card

    reply = await wechat.text(LEADER_HP, "同意")
    assert reply == f"已同意 {case.number} 延期至 12月10日 23:59，已通知张伟和居民。"
    case = await current(wechat, case)
    assert case.due_at == datetime(2026, 12, 10, 15, 59, tzinfo=UTC) and case.requested_due_at is None
    await wechat.deliver()
    assert wechat.pushes_to(RESIDENT)[-1] == f"您反映的问题（{case.number}）办理时限延至 12月10日 23:59：施工队排期。"
    assert wechat.pushes_to(LEADER_HP01)[-1] == f"【延期获批】工单 {case.number} 办结时限延至 12月10日 23:59。"


async def test_refused_extension_keeps_the_deadline(wechat: WeChat) -> None:
    case = await report(wechat)
    await wechat.text(LEADER_HP01, "进展 已联系厂家")
    await wechat.text(LEADER_HP01, "延期 到12月10日 等厂家")
    assert "请写明原因" in (await wechat.text(LEADER_HP, "不同意延期") or "")
    reply = await wechat.text(LEADER_HP, "不同意延期 路灯是小事，本周内修好")
    assert reply == f"已不同意 {case.number} 的延期申请，已通知张伟。"
    case = await current(wechat, case)
    assert case.due_at == datetime(2026, 11, 29, 2, 0, tzinfo=UTC) and case.requested_due_at is None
    await wechat.deliver()
    expected = f"【延期未获批】工单 {case.number}：路灯是小事，本周内修好。办结时限仍为 11月29日 10:00。"
    assert wechat.pushes_to(LEADER_HP01)[-1] == expected
    assert await wechat.text(LEADER_HP, f"同意延期 {case.number}") == f"工单 {case.number} 没有待审批的延期申请。"


# --- 核查 -----------------------------------------------------------------------------------------


async def test_verified_category_goes_to_the_inspector_who_sends_it_back_then_passes_it(wechat: WeChat) -> None:
    case = await report(wechat, "幸福里小区5号楼邻居吵架闹纠纷")
    assert case.category == "矛盾纠纷"
    reply = await wechat.text(LEADER_HP01, "办结 已调解，双方和解")
    assert reply == f"已提交核查 {case.number}：何平核查通过后即办结并通知居民。"
    assert (await current(wechat, case)).status == Status.VERIFYING
    await wechat.deliver()
    assert not any("已办结" in p for p in wechat.pushes_to(RESIDENT))  # not yet
    card = wechat.pushes_to(INSPECTOR)[-1]
    assert card.startswith("【待核查】张伟办结：已调解，双方和解") and "“通过 #1”" in card
    assert "不在您负责的范围内" in (await wechat.text(LEADER_CH01, f"通过 {case.number}") or "")
    assert await wechat.text(LEADER_HP01, f"通过 {case.number}") == f"工单 {case.number}：“核查通过”须由核查人操作。"

    reply = await wechat.text(INSPECTOR, "返工 调解协议没有签字")
    assert reply == f"已退回返工 {case.number}（第 1 次），已通知张伟。"
    case = await current(wechat, case)
    assert case.status == Status.IN_PROGRESS and case.rework_count == 1
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01)[-1].startswith("【返工】何平核查未通过（第 1 次）：调解协议没有签字")

    await wechat.text(LEADER_HP01, "办结 双方已签调解协议")
    assert await wechat.text(INSPECTOR, "通过") == f"已核查通过 {case.number}，已通知居民。"
    case = await current(wechat, case)
    assert case.status == Status.AWAITING_RATING and case.resolved_at is not None
    await wechat.deliver()
    told = wechat.pushes_to(RESIDENT)[-1]
    assert told.startswith(f"您反映的问题（{case.number}）已办结：双方已签调解协议") and "请您评价" in told


# --- 重复, 不属实 -----------------------------------------------------------------------------------


async def test_marked_duplicate_merges_the_residents_into_the_original(wechat: WeChat) -> None:
    first = await report(wechat)
    second = await report(wechat, "建设路路灯不亮", who=RESIDENT_2)
    assert second.status == Status.DISPATCHED  # a different landmark: not caught at intake
    assert "请写明与哪个工单重复" in (await wechat.text(LEADER_HP01, f"重复 {second.number}") or "")
    bad = await wechat.text(LEADER_HP01, f"重复 {second.number} {second.number}")
    assert bad is not None and "不能作为原工单" in bad
    reply = await wechat.text(LEADER_HP01, f"重复 {second.number} {first.number}")
    assert reply == f"已将 {second.number} 标为与 {first.number} 重复并合并，居民会收到 {first.number} 的进展。"
    second = await current(wechat, second)
    assert second.status == Status.DUPLICATE and second.duplicate_of_id == first.id and second.closed_at
    await wechat.text(LEADER_HP01, f"办结 {first.number} 已更换灯泡")
    await wechat.deliver()
    merged, resolved = wechat.pushes_to(RESIDENT_2)[-2:]
    assert merged == f"您反映的问题（{second.number}）与工单 {first.number} 是同一问题，已合并处理，进展会一并通知您。"
    assert resolved.startswith(f"您反映的问题（{first.number}）已办结") and "请您评价" not in resolved
    assert "请您评价" in wechat.pushes_to(RESIDENT)[-1]  # only the reporter rates


async def test_unfounded_case_is_closed_with_the_reason_and_stays_closed(wechat: WeChat) -> None:
    case = await report(wechat)
    reply = await wechat.text(LEADER_HP01, "不属实 #1 现场查看路灯正常")
    assert reply == f"已将 {case.number} 标为不属实并结案，已通知居民。"
    case = await current(wechat, case)
    assert case.status == Status.UNFOUNDED and case.closed_at is not None
    await wechat.deliver()
    assert wechat.pushes_to(RESIDENT)[-1].startswith(f"您反映的问题（{case.number}）经核实不属实：现场查看路灯正常")
    for text in (f"接单 {case.number}", f"办结 {case.number} 修好了", f"转派 {case.number} 城管 x"):
        reply = await wechat.text(LEADER_HP01, text)
        assert reply is not None and "当前状态为“不属实”" in reply


# --- short references ------------------------------------------------------------------------------


async def test_short_references_name_cases_per_person(wechat: WeChat) -> None:
    first = await report(wechat)
    wechat.clock.advance(minutes=10)
    second = await report(wechat, "幸福里小区有人占道经营摆摊", who=RESIDENT_2)
    await wechat.deliver()
    cards = wechat.pushes_to(LEADER_HP01)
    assert "（回复用 #1）" in cards[0] and "（回复用 #2）" in cards[1]
    which = await wechat.text(LEADER_HP01, "接单")
    assert which is not None and f"#1 {first.number}" in which and f"#2 {second.number}" in which
    assert await wechat.text(LEADER_HP01, "接单 #2") == (
        f"已接单 {second.number}（市容环境 · 幸福里小区）。处理完毕请回复“办结 {second.number} 处理说明”。"
    )
    assert await wechat.text(LEADER_HP01, "接单 #9") == "没有找到 #9，请核对工单卡片上的编号，或回复“我的工单”查看。"
    # #1 is 张伟's reference: 周婷 has no #1 of her own.
    assert (await wechat.text(LEADER_CH01, "接单 #1") or "").startswith("没有找到 #1")
    mine = await wechat.text(LEADER_HP01, "我的工单")
    assert mine is not None and f"#1 {first.number} 已派遣" in mine and f"#2 {second.number} 已接单" in mine
    assert "限11月29日 10:00" in mine
