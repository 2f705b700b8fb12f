"""The demo's first run replays six weeks of a street office through the real pipeline, so the
console and `gridbot report` have figures to show — and the README's walk-through still works."""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

from sqlmodel import select

from bot import demo_history
from bot.app import FACTORY, SERVICES
from bot.config import Settings
from handlers import rates
from storage.db import transaction
from storage.lifecycle import Status
from storage.models import Case, GridNode, OutboxMessage
from tests.conftest import LEADER_HP01, WeChat

OPEN = {Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS, Status.NEW}


async def test_six_weeks_of_history_then_the_walk_through(wechat: WeChat, settings: Settings) -> None:
    made = await demo_history.seed(settings, now=wechat.clock.now())
    assert made >= 60
    assert await demo_history.has_cases(settings)
    async with transaction(wechat.app[FACTORY]) as session:
        cases = list((await session.exec(select(Case))).all())
        grids = {g.id: g.code for g in (await session.exec(select(GridNode))).all()}
        unsent = (await session.exec(select(OutboxMessage).where(OutboxMessage.status == "pending"))).all()
    statuses = Counter(c.status for c in cases)
    assert statuses[Status.CLOSED] >= 40  # most were worked to the end …
    assert 1 <= sum(statuses[s] for s in OPEN) <= 15  # … a few are still open, some of them overdue
    assert any(c.reopen_count for c in cases)  # a 不满意 reopened one (重办)
    assert any(c.status == Status.CLOSED and c.rating is None for c in cases)  # 未评价, closed by the engine
    assert {c.rating for c in cases} >= {"满意", "基本满意"}
    assert len({c.created_at.isocalendar()[1] for c in cases}) == demo_history.WEEKS  # one per week
    assert not unsent  # the past's pushes are not sent to anyone now
    # The grids of the README's walk-through are left with nothing open …
    assert not [c for c in cases if c.status in OPEN and grids.get(c.grid_id) in ("xf-hp-01", "xf-ch-02")]

    # … so it works as written: a new report, 张伟's bare 接单 takes it.
    reply = await wechat.text("o_demo_resident_1", "幸福里小区3号楼东侧路灯坏了好几天了")
    assert reply is not None and reply.startswith("已受理")
    assert "已接单" in (await wechat.text(LEADER_HP01, "接单") or "")

    # And the rates page / `gridbot report` have last week's figures, computed by handlers/rates.
    week = rates.last_full_week(wechat.clock.now(), ZoneInfo(settings.timezone))
    async with transaction(wechat.app[FACTORY]) as session:
        records = await rates.load(session, policy=wechat.app[SERVICES].policy, period=week)
    figures = rates.figures(records, week)
    assert figures.received >= 5 and figures.response_rate is not None and figures.on_time_rate is not None
