"""What staff hear without asking: a daily digest of their open cases (overdue first), a weekly summary
for each 社区 and 街道, and — for dispatchers — the pushes that could not be delivered (未送达), which
they can send again (重发) once the cause is fixed.

Digests run once a day and summaries once a week whichever process gets there first (`job_run`), in
the same transaction as the pushes they queue; a server started after the hour still sends the day's
digest, never during quiet hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers import rates
from handlers.casework import candidates, verb
from handlers.context import Services
from handlers.deadlines import show
from handlers.dispatching import place_of
from handlers.leader import WAITING
from handlers.places import DEPARTMENT_LEVEL
from handlers.pushes import WECOM_APP, WECOM_ROBOT, push_to_staff
from handlers.routing import Router
from handlers.types import Inbound
from storage import cases, jobs, outbox
from storage.lifecycle import Status
from storage.models import Case, OutboxMessage, Resident, Staff

router = Router("digest")

DIGEST_JOB = "daily_digest"
WEEKLY_JOB = "weekly_summary"
DIGEST = "digest"  # outbox.kind of digests and summaries
DIGEST_LINES = 15  # per digest; the rest are counted
UNDELIVERED_DAYS = 7  # 未送达 looks back this far
UNDELIVERED_LINES = 20


async def send_scheduled(session: AsyncSession, *, services: Services, now: datetime) -> int:
    """The day's digests and the week's summaries, when their time has come and nobody sent them yet.
    Returns how many staff members were written to."""
    policy = services.policy
    local = now.astimezone(services.zone)
    if policy.quiet.contains(local.time()):
        return 0
    sent = 0
    day = local.date().isoformat()
    if local.time() >= policy.digest_at and await _claim(session, DIGEST_JOB, day, now):
        sent += await daily_digests(session, services=services, now=now)
    iso = local.isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    if (iso.weekday, local.time()) >= (policy.weekly_day, policy.weekly_at) and await _claim(
        session, WEEKLY_JOB, week, now
    ):
        sent += await weekly_summaries(session, services=services, now=now)
    return sent


async def _claim(session: AsyncSession, name: str, key: str, now: datetime) -> bool:
    return not await jobs.has_run(session, name=name, key=key) and await jobs.claim_run(
        session, name=name, key=key, now=now
    )


# The daily digest ---------------------------------------------------------------------------------


async def daily_digests(session: AsyncSession, *, services: Services, now: datetime) -> int:
    """To every staff member with something waiting: their open cases, overdue first; dispatchers also
    hear of cases waiting to be dispatched and of pushes that could not be delivered."""
    written = 0
    active = select(Staff).where(col(Staff.active).is_(True)).order_by(col(Staff.id))
    for staff in (await session.exec(active)).all():
        content = await digest_for(session, staff, services=services, now=now)
        if content and push_to_staff(session, staff=staff, content=content, now=now, services=services, kind=DIGEST):
            written += 1
    return written


async def digest_for(session: AsyncSession, staff: Staff, *, services: Services, now: datetime) -> str | None:
    """One staff member's digest; None when nothing waits for them."""
    zone = services.zone
    mine = await candidates(session, staff, WAITING)
    lines: list[str] = []
    if mine:
        today_end = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), datetime.min.time(), zone)
        overdue = [c for c in mine if c.due_at is not None and c.due_at < now]
        due_today = [c for c in mine if c.due_at is not None and now <= c.due_at < today_end]
        unaccepted = [c for c in mine if c.status in (Status.DISPATCHED, Status.TRANSFERRING)]
        lines.append(
            m.DIGEST_COUNTS.format(
                count=len(mine), overdue=len(overdue), today=len(due_today), unaccepted=len(unaccepted)
            )
        )
        # Overdue first (longest overdue at the top), then by deadline; no deadline last.
        far = now + timedelta(days=3650)
        ordered = sorted(mine, key=lambda c: (c.due_at is None or c.due_at >= now, c.due_at or far, c.id or 0))
        shown = ordered[:DIGEST_LINES]
        for ref, c in zip(await cases.refs_for(session, staff=staff, cases=shown), shown, strict=True):
            if c.due_at is None:
                due = ""
            elif c.due_at < now:
                due = m.DIGEST_OVERDUE.format(late=_days(now - c.due_at))
            else:
                due = m.MY_CASE_DUE.format(due=show(c.due_at, zone))
            lines.append(
                m.DIGEST_LINE.format(
                    ref=ref, number=c.number, status=c.status, category=c.category, place=place_of(c), due=due
                )
            )
        if len(ordered) > DIGEST_LINES:
            lines.append(m.DIGEST_MORE.format(count=len(ordered) - DIGEST_LINES))
    if staff.role == "dispatcher":
        scope = _scope(staff, services)
        waiting = await _undispatched(session, scope)
        if waiting:
            lines.append(m.DIGEST_UNDISPATCHED.format(count=waiting))
        failed = await outbox.parked(session, since=now - timedelta(days=1), grid_ids=scope, limit=1000)
        if failed:
            lines.append(m.DIGEST_UNDELIVERED.format(count=len(failed)))
    if not lines:
        return None
    header = m.DIGEST_HEADER.format(day=f"{now.astimezone(zone):%m月%d日}", name=staff.name)
    return "\n".join([header, *lines, m.DIGEST_FOOTER])


def _days(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24}天" if hours >= 24 else f"{max(hours, 1)}小时"


async def _undispatched(session: AsyncSession, scope: Sequence[int] | None) -> int:
    """Cases waiting for a dispatcher (待派遣) in the scope; the whole office includes unplaced ones."""
    stmt = select(func.count()).select_from(Case).where(Case.status == Status.NEW)
    if scope is not None:
        stmt = stmt.where(col(Case.grid_id).in_(list(scope)))
    return int((await session.exec(stmt)).one())


def _scope(staff: Staff, services: Services) -> list[int] | None:
    """The grid nodes a staff member oversees; None: the whole office (they sit at the top)."""
    ref = services.grids.refs.get(staff.grid_id)
    if ref is None or ref.depth == 0:
        return None
    return services.grids.subtree(staff.grid_id)


# The weekly summary -------------------------------------------------------------------------------


async def weekly_summaries(session: AsyncSession, *, services: Services, now: datetime) -> int:
    """To the leaders and dispatchers of every node with grids below it (社区, 街道): last week's
    figures, for the node and for each node directly below it."""
    zone, grids = services.zone, services.grids
    local = now.astimezone(zone)
    monday = datetime.combine(local.date() - timedelta(days=local.weekday()), datetime.min.time(), zone)
    start, end = monday - timedelta(days=7), monday
    period = rates.Period(start, end, as_of=now)
    per_node = rates.figures_by_node(await rates.load(session, policy=services.policy, period=period), grids, period)
    dates = f"{start:%m月%d日}—{end - timedelta(days=1):%m月%d日}"
    written = 0
    for ref in sorted(grids.refs.values(), key=lambda r: (r.depth, r.id)):
        children = [c for c in grids.refs.values() if c.level != DEPARTMENT_LEVEL and grids.line(c.id)[1:2] == [ref.id]]
        if ref.level == DEPARTMENT_LEVEL or not children:
            continue
        lines = [
            m.WEEKLY_HEADER.format(name=ref.name, period=dates),
            m.WEEKLY_TOTAL.format(**_show(per_node[ref.id])),
        ]
        for child in sorted(children, key=lambda c: c.id):
            lines.append(m.WEEKLY_LINE.format(name=child.name, **_show(per_node[child.id])))
        content = "\n".join(lines)
        staff = await session.exec(
            select(Staff)
            .where(Staff.grid_id == ref.id, col(Staff.role).in_(("leader", "dispatcher")), col(Staff.active).is_(True))
            .order_by(col(Staff.id))
        )
        for member in staff.all():
            if push_to_staff(session, staff=member, content=content, now=now, services=services, kind=DIGEST):
                written += 1
    return written


def _show(f: rates.Figures) -> dict[str, object]:
    """The figures the summary prints; the rates as handlers/rates.py defines them."""
    return {
        "received": f.received,
        "resolved": f.resolved,
        "on_time": f.resolved_on_time,
        "on_time_rate": _percent(f.on_time_rate),
        "rated": f.rated,
        "satisfied": f.satisfied,
        "satisfied_rate": _percent(f.satisfaction_rate),
        "open": f.open,
        "overdue": f.overdue,
    }


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


# 未送达 / 重发: the dispatcher sees what could not be delivered, and sends it again ------------------


@router.message(verb("未送达", "重发"))
async def undelivered(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """未送达: the pushes of the last week in this dispatcher's part of the grid that could not be
    delivered, with the reason. 重发: queue them again (after fixing an address or a template)."""
    resend = (msg.text or "").lstrip().startswith("重发")
    if staff.role != "dispatcher":
        return m.DISPATCHERS_ONLY.format(verb="重发" if resend else "未送达")
    rows = await outbox.parked(
        session, since=now - timedelta(days=UNDELIVERED_DAYS), grid_ids=_scope(staff, services), limit=500
    )
    if not rows:
        return m.UNDELIVERED_NONE.format(days=UNDELIVERED_DAYS)
    if resend:
        count = await outbox.requeue(session, row_ids=[row.id for row, _ in rows if row.id is not None], now=now)
        return m.RESENT.format(count=count)
    lines = [m.UNDELIVERED_HEADER.format(days=UNDELIVERED_DAYS, count=len(rows))]
    for row, case in rows[:UNDELIVERED_LINES]:
        lines.append(
            m.UNDELIVERED_LINE.format(
                at=show(row.created_at, services.zone),
                number=case.number if case else "—",
                who=await _recipient(session, row, services),
                reason=reason_text(row.last_error or ""),
            )
        )
    if len(rows) > UNDELIVERED_LINES:
        lines.append(m.DIGEST_MORE.format(count=len(rows) - UNDELIVERED_LINES))
    lines.append(m.UNDELIVERED_FOOTER)
    return "\n".join(lines)


async def _recipient(session: AsyncSession, row: OutboxMessage, services: Services) -> str:
    """Who a push was for, as a dispatcher knows them (never an openid)."""
    if row.channel == WECOM_ROBOT:
        for node_id, key in services.grids.robots.items():
            if key == row.recipient:
                return m.RECIPIENT_GROUP.format(name=services.grids.refs[node_id].name)
        return m.RECIPIENT_GROUP.format(name="?")
    column = col(Staff.wecom_userid) if row.channel == WECOM_APP else col(Staff.wechat_openid)
    staff = (await session.exec(select(Staff).where(column == row.recipient))).first()
    if staff is not None:
        return staff.name
    if row.channel != WECOM_APP:
        resident = (await session.exec(select(Resident).where(Resident.openid == row.recipient))).first()
        if resident is not None:
            return m.RECIPIENT_RESIDENT
    return m.RECIPIENT_UNKNOWN


# What a parked push's error means, for a dispatcher (WeChat and WeCom global return codes).
_REASONS = (
    ("43004", "对方已取消关注公众号"),
    ("40003", "对方的微信号（openid）无效"),
    ("43101", "对方未订阅该通知"),
    ("40037", "模板 ID 无效"),
    ("60111", "企业微信中没有此成员"),
    ("81013", "成员不在应用可见范围内"),
    ("93000", "群机器人地址无效"),
    ("not configured", "本服务器未配置该渠道（如企业微信）"),
    ("GRIDBOT_MEDIA_DIR", "未配置照片保存目录"),
)


def reason_text(error: str) -> str:
    for marker, meaning in _REASONS:
        if marker in error:
            return f"{meaning}（{error[:60]}）"
    return error[:80] or "未知原因"
