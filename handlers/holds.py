"""Time on a case: 挂起 (waiting on something outside, until a date) and 延期 (more time, decided by
the level above; the residents are told the new date)."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.casework import act, apply, command_target, verb
from handlers.commands import DateError, parse_until
from handlers.context import Services
from handlers.deadlines import end_of_day, show, show_day, start_of_day
from handlers.dispatching import notify_residents, notify_staff
from handlers.pushes import push_to_staff
from handlers.routing import Router
from handlers.types import Inbound
from storage import cases, grids
from storage.lifecycle import Action, Role, Status
from storage.models import Case, Staff

router = Router("holds")

_IN_HAND = frozenset({Status.ACCEPTED, Status.IN_PROGRESS})
_SUSPENDED = frozenset({Status.SUSPENDED})
_EXTENDABLE = frozenset({Status.ACCEPTED, Status.IN_PROGRESS, Status.SUSPENDED})


def _dated(lead: str, day: date, reason: str) -> str:
    """The timeline note of a 挂起 or 延期: "至12月1日：等配件"."""
    return f"{lead}{show_day(day)}：{reason}"


def _until(note: str, usage: str, services: Services, now: datetime) -> tuple[date, str] | str:
    """The date and the reason a 挂起 or 延期 needs, or the reply that asks for them."""
    try:
        day, reason = parse_until(note, now=now, zone=services.zone)
    except DateError as exc:
        return m.DATE_NOT_AFTER_TODAY.format(usage=usage) if exc.past else usage
    return (day, reason) if reason else usage


def _reason_of(note: str) -> str:
    """The reason part of a note written by `_dated`."""
    return note.split("：", 1)[-1]


@router.message(verb("挂起"))
async def suspend(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """挂起 G… 到12月1日 原因: the case waits (no reminders) and wakes by itself on that day."""
    found = await command_target(msg, staff, session, services, (("assignee_id", _IN_HAND),))
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    usage = m.SUSPEND_USAGE.format(number=case.number)
    read = _until(cmd.note, usage, services, now)
    if isinstance(read, str):
        return read
    day, reason = read
    refusal = await apply(session, case, staff, Action.SUSPEND, roles, now, _dated("至", day, reason))
    if refusal:
        return refusal
    case.suspended_until = start_of_day(day, services.zone)
    content = m.PUSH_SUSPENDED.format(number=case.number, reason=reason, date=show_day(day))
    await notify_residents(session, case=case, now=now, content=content)
    return m.SUSPENDED.format(number=case.number, date=show_day(day))


@router.message(verb("恢复"))
async def resume(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """恢复 G…: back to work before the date."""
    done = await act(msg, staff, session, services, now, Action.RESUME, (("assignee_id", _SUSPENDED),))
    if isinstance(done, str):
        return done
    _cmd, case = done
    case.suspended_until = None
    return m.RESUMED.format(number=case.number)


async def wake_suspended(session: AsyncSession, *, services: Services, now: datetime) -> int:
    """Scheduled: 挂起 cases whose day has come go back to work, and their leader is told. Each case
    is claimed before it is woken, so two processes never wake (or announce) one twice."""
    woken = 0
    for case_id in await cases.suspended_until_before(session, now=now):
        case = await cases.claim_suspended(session, case_id=case_id, now=now)
        if case is None:
            continue
        reason = _reason_of(await cases.last_note(session, case_id=case_id, action=Action.SUSPEND) or "")
        await cases.transition(
            session, case=case, action=Action.RESUME, roles=Role.SYSTEM, now=now, actor_kind="system"
        )
        leader = await session.get(Staff, case.assignee_id) if case.assignee_id else None
        if leader is not None:
            flag = m.WOKEN_FLAG.format(reason=reason)
            await notify_staff(session, staff=leader, case=case, services=services, now=now, flag=flag)
        woken += 1
    return woken


@router.message(verb("延期"))
async def request_extension(
    msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime
) -> str:
    """延期 G… 到12月5日 原因: more time, asked of the level above (who replies 同意延期 / 不同意延期)."""
    found = await command_target(msg, staff, session, services, (("assignee_id", _EXTENDABLE),))
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    usage = m.EXTENSION_USAGE.format(number=case.number)
    if case.requested_due_at is not None:
        return m.EXTENSION_PENDING.format(number=case.number, date=show(case.requested_due_at, services.zone))
    read = _until(cmd.note, usage, services, now)
    if isinstance(read, str):
        return read
    day, reason = read
    new_due = end_of_day(day, services.zone)
    if case.due_at is not None and new_due <= case.due_at:
        return m.EXTENSION_NOT_LATER.format(due=show(case.due_at, services.zone))
    approver = await _approver(session, case, staff)
    if approver is None:
        return m.NO_APPROVER.format(number=case.number)
    refusal = await apply(session, case, staff, Action.REQUEST_EXTENSION, roles, now, _dated("延至", day, reason))
    if refusal:
        return refusal
    case.requested_due_at, case.extension_approver_id = new_due, approver.id
    old = show(case.due_at, services.zone) if case.due_at else "未定"
    flag = m.EXTENSION_FLAG.format(by=staff.name, old=old, new=show(new_due, services.zone), reason=reason)
    await notify_staff(
        session, staff=approver, case=case, services=services, now=now, flag=flag, footer=m.CARD_FOOTER_EXTENSION
    )
    return m.EXTENSION_REQUESTED.format(number=case.number, date=show(new_due, services.zone), approver=approver.name)


async def _approver(session: AsyncSession, case: Case, staff: Staff) -> Staff | None:
    """The leader of the level above whoever works the case (网格 → 社区 → 街道)."""
    worker = await session.get(Staff, case.assignee_id) if case.assignee_id else staff
    own = await grids.get_node(session, (worker or staff).grid_id)
    parent = await grids.get_node(session, own.parent_id) if own and own.parent_id else None
    return await grids.leader_for(session, parent) if parent else None


@router.message(verb("同意延期", "不同意延期"))
async def decide_extension(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """同意延期 G… / 不同意延期 G… 原因: the level above decides; the leader (and, when granted, the
    residents) are told."""
    found = await command_target(msg, staff, session, services, (("extension_approver_id", _EXTENDABLE),))
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    if case.requested_due_at is None:
        return m.NO_EXTENSION_ASKED.format(number=case.number)
    approve = cmd.verb == "同意延期"
    if not approve and not cmd.note:
        return m.REASON_NEEDED.format(verb=cmd.verb, number=case.number)
    action = Action.APPROVE_EXTENSION if approve else Action.REFUSE_EXTENSION
    refusal = await apply(session, case, staff, action, roles, now, cmd.note or None)
    if refusal:
        return refusal
    requested = case.requested_due_at
    leader = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    case.requested_due_at = case.extension_approver_id = None
    if approve:
        case.due_at = requested
        date = show(requested, services.zone)
        asked = await cases.last_note(session, case_id=case.id or 0, action=Action.REQUEST_EXTENSION)
        reason = _reason_of(asked or "")
        await notify_residents(
            session, case=case, now=now, content=m.PUSH_EXTENDED.format(number=case.number, date=date, reason=reason)
        )
        content = m.PUSH_EXTENSION_APPROVED.format(number=case.number, date=date)
    else:
        due = show(case.due_at, services.zone) if case.due_at else "未定"
        content = m.PUSH_EXTENSION_REFUSED.format(number=case.number, reason=cmd.note, due=due)
    if leader is not None:
        push_to_staff(session, staff=leader, content=content, now=now, services=services, case_id=case.id)
    template = m.EXTENSION_APPROVED if approve else m.EXTENSION_REFUSED
    return template.format(
        number=case.number, date=show(requested, services.zone), leader=leader.name if leader else "负责人"
    )
