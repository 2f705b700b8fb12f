"""Grid groups (网格群): urgent cases and a daily summary, posted by the group's WeCom robot with the
responsible leader @-mentioned. Posts go through the outbox like every push (rate-limited there to
the robot's 20 a minute, queued, never dropped) and are split to the robot's size limits here.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.context import Services
from handlers.deadlines import show
from handlers.pushes import WECOM_ROBOT, robot_markdowns, robot_texts
from handlers.text import mask_phones_in
from storage import cases, jobs, outbox
from storage.models import Case, Staff

SUMMARY_JOB = "group_summary"
SUMMARY_LINES = 30  # per group; the rest are counted, not listed


async def post_urgent(session: AsyncSession, *, case: Case, leader: Staff, services: Services, now: datetime) -> None:
    """An urgent case goes to its grid's group at once, the leader @-mentioned by WeCom id or phone."""
    group = services.grids.group_of(case.grid_id)
    if group is None:
        return
    _node, key = group
    content = m.PUSH_URGENT_GROUP.format(
        number=case.number,
        category=case.category,
        place=case.place_text or m.UNKNOWN_PLACE,
        description=mask_phones_in(case.description)[:300],
        leader=leader.name,
    )
    userids = [leader.wecom_userid] if leader.wecom_userid else []
    mobiles = [leader.phone] if leader.phone and not userids else []
    for payload in robot_texts(content, userids=userids, mobiles=mobiles):
        outbox.enqueue(session, channel=WECOM_ROBOT, recipient=key, payload=payload, now=now, case_id=case.id)


async def post_daily_summaries(session: AsyncSession, *, services: Services, now: datetime) -> int:
    """Each group's open cases, overdue first, its leaders @-mentioned; once a day per group, however
    many processes run the job. Returns how many groups were posted to."""
    day = now.astimezone(services.zone).date().isoformat()
    posted = 0
    for node_id, key in sorted(services.grids.robots.items()):
        if not await jobs.claim_run(session, name=SUMMARY_JOB, key=f"{day}:{node_id}", now=now):
            continue
        open_cases = await cases.open_in_grids(session, grid_ids=services.grids.subtree(node_id))
        text = await _summary(session, services.grids.refs[node_id].name, open_cases, services, now)
        for payload in robot_markdowns(text):
            outbox.enqueue(session, channel=WECOM_ROBOT, recipient=key, payload=payload, now=now)
        posted += 1
    return posted


async def _summary(session: AsyncSession, name: str, open_cases: list[Case], services: Services, now: datetime) -> str:
    overdue = {c.id for c in open_cases if c.due_at is not None and c.due_at < now}
    counts = Counter(c.status for c in open_cases)
    lines = [
        f"**{name} 每日工单汇总** {now.astimezone(services.zone):%m-%d}",
        f'未办结 {len(open_cases)} 件，其中超期 <font color="warning">{len(overdue)}</font> 件',
        "，".join(f"{status} {n}" for status, n in counts.most_common()) or "今日无未办结工单",
    ]
    # Overdue first, then by deadline; cases with no deadline yet last.
    ordered = sorted(open_cases, key=lambda c: (c.id not in overdue, c.due_at is None, c.due_at or now))
    for case in ordered[:SUMMARY_LINES]:
        leader = await session.get(Staff, case.assignee_id) if case.assignee_id else None
        who = f"<@{leader.wecom_userid}>" if leader and leader.wecom_userid else (leader.name if leader else "待派遣")
        due = "超期" if case.id in overdue else (f"限{show(case.due_at, services.zone)}" if case.due_at else "")
        lines.append(
            f"> {case.number} {case.status} · {case.category} · {case.place_text or m.UNKNOWN_PLACE} {due} {who}"
        )
    if len(ordered) > SUMMARY_LINES:
        lines.append(f"……另有 {len(ordered) - SUMMARY_LINES} 件")
    return "\n".join(lines)
