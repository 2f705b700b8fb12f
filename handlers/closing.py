"""How a case ends: 办结 announced and rated, 核查 (通过 / 返工), 重复, 不属实."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.casework import WORKING, act, apply, command_target, verb
from handlers.commands import find_case_number
from handlers.context import Services
from handlers.dispatching import notify_residents, notify_staff
from handlers.pushes import text_push
from handlers.routing import Router
from handlers.types import Inbound
from storage import cases, outbox
from storage.lifecycle import OPEN_STATUSES, Action, Role, Status
from storage.models import Case, Staff

router = Router("closing")

_VERIFYING: tuple[tuple[str, frozenset[Status]], ...] = (("verifier_id", frozenset({Status.VERIFYING})),)
_CLOSABLE = (("assignee_id", frozenset({Status.NEW, *WORKING})),)


async def announce_resolved(session: AsyncSession, *, case: Case, note: str, now: datetime) -> None:
    """办结 reaches every resident who reported the problem; the reporter is asked to rate it
    (待评价). With nobody to ask, the case is closed (结案)."""
    followers = [r for r in await cases.audience(session, case) if r.id != case.resident_id]
    resolved = m.PUSH_RESOLVED.format(number=case.number, note=note)
    for resident in followers:
        outbox.enqueue(session, recipient=resident.openid, payload=text_push(resolved), now=now, case_id=case.id)
    reporter = await cases.reporter(session, case)
    action = Action.ASK_RATING if reporter is not None else Action.CLOSE
    await cases.transition(session, case=case, action=action, roles=Role.SYSTEM, now=now, actor_kind="system")
    if reporter is not None:
        payload = text_push(resolved + m.PUSH_RATE)
        outbox.enqueue(session, recipient=reporter.openid, payload=payload, now=now, case_id=case.id)


@router.message(verb("核查通过"))
async def verify(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """通过: the verifier confirms the 办结; the residents are told and asked to rate it."""
    done = await act(msg, staff, session, services, now, Action.VERIFY, _VERIFYING)
    if isinstance(done, str):
        return done
    cmd, case = done
    note = await cases.last_note(session, case_id=case.id or 0, action=Action.SUBMIT) or cmd.note
    await announce_resolved(session, case=case, note=note, now=now)
    return m.VERIFIED.format(number=case.number)


@router.message(verb("返工"))
async def rework(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """返工: the verifier sends the work back, with the reason; counted on the case."""
    done = await act(msg, staff, session, services, now, Action.REWORK, _VERIFYING, note_needed=m.REASON_NEEDED)
    if isinstance(done, str):
        return done
    cmd, case = done
    worker = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    if worker is not None:
        flag = m.REWORK_FLAG.format(by=staff.name, count=case.rework_count, reason=cmd.note)
        await notify_staff(session, staff=worker, case=case, services=services, now=now, flag=flag)
    return m.REWORKED.format(number=case.number, count=case.rework_count, leader=worker.name if worker else "负责人")


@router.message(verb("重复"))
async def mark_duplicate(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """重复 G… G原: the same problem as an open case. Closed, linked, and its residents follow the original."""
    found = await command_target(msg, staff, session, services, _CLOSABLE, note_needed=m.DUPLICATE_USAGE)
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    number = find_case_number(cmd.note)
    original = await cases.case_by_number(session, number) if number else None
    if original is None or original.id == case.id or original.status not in OPEN_STATUSES:
        return m.DUPLICATE_BAD_ORIGINAL.format(original=number or cmd.note)
    refusal = await apply(session, case, staff, Action.MARK_DUPLICATE, roles, now, f"与 {original.number} 重复")
    if refusal:
        return refusal
    case.duplicate_of_id = original.id
    residents = await cases.audience(session, case)
    await notify_residents(
        session, case=case, now=now, content=m.PUSH_MERGED.format(number=case.number, original=original.number)
    )
    for resident in residents:
        await cases.follow(session, case=original, resident=resident, now=now)
    await cases.add_event(
        session, case=original, action=Action.REPEAT, actor_kind="staff", actor_id=staff.id, now=now, note=case.number
    )
    return m.MARKED_DUPLICATE.format(number=case.number, original=original.number)


@router.message(verb("不属实"))
async def mark_unfounded(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """不属实: checked and found not so; closed, with the reason told to the residents."""
    done = await act(msg, staff, session, services, now, Action.MARK_UNFOUNDED, _CLOSABLE, note_needed=m.REASON_NEEDED)
    if isinstance(done, str):
        return done
    cmd, case = done
    await notify_residents(
        session, case=case, now=now, content=m.PUSH_UNFOUNDED.format(number=case.number, reason=cmd.note)
    )
    return m.MARKED_UNFOUNDED.format(number=case.number)
