"""The follow-up engine on a fake clock: days of policy in milliseconds, asserting exactly which pings
are made at which instant; quiet hours; a restart; two engines on one database; closing stops all.

The demo policy for a road lamp (道路设施, class general): accept within 24 h, 办结 within 7 days,
reminders 1 day before, escalation every day, 3 days without 进展 counts as stalled. The clock starts
on Sunday 2026-11-22 10:00 (office time)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from bot.app import FACTORY, FOLLOW_UP, SERVICES
from handlers import followup
from handlers.followup import LEASE, FollowUp
from storage import cases
from storage.db import create_engine, session_factory, transaction
from storage.lifecycle import Status
from storage.models import Case, OutboxMessage, PingLease
from tests.conftest import LEADER_HP, LEADER_HP01, RESIDENT, WeChat

ZONE = ZoneInfo("Asia/Shanghai")
CITY = "o_demo_lijianguo_xf"  # 李建国, 幸福街道
LAMP = "幸福里小区3号楼东侧路灯坏了"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


async def pings(wechat: WeChat) -> list[tuple[str, str]]:
    """(recipient, first words) of every ping made so far, in order."""
    async with transaction(wechat.app[FACTORY]) as session:
        rows = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "ping").order_by(col(OutboxMessage.id))
            )
        ).all()
    return [(r.recipient, r.payload["text"]["content"].split("）")[0].split("工单")[0]) for r in rows]


async def run_until(wechat: WeChat, until: datetime, step: timedelta = timedelta(minutes=30)) -> None:
    """The engine ticking every `step` (the scheduler's interval, coarsened) up to `until`."""
    while wechat.clock.now() < until:
        wechat.clock.advance(seconds=min(step, until - wechat.clock.now()).total_seconds())
        await wechat.app[FOLLOW_UP].tick(wechat.clock.now())


async def the_case(wechat: WeChat) -> Case:
    (case,) = await wechat.cases()
    return case


async def test_an_unaccepted_case_is_pinged_then_escalated_one_level_a_day_until_accepted(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await run_until(wechat, at("2026-11-23 09:59"))
    assert await pings(wechat) == []  # nothing before the accept deadline (Monday 10:00)
    await run_until(wechat, at("2026-11-23 10:00"))
    assert await pings(wechat) == [(LEADER_HP01, "【超时未接单】")]
    await run_until(wechat, at("2026-11-24 10:00"))  # a day later: up to 和平里社区, the owner told
    assert (await pings(wechat))[1:] == [(LEADER_HP, "【督办】"), (LEADER_HP01, "【已报上级督办】")]
    await run_until(wechat, at("2026-11-25 10:00"))  # then the street, with the whole chain copied
    assert (await pings(wechat))[3:] == [(LEADER_HP, "【督办】"), (CITY, "【督办】"), (LEADER_HP01, "【已报上级督办】")]
    await wechat.text(LEADER_HP01, "接单")
    before = len(await pings(wechat))
    await run_until(wechat, at("2026-11-26 10:00"))
    assert len(await pings(wechat)) == before  # accepted: the accept chain is over, nothing else due yet


async def test_the_resolution_deadline_is_reminded_a_day_before_and_at_it(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(LEADER_HP01, "接单")
    await run_until(wechat, at("2026-11-24 10:00"))
    for day in range(24, 30):  # a 进展 note every day keeps the case from counting as stalled
        await run_until(wechat, at(f"2026-11-{day} 10:01"))
        await wechat.text(LEADER_HP01, f"进展 第{day}日 已联系电工")
    await run_until(wechat, at("2026-11-29 10:00"))
    assert await pings(wechat) == [(LEADER_HP01, "【催办】"), (LEADER_HP01, "【已到期】")]
    reminded = (await the_case(wechat)).due_at
    assert reminded == at("2026-11-29 10:00")


async def test_an_accepted_case_silent_for_three_days_counts_as_unaccepted_again(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(LEADER_HP01, "接单")  # Sunday 10:00
    await run_until(wechat, at("2026-11-25 10:00"))
    assert await pings(wechat) == [(LEADER_HP01, "【无进展】")]  # Wednesday 10:00
    await run_until(wechat, at("2026-11-26 10:00"))
    assert (await pings(wechat))[1:] == [(LEADER_HP, "【督办】"), (LEADER_HP01, "【已报上级督办】")]


async def test_closing_stops_everything_at_once_even_pings_already_queued(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await run_until(wechat, at("2026-11-23 10:00"))
    assert await pings(wechat) == [(LEADER_HP01, "【超时未接单】")]  # queued, not yet delivered
    await wechat.text(LEADER_HP01, "不属实 现场路灯正常")
    async with transaction(wechat.app[FACTORY]) as session:
        [row] = (await session.exec(select(OutboxMessage).where(OutboxMessage.kind == "ping"))).all()
    assert row.status == "cancelled"
    case = await the_case(wechat)
    assert case.status == Status.UNFOUNDED and case.next_ping_at is None
    await run_until(wechat, at("2026-12-10 10:00"), step=timedelta(hours=6))
    assert len(await pings(wechat)) == 1


async def test_quiet_hours_hold_non_urgent_pings_until_07_30(wechat: WeChat) -> None:
    wechat.clock.advance(hours=13)  # the report comes Sunday 23:00: the accept deadline is Monday 23:00
    await wechat.text(RESIDENT, LAMP)
    await run_until(wechat, at("2026-11-24 07:29"))
    assert await pings(wechat) == []
    await run_until(wechat, at("2026-11-24 07:30"))
    assert await pings(wechat) == [(LEADER_HP01, "【超时未接单】")]


async def test_urgent_pings_go_out_at_any_hour(wechat: WeChat) -> None:
    wechat.clock.advance(hours=13)  # Sunday 23:00
    await wechat.text(RESIDENT, "幸福里小区3号楼燃气泄漏，很大的煤气味")
    assert (await the_case(wechat)).urgent
    await run_until(wechat, at("2026-11-22 23:30"), step=timedelta(minutes=5))
    assert await pings(wechat) == [(LEADER_HP01, "【超时未接单】")]  # 30 minutes to accept
    await run_until(wechat, at("2026-11-23 00:30"), step=timedelta(minutes=5))
    assert (await pings(wechat))[1:3] == [(LEADER_HP, "【督办】"), (LEADER_HP01, "【已报上级督办】")]


async def test_a_restart_resends_nothing_and_a_long_outage_sends_only_the_latest(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await run_until(wechat, at("2026-11-23 10:00"))
    assert len(await pings(wechat)) == 1
    restarted = FollowUp(wechat.app[FACTORY], wechat.app[SERVICES])  # a new process, same database
    assert await restarted.tick(wechat.clock.now()) == 0
    wechat.clock.advance(days=3)  # down from Monday to Thursday: three escalation steps missed
    assert await restarted.tick(wechat.clock.now()) == 1
    assert (await pings(wechat))[1:] == [(LEADER_HP, "【督办】"), (CITY, "【督办】"), (LEADER_HP01, "【已报上级督办】")]
    assert await restarted.tick(wechat.clock.now()) == 0


async def test_two_engines_on_one_database_make_each_ping_once(wechat: WeChat, database_url: str) -> None:
    """12 lamps 210 m apart in 和平里第一网格 (none repeats another), one day late: two engines tick
    at the same instants, one with small batches; each case gets its one ping."""
    for n in range(12):
        resident = f"o_resident_{n:02d}"
        await wechat.location(resident, 39.9230 + 0.0019 * (n // 3), 116.4005 + 0.0025 * (n % 3))
        await wechat.text(resident, "这里的路灯坏了")
    cases = await wechat.cases()
    assert len(cases) == 12 and {c.status for c in cases} == {Status.DISPATCHED}
    other = create_engine(database_url)
    try:
        engines = [wechat.app[FOLLOW_UP], FollowUp(session_factory(other), wechat.app[SERVICES], batch=5)]
        wechat.clock.advance(days=1)
        made = [n for _ in range(3) for n in await asyncio.gather(*(e.tick(wechat.clock.now()) for e in engines))]
    finally:
        await other.dispose()
    assert sum(made) == 12
    async with transaction(wechat.app[FACTORY]) as session:
        rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.kind == "ping"))).all()
    assert sorted(r.case_id for r in rows) == sorted(c.id for c in cases)  # each case once


async def test_an_unrated_case_closes_after_three_days(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(LEADER_HP01, "办结 已更换灯泡")
    assert (await the_case(wechat)).status == Status.AWAITING_RATING
    await run_until(wechat, at("2026-11-25 09:59"))
    assert (await the_case(wechat)).status == Status.AWAITING_RATING
    await run_until(wechat, at("2026-11-25 10:00"))
    case = await the_case(wechat)
    assert case.status == Status.CLOSED and case.rating is None and case.next_ping_at is None


async def test_an_approved_extension_moves_the_reminders(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(LEADER_HP01, "接单")
    await wechat.text(LEADER_HP01, "延期 到12月10日 等灯具")
    await wechat.text(LEADER_HP, "同意延期")
    for day in (24, 26, 28):
        await run_until(wechat, at(f"2026-11-{day} 10:00"))
        await wechat.text(LEADER_HP01, "进展 等灯具到货")
    await run_until(wechat, at("2026-11-30 09:00"))
    assert await pings(wechat) == []  # the old deadline (29 Nov) has gone with its reminder


@pytest.mark.parametrize("status", [Status.SUSPENDED])
async def test_a_suspended_case_is_not_chased_until_it_wakes(wechat: WeChat, status: Status) -> None:
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(LEADER_HP01, "接单")
    await wechat.text(LEADER_HP01, "挂起 到12月5日 等电力公司停电检修")
    case = await the_case(wechat)
    assert case.status == status and case.next_ping_at is None
    await run_until(wechat, at("2026-12-04 23:00"), step=timedelta(hours=6))
    assert await pings(wechat) == []


async def test_a_claimed_case_is_not_claimed_again_until_its_lease_runs_out(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    wechat.clock.advance(days=1)
    now, lease = wechat.clock.now(), wechat.clock.now() + timedelta(minutes=2)
    async with transaction(wechat.app[FACTORY]) as session:
        first = await cases.claim_due_pings(session, now=now, lease_until=lease, limit=10)
    async with transaction(wechat.app[FACTORY]) as session:
        second = await cases.claim_due_pings(session, now=now, lease_until=lease, limit=10)
    assert len(first) == 1 and second == []
    async with transaction(wechat.app[FACTORY]) as session:  # the claimer died: after the lease, again
        again = await cases.claim_due_pings(session, now=lease, lease_until=lease + timedelta(minutes=2), limit=10)
    assert again == first


async def test_a_leader_acting_between_claim_and_chase_wins_and_nothing_is_sent(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    wechat.clock.advance(days=1)
    engine: FollowUp = wechat.app[FOLLOW_UP]
    now, lease = wechat.clock.now(), wechat.clock.now() + timedelta(minutes=2)
    async with transaction(wechat.app[FACTORY]) as session:
        [case_id] = await cases.claim_due_pings(session, now=now, lease_until=lease, limit=10)
    await wechat.text(LEADER_HP01, "接单")  # lands while the engine holds the lease
    async with transaction(wechat.app[FACTORY]) as session:  # the engine's compare-and-set fails ...
        assert not await cases.settle_pings(session, case_id=case_id, lease_until=lease, next_at=None, pinged_until=now)
    async with transaction(wechat.app[FACTORY]) as session:  # ... so its chase sends nothing
        assert await engine._chase(session, case_id, now, lease) == 0
    assert await pings(wechat) == []
    assert await engine.tick(wechat.clock.now()) == 0  # re-planned from the accepted state: nothing due


async def test_a_lease_that_ran_out_passes_to_another_engine_and_the_late_one_sends_nothing(wechat: WeChat) -> None:
    """An engine claims the lamp at its accept deadline, then stalls (a crash, a long pause): while its
    lease lives no other engine takes the case; once it has run out another does, and pings once; the
    stalled engine, waking with its old lease, sends nothing."""
    await wechat.text(RESIDENT, LAMP)
    wechat.clock.advance(days=1)  # Monday 10:00: 超时未接单 due
    stalled, other = wechat.app[FOLLOW_UP], FollowUp(wechat.app[FACTORY], wechat.app[SERVICES])
    now, lease = wechat.clock.now(), wechat.clock.now() + LEASE
    async with transaction(wechat.app[FACTORY]) as session:
        [case_id] = await cases.claim_due_pings(session, now=now, lease_until=lease, limit=10)
    wechat.clock.advance(seconds=LEASE.total_seconds() - 1)
    assert await other.tick(wechat.clock.now()) == 0  # the lease lives: not taken
    assert await pings(wechat) == []
    wechat.clock.advance(seconds=1)
    assert await other.tick(wechat.clock.now()) == 1  # run out: taken again, pinged
    assert await pings(wechat) == [(LEADER_HP01, "【超时未接单】")]
    async with transaction(wechat.app[FACTORY]) as session:
        assert await stalled._chase(session, case_id, now, lease) == 0
    assert await other.tick(wechat.clock.now()) == 0
    assert await pings(wechat) == [(LEADER_HP01, "【超时未接单】")]


async def test_a_dead_engines_lease_on_a_case_closed_meanwhile_is_cleared(wechat: WeChat) -> None:
    """The engine that claimed the lamp dies; the case is closed (重复) before it is due again, so no
    claim ever overwrites the lease: a later tick clears it once it has been dead a lease long."""
    await wechat.text(RESIDENT, LAMP)
    wechat.clock.advance(days=1)
    now = wechat.clock.now()
    async with transaction(wechat.app[FACTORY]) as session:
        [case_id] = await cases.claim_due_pings(session, now=now, lease_until=now + LEASE, limit=10)
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, f"不属实 {case.number} 现场路灯正常")
    engine: FollowUp = wechat.app[FOLLOW_UP]
    wechat.clock.advance(seconds=LEASE.total_seconds() * 2 - 1)
    await engine.tick(wechat.clock.now())
    assert await leases(wechat) == [case_id]
    wechat.clock.advance(seconds=2)
    await engine.tick(wechat.clock.now())
    assert await leases(wechat) == []


async def leases(wechat: WeChat) -> list[int]:
    async with transaction(wechat.app[FACTORY]) as session:
        return [lease.case_id for lease in (await session.exec(select(PingLease))).all()]


async def test_a_leader_acting_while_the_case_is_leased_gets_it_planned_anew_after_the_lease(wechat: WeChat) -> None:
    """The engine claims the lamp, a leader accepts it before the chase, the chase sends nothing (its
    compare-and-set fails), and the accepted case is then chased for its own next step: 无进展 three
    days on, not 超时未接单."""
    await wechat.text(RESIDENT, LAMP)
    wechat.clock.advance(days=1)
    engine: FollowUp = wechat.app[FOLLOW_UP]
    now, lease = wechat.clock.now(), wechat.clock.now() + LEASE
    async with transaction(wechat.app[FACTORY]) as session:
        [case_id] = await cases.claim_due_pings(session, now=now, lease_until=lease, limit=10)
    await wechat.text(LEADER_HP01, "接单")
    async with transaction(wechat.app[FACTORY]) as session:
        assert await engine._chase(session, case_id, now, lease) == 0
    await run_until(wechat, at("2026-11-26 09:59"))
    assert await pings(wechat) == []
    await run_until(wechat, at("2026-11-26 10:00"))
    assert await pings(wechat) == [(LEADER_HP01, "【无进展】")]


async def test_one_case_failing_in_a_tick_keeps_its_trouble_and_comes_back_after_its_lease(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three lamps due in one tick, chased in one transaction; planning the second one fails (a bug, a
    bad row): the other two are pinged all the same, and the second once its lease has run out."""
    for n in range(3):
        resident = f"o_resident_{n:02d}"
        await wechat.location(resident, 39.9230, 116.4005 + 0.0025 * n)
        await wechat.text(resident, "这里的路灯坏了")
    first, broken, third = sorted(c.id for c in await wechat.cases())
    real_decide = followup.decide

    def decide(case: Case, *args: object) -> followup.Decision:
        if case.id == broken:
            raise RuntimeError("a bad row")
        return real_decide(case, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(followup, "decide", decide)
    wechat.clock.advance(days=1)
    assert await wechat.app[FOLLOW_UP].tick(wechat.clock.now()) == 2
    assert await pinged_cases(wechat) == [first, third]
    monkeypatch.setattr(followup, "decide", real_decide)
    wechat.clock.advance(seconds=LEASE.total_seconds() - 1)
    assert await wechat.app[FOLLOW_UP].tick(wechat.clock.now()) == 0  # its lease still lives
    wechat.clock.advance(seconds=1)
    assert await wechat.app[FOLLOW_UP].tick(wechat.clock.now()) == 1
    assert await pinged_cases(wechat) == [first, third, broken]


async def pinged_cases(wechat: WeChat) -> list[int | None]:
    async with transaction(wechat.app[FACTORY]) as session:
        rows = (
            await session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "ping").order_by(col(OutboxMessage.id))
            )
        ).all()
    return [r.case_id for r in rows]
