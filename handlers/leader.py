"""Leaders' commands in chat: 接单, 办结, 我的工单, 帮助."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.commands import Command, parse_command
from handlers.context import Services
from handlers.dispatching import notify_residents, place_of
from handlers.routing import Filter, Router
from handlers.text import mask_phone, mask_phones_in
from handlers.types import Inbound
from storage import cases, grids
from storage.lifecycle import OPEN_STATUSES, Action, IllegalTransition, Role, Status
from storage.models import Case, Resident, Staff

router = Router("leader")

PROOF_WINDOW_MINUTES = 10


def verb(*verbs: str) -> Filter:
    def match(msg: Inbound) -> bool:
        cmd = parse_command(msg.text or "")
        return cmd is not None and cmd.verb in verbs

    return match


@router.message(verb("接单"))
async def accept(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    found = await command_target(msg, staff, session, services, frozenset({Status.DISPATCHED}))
    if isinstance(found, str):
        return found
    cmd, case = found
    illegal = await apply_action(session, case, staff, Action.ACCEPT, cmd.note or None, now)
    if illegal:
        return illegal
    case.assignee_id = staff.id
    await notify_residents(
        session,
        case=case,
        now=now,
        content=m.PUSH_ACCEPTED.format(number=case.number, grid=grid_name(services, staff.grid_id), leader=staff.name),
    )
    return m.ACCEPTED.format(number=case.number, category=case.category, place=place_of(case))


@router.message(verb("办结"))
async def resolve(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    candidates = frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS})
    found = await command_target(msg, staff, session, services, candidates, note_needed=m.RESOLVE_NEEDS_NOTE)
    if isinstance(found, str):
        return found
    cmd, case = found
    illegal = await apply_action(session, case, staff, Action.RESOLVE, cmd.note, now)
    if illegal:
        return illegal
    case.assignee_id = case.assignee_id or staff.id
    await notify_residents(
        session, case=case, now=now, content=m.PUSH_RESOLVED.format(number=case.number, note=cmd.note)
    )
    return m.RESOLVED.format(number=case.number)


@router.message(verb("进展"))
async def progress(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """进展: a progress note on the timeline, passed on to the residents."""
    found = await command_target(
        msg,
        staff,
        session,
        services,
        frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS}),
        note_needed=m.PROGRESS_NEEDS_NOTE,
    )
    if isinstance(found, str):
        return found
    cmd, case = found
    illegal = await apply_action(session, case, staff, Action.PROGRESS, cmd.note, now)
    if illegal:
        return illegal
    case.assignee_id = case.assignee_id or staff.id
    await notify_residents(
        session, case=case, now=now, content=m.PUSH_PROGRESS.format(number=case.number, note=cmd.note)
    )
    return m.PROGRESS_NOTED.format(number=case.number)


@router.message(verb("工单"))
async def case_timeline(msg: Inbound, staff: Staff, session: AsyncSession, services: Services) -> str:
    """工单 G…: the case and its whole timeline, for staff who may act on it (phones masked)."""
    found = await command_target(msg, staff, session, services, OPEN_STATUSES)
    if isinstance(found, str):
        return found
    cmd, case = found
    reporter = await session.get(Resident, case.resident_id) if case.resident_id else None
    lines = [
        m.CASE_TIMELINE_HEADER.format(
            number=case.number,
            status=case.status,
            category=case.category,
            place=place_of(case),
            grid=grid_name(services, case.grid_id),
            description=mask_phones_in(case.description),
            contact=f"\n{m.CONTACT_LINE.format(phone=mask_phone(reporter.phone)).strip()}"
            if reporter and reporter.phone
            else "",
        )
    ]
    for e in await cases.timeline(session, case.id or 0):
        actor = await _actor_name(session, e.actor_kind, e.actor_id)
        note = f"：{mask_phones_in(e.note)[:80]}" if e.note else ""
        at = e.at.astimezone(services.zone).strftime("%m-%d %H:%M")
        lines.append(m.CASE_TIMELINE_LINE.format(at=at, action=e.action, actor=actor, note=note))
    return "\n".join(lines)


@router.message(lambda msg: msg.kind == "image")
async def proof_photo(msg: Inbound, staff: Staff, session: AsyncSession, now: datetime) -> str:
    """A photo sent right after 办结 is the proof of it."""
    case = await cases.last_action_by(
        session, staff_id=staff.id or 0, action=Action.RESOLVE, since=now - timedelta(minutes=PROOF_WINDOW_MINUTES)
    )
    if case is None:
        return m.STAFF_PHOTO_UNUSED.format(minutes=PROOF_WINDOW_MINUTES)
    await cases.add_event(
        session,
        case=case,
        action=Action.PROOF,
        actor_kind="staff",
        actor_id=staff.id,
        now=now,
        media_id=msg.media_id,
        note=msg.url,
    )
    return m.PROOF_ATTACHED.format(number=case.number)


@router.message(verb("改类"))
async def reclassify(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """改类: the leader corrects the category; the text and the right answer become a training example."""
    cmd = parse_command(msg.text or "")
    assert cmd is not None
    names = services.classifier.category_names()
    if cmd.note not in names:
        return m.RECLASSIFY_USAGE.format(categories="、".join(names))
    case, refusal = await target(session, staff, cmd, services, candidates=OPEN_STATUSES)
    if case is None:
        return refusal
    before = case.category
    case.category, case.confidence, case.updated_at = cmd.note, 1.0, now
    session.add(case)
    await cases.add_event(
        session,
        case=case,
        action=Action.RECLASSIFY,
        actor_kind="staff",
        actor_id=staff.id,
        now=now,
        note=f"{before} → {cmd.note}",
    )
    cases.record_example(
        session, text=case.description, category=cmd.note, source="correction", now=now, case_id=case.id
    )
    return m.RECLASSIFIED.format(number=case.number, before=before, after=cmd.note)


@router.message(verb("我的工单"))
async def my_cases(staff: Staff, session: AsyncSession, now: datetime) -> str:
    mine = await cases.open_cases_of_assignee(session, staff_id=staff.id or 0)
    if not mine:
        return m.MY_CASES_EMPTY
    lines = [
        m.MY_CASE_LINE.format(
            number=c.number,
            status=c.status,
            category=c.category,
            place=place_of(c),
            age=_age(now, c.created_at),
        )
        for c in mine
    ]
    return "\n".join([m.MY_CASES_HEADER.format(count=len(mine)), *lines])


@router.message()
async def staff_help() -> str:
    return m.STAFF_HELP


async def apply_action(
    session: AsyncSession, case: Case, staff: Staff, action: Action, note: str | None, now: datetime
) -> str | None:
    """Apply a staff member's action through the state machine; the refusal when it does not allow it."""
    role = Role.DISPATCHER if staff.role == "dispatcher" else Role.LEADER
    try:
        await cases.transition(
            session,
            case=case,
            action=action,
            role=role,
            now=now,
            actor_kind="staff",
            actor_id=staff.id,
            note=note,
        )
    except IllegalTransition:
        return m.ILLEGAL.format(number=case.number, status=case.status, verb=action.value)
    return None


async def command_target(
    msg: Inbound,
    staff: Staff,
    session: AsyncSession,
    services: Services,
    candidates: frozenset[Status],
    *,
    note_needed: str | None = None,
) -> tuple[Command, Case] | str:
    """The command and the case it is about, or the reply that says why not (no such case, not
    yours, several to choose from, or — with `note_needed` — the note/reason that must come with it)."""
    cmd = parse_command(msg.text or "")
    assert cmd is not None
    case, refusal = await target(session, staff, cmd, services, candidates=candidates)
    if case is None:
        return refusal
    if note_needed is not None and not cmd.note:
        return note_needed.format(number=case.number, verb=cmd.verb)
    return cmd, case


async def target(
    session: AsyncSession, staff: Staff, cmd: Command, services: Services, candidates: frozenset[Status]
) -> tuple[Case | None, str]:
    """The case a command is about, or None and the reason: by number, or the only candidate."""
    if cmd.number is None:
        mine = await cases.open_cases_of_assignee(session, staff_id=staff.id or 0, statuses=candidates)
        if len(mine) == 1:
            return mine[0], ""
        if not mine:
            return None, m.NO_OPEN_CASE.format(verb=cmd.verb)
        lines = "\n".join(f"{c.number} {c.category} · {place_of(c)}" for c in mine[:10])
        return None, m.WHICH_CASE.format(count=len(mine), verb=cmd.verb, example=mine[0].number, lines=lines)
    case = await cases.case_by_number(session, cmd.number)
    if case is None:
        return None, m.CASE_NOT_FOUND.format(number=cmd.number)
    if not await may_act(session, staff, case):
        return None, m.NOT_YOURS.format(number=case.number, grid=grid_name(services, case.grid_id), verb=cmd.verb)
    return case, ""


async def may_act(session: AsyncSession, staff: Staff, case: Case) -> bool:
    """The assignee, or a leader or dispatcher whose grid is the case's grid or one of its ancestors."""
    if case.assignee_id == staff.id:
        return True
    if staff.role not in ("leader", "dispatcher") or case.grid_id is None:
        return False
    node = await grids.get_node(session, case.grid_id)
    return node is not None and staff.grid_id in grids.ancestor_ids(node)


def grid_name(services: Services, grid_id: int | None) -> str:
    ref = services.grids.refs.get(grid_id) if grid_id is not None else None
    return ref.name if ref else "其他网格"


async def _actor_name(session: AsyncSession, kind: str, actor_id: int | None) -> str:
    """Staff by name; residents never by openid."""
    if kind == "staff" and actor_id is not None:
        staff = await session.get(Staff, actor_id)
        return staff.name if staff else "工作人员"
    return {"resident": "居民", "system": "系统"}.get(kind, kind)


def _age(now: datetime, since: datetime) -> str:
    hours = int((now - since).total_seconds() // 3600)
    return f"{hours // 24}天{hours % 24}小时前" if hours >= 24 else f"{hours}小时前"
