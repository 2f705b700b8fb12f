"""Six weeks of a street office's past, for the demo's first run: residents report, leaders 接单,
write 进展, 办结, residents rate (one 不满意 reopens a case), a few do not rate, a few cases are still
open and overdue. All of it goes through the real pipeline — the receiver, the handlers, the
follow-up engine — on a clock that walks from six weeks ago to now, so the console's case list, map
and rates page (统计) show a working office, and every figure on them is one the bot computed.

The pushes this past would have sent are marked cancelled (nobody is there to receive them). The
grids the README's walk-through uses (和平里第一网格's 张伟, 春晖第二网格's 吴刚) are left with no open
case, so their first `接单` in the demo is unambiguous.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlmodel import col, func, select

from bot.app import FACTORY, FOLLOW_UP, RECEIVER, create_app
from bot.config import Settings
from handlers.types import Inbound
from storage import outbox
from storage.db import SessionFactory, create_engine, session_factory, transaction
from storage.lifecycle import Status
from storage.models import Case

WEEKS = 6
# grid: (who works its cases, places, whether a case may still be open at the end)
GRIDS: dict[str, tuple[str, list[str], bool]] = {
    "hp01": ("o_demo_zhangwei_hp01", ["幸福里小区{n}号楼", "建设路{n}号"], False),
    "hp02": ("o_demo_zhaomin_hp02", ["和平里北区{n}号楼", "光明北街{n}号"], True),
    "hp03": ("o_demo_sunlei_hp03", ["和平里南区{n}号楼", "青年湖公园东门"], True),
    "ch01": ("o_demo_zhouting_ch01", ["春晖园小区{n}号楼", "长青路{n}号"], True),
    "ch02": ("o_demo_wugang_ch02", ["锦绣花园{n}号楼", "文化路{n}号"], False),
    "zl01": ("o_demo_zhenghongmei_zl01", ["枣林小区{n}号楼", "枣林南街{n}号"], True),
    "zl02": ("o_demo_chenjing_zl", ["翠微苑小区{n}号楼", "滨河路{n}号"], True),  # no leader: the 社区's
}
PROBLEMS = [
    ("门口路灯坏了好几天了", "已更换灯泡"),
    ("垃圾堆了好几天没人清", "已清运"),
    ("楼道里堆满杂物，影响通行", "已清理楼道"),
    ("井盖松动，踩上去响", "已固定井盖"),
    ("晚上装修噪音太大", "已上门劝导，约定施工时间"),
    ("健身器材坏了，有小孩在玩，怕出事", "已报修并设置警示"),
    ("停水了，一直没来", "供水已恢复"),
    ("树枝压着电线，很危险", "已联系园林修剪"),
]


@dataclass(order=True)
class Step:
    at: datetime
    order: int
    sender: str
    text: str
    report: int  # which report this step belongs to; "{number}" in text is its case number


def plan(now: datetime, zone: ZoneInfo, seed: int = 2026) -> list[Step]:
    """Who writes what when, over the weeks before `now`; the later weeks go better (faster 接单,
    fewer late 办结), as a street office under evaluation does."""
    rng = random.Random(seed)
    monday = datetime.combine(now.astimezone(zone).date(), time(9), zone) - timedelta(
        days=now.astimezone(zone).weekday()
    )
    steps: list[Step] = []
    report = 0

    cutoff = now - timedelta(hours=1)
    pending: list[Step] = []

    def add(at: datetime, sender: str, text: str) -> None:
        pending.append(Step(_daytime(at, zone), len(steps) + len(pending), sender, text, report))

    whole = [False]  # the pending report's grid must be left with no open case

    def keep() -> None:
        """The pending report's steps up to now; if its grid must end with no open case, all of its
        steps or none."""
        # Done four days ago: rated, or closed as 未评价 by the follow-up engine after three.
        if not whole[0] or all(s.at < now - timedelta(days=4) for s in pending):
            steps.extend(s for s in pending if s.at < cutoff)
        pending.clear()

    for week in range(WEEKS):
        week_start = monday - timedelta(weeks=WEEKS - week)
        for worker, places, may_stay_open in GRIDS.values():
            for _ in range(rng.choice((1, 2, 2, 3))):
                report += 1
                problem, fix = rng.choice(PROBLEMS)
                place = rng.choice(places).format(n=rng.randint(1, 30))
                resident = f"o_demo_history_{report:03d}"
                at = week_start + timedelta(days=rng.randint(0, 4), hours=rng.uniform(0, 8))
                keep()
                whole[0] = not may_stay_open
                add(at, resident, f"{place}{problem}")
                recent = week >= WEEKS - 1
                if recent and may_stay_open and rng.random() < 0.5:
                    continue  # still waiting for 接单: overdue by now
                late = week < 2 and rng.random() < 0.35
                at += timedelta(hours=rng.uniform(26, 40) if late else rng.uniform(0.3, 6))
                add(at, worker, "接单 {number}")
                if rng.random() < 0.4:
                    at += timedelta(hours=rng.uniform(2, 20))
                    add(at, worker, "进展 {number} 已联系相关单位，正在处理")
                if recent and may_stay_open and rng.random() < 0.5:
                    continue  # being worked on
                slow = week < 3 and rng.random() < 0.25
                at += timedelta(days=rng.uniform(7.5, 10)) if slow else timedelta(hours=rng.uniform(3, 60))
                add(at, worker, f"办结 {{number}} {fix}")
                answer = rng.random()
                at += timedelta(hours=rng.uniform(1, 20))
                if answer < 0.08:
                    add(at, resident, "3 还是老样子，没解决")
                    at += timedelta(hours=rng.uniform(1, 5))
                    add(at, worker, "接单 {number}")
                    at += timedelta(hours=rng.uniform(4, 30))
                    add(at, worker, f"办结 {{number}} 已再次处理，{fix}")
                    at += timedelta(hours=rng.uniform(1, 10))
                    add(at, resident, "2")
                elif answer < 0.85:
                    add(at, resident, "1" if answer < 0.65 else "2")
                # else: never rated; the follow-up engine closes it as 未评价 after 3 days
    keep()
    return sorted(steps)


def _daytime(at: datetime, zone: ZoneInfo) -> datetime:
    """People write between 08:00 and 20:00: later is the next morning, earlier this morning."""
    local = at.astimezone(zone)
    if local.hour >= 20:
        local = datetime.combine(local.date() + timedelta(days=1), time(8, 17), zone)
    elif local.hour < 8:
        local = datetime.combine(local.date(), time(8, 17), zone)
    return local.astimezone(UTC)


async def _awaiting_rating(factory: SessionFactory, number: str) -> bool:
    async with transaction(factory) as session:
        status = (await session.exec(select(Case.status).where(Case.number == number))).first()
    return status == Status.AWAITING_RATING


class WalkingClock:
    """The history's clock: moved forward by the replay, never back."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._now.timestamp()

    def move_to(self, at: datetime) -> None:
        self._now = max(self._now, at)


async def has_cases(settings: Settings) -> bool:
    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            return int((await session.exec(select(func.count()).select_from(Case))).one()) > 0
    finally:
        await engine.dispose()


async def seed(settings: Settings, *, now: datetime | None = None) -> int:
    """Replay the weeks before `now` into the (empty) database; returns how many cases were made."""
    now = now or datetime.now(UTC)
    steps = plan(now, ZoneInfo(settings.timezone))
    clock = WalkingClock(steps[0].at if steps else now)
    app = create_app(settings, clock=clock, background=False)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        receiver, follow_up, factory = app[RECEIVER], app[FOLLOW_UP], app[FACTORY]
        numbers: dict[int, str] = {}
        for index, step in enumerate(steps):
            # The follow-up engine runs as the days pass (at each step: a few hours apart), sending
            # reminders and escalations and closing unrated cases as 未评价.
            clock.move_to(step.at)
            await follow_up.tick(clock.now())
            if "{number}" in step.text and step.report not in numbers:
                continue  # the report itself was refused (never happens with this plan)
            if step.sender.startswith("o_demo_history_") and step.report in numbers:
                if not await _awaiting_rating(factory, numbers[step.report]):
                    continue  # e.g. a repeat report, closed with the first: no rating is asked
            text = step.text.format(number=numbers.get(step.report, ""))
            msg = Inbound(channel="wechat", sender=step.sender, kind="text", created_at=clock.now(), text=text)
            await receiver.receive(msg, f"demo-history-{index}")
            await receiver.wait_idle()
            if step.report not in numbers:
                async with transaction(factory) as session:
                    number = (await session.exec(select(Case.number).order_by(col(Case.id).desc()).limit(1))).first()
                if number:
                    numbers[step.report] = number
        clock.move_to(now)
        await follow_up.tick(clock.now())
        async with transaction(factory) as session:
            await outbox.cancel_unsent(session, reason="demo history: never delivered")
        return len(numbers)
    finally:
        await runner.cleanup()
