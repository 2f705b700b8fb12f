"""Leaders' everyday commands in chat: 接单, 进展, 办结 (and its photo), 工单, 改类, 我的工单, 帮助."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.casework import MINE_WORKING, act, apply, candidates, command_target, grid_name, verb
from handlers.closing import announce_resolved
from handlers.context import Services
from handlers.deadlines import show
from handlers.dispatching import notify_residents, notify_staff, place_of
from handlers.pushes import push_to_staff
from handlers.routing import Router, kind
from handlers.text import mask_phone, mask_phones_in
from handlers.types import Inbound
from storage import cases, grids
from storage.lifecycle import OPEN_STATUSES, Action, Status, first_allowed
from storage.models import Case, Resident, Staff

router = Router("leader")

PROOF_WINDOW_MINUTES = 10
# Everything a staff member may look at or act on when the number is left out.
ANY_OPEN = (
    ("assignee_id", OPEN_STATUSES),
    ("transfer_to_id", frozenset({Status.TRANSFERRING})),
    ("verifier_id", frozenset({Status.VERIFYING})),
)
# Everything waiting for a staff member: what they may act on, and the 延期 they are to decide.
WAITING = (*ANY_OPEN, ("extension_approver_id", OPEN_STATUSES))


@router.message(verb("接单"))
async def accept(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """接单: take a dispatched case, or take over a case transferred (转派) to one's grid or department."""
    pools = (("assignee_id", frozenset({Status.DISPATCHED})), ("transfer_to_id", frozenset({Status.TRANSFERRING})))
    found = await command_target(msg, staff, session, services, pools)
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    action = first_allowed(case.status, (Action.ACCEPT, Action.TAKE_TRANSFER))
    if action is Action.TAKE_TRANSFER:
        return await _take_transfer(session, case, staff, roles, services, now)
    refusal = await apply(session, case, staff, Action.ACCEPT, roles, now, cmd.note or None)
    if refusal:
        return refusal
    case.assignee_id = staff.id
    await notify_residents(
        session,
        case=case,
        now=now,
        content=m.PUSH_ACCEPTED.format(number=case.number, grid=grid_name(services, staff.grid_id), leader=staff.name),
    )
    return m.ACCEPTED.format(number=case.number, category=case.category, place=place_of(case))


async def _take_transfer(
    session: AsyncSession, case: Case, staff: Staff, roles: frozenset, services: Services, now: datetime
) -> str:
    """The target of a 转派 takes it: from now on the case is theirs, on their grid or department."""
    owner = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    target_grid = case.transfer_grid_id
    refusal = await apply(session, case, staff, Action.TAKE_TRANSFER, roles, now)
    if refusal:
        return refusal
    case.grid_id, case.assignee_id = target_grid, staff.id
    case.transfer_grid_id = case.transfer_to_id = None
    target = grid_name(services, target_grid)
    await notify_residents(
        session, case=case, now=now, content=m.PUSH_TRANSFERRED.format(number=case.number, target=target)
    )
    if owner is not None and owner.id != staff.id:
        content = m.PUSH_TRANSFER_TAKEN.format(number=case.number, target=target, leader=staff.name)
        push_to_staff(session, staff=owner, content=content, now=now, services=services, case_id=case.id)
    return m.TRANSFER_TAKEN.format(number=case.number, category=case.category, place=place_of(case))


@router.message(verb("办结"))
async def resolve(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """办结: resolved, the residents told and asked to rate it — or, for a category that needs 核查,
    handed to the verifier first."""
    found = await command_target(msg, staff, session, services, (MINE_WORKING,), note_needed=m.RESOLVE_NEEDS_NOTE)
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    if services.classifier.needs_verification(case.category):
        verifier = await _verifier(session, case)
        if verifier is not None and verifier.id != staff.id:
            return await _submit(session, case, staff, roles, verifier, cmd.note, services, now)
    refusal = await apply(session, case, staff, Action.RESOLVE, roles, now, cmd.note)
    if refusal:
        return refusal
    case.assignee_id = case.assignee_id or staff.id
    await announce_resolved(session, case=case, note=cmd.note, now=now)
    return m.RESOLVED.format(number=case.number)


async def _verifier(session: AsyncSession, case: Case) -> Staff | None:
    """Who confirms a 办结 (核查): the nearest 核查员 at or above the case's grid, else the leader of
    the level above whoever did the work (the 社区 for a 网格)."""
    node = await grids.get_node(session, case.grid_id) if case.grid_id is not None else None
    if node is None:
        return None
    inspector = await grids.nearest(session, node, "inspector")
    if inspector is not None:
        return inspector
    worker = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    own = await grids.get_node(session, worker.grid_id) if worker else node
    parent = await grids.get_node(session, own.parent_id) if own and own.parent_id else None
    return await grids.leader_for(session, parent) if parent else None


async def _submit(
    session: AsyncSession,
    case: Case,
    staff: Staff,
    roles: frozenset,
    verifier: Staff,
    note: str,
    services: Services,
    now: datetime,
) -> str:
    refusal = await apply(session, case, staff, Action.SUBMIT, roles, now, note)
    if refusal:
        return refusal
    case.assignee_id = case.assignee_id or staff.id
    case.verifier_id = verifier.id
    flag = m.VERIFY_FLAG.format(by=staff.name, note=note)
    await notify_staff(
        session, staff=verifier, case=case, services=services, now=now, flag=flag, footer=m.CARD_FOOTER_VERIFY
    )
    return m.SUBMITTED.format(number=case.number, verifier=verifier.name)


@router.message(verb("进展"))
async def progress(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """进展: a progress note on the timeline, passed on to the residents."""
    done = await act(msg, staff, session, services, now, Action.PROGRESS, note_needed=m.PROGRESS_NEEDS_NOTE)
    if isinstance(done, str):
        return done
    cmd, case = done
    case.assignee_id = case.assignee_id or staff.id
    await notify_residents(
        session, case=case, now=now, content=m.PUSH_PROGRESS.format(number=case.number, note=cmd.note)
    )
    return m.PROGRESS_NOTED.format(number=case.number)


@router.message(verb("工单"))
async def case_timeline(msg: Inbound, staff: Staff, session: AsyncSession, services: Services) -> str:
    """工单 G…: the case and its whole timeline, for staff who stand in some relation to it (phones
    masked, no openids)."""
    found = await command_target(msg, staff, session, services, ANY_OPEN)
    if isinstance(found, str):
        return found
    _cmd, case, _roles = found
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
            due=m.CASE_TIMELINE_DUE.format(due=show(case.due_at, services.zone)) if case.due_at else "",
        )
    ]
    for e in await cases.timeline(session, case.id or 0):
        actor = await actor_name(session, e.actor_kind, e.actor_id)
        note = f"：{mask_phones_in(e.note)[:80]}" if e.note else ""
        at = e.at.astimezone(services.zone).strftime("%m-%d %H:%M")
        lines.append(m.CASE_TIMELINE_LINE.format(at=at, action=e.action, actor=actor, note=note))
    return "\n".join(lines)


@router.message(lambda msg: msg.kind == "image")
async def proof_photo(msg: Inbound, staff: Staff, session: AsyncSession, now: datetime) -> str:
    """A photo sent right after 办结 is the proof of it."""
    since = now - timedelta(minutes=PROOF_WINDOW_MINUTES)
    case = await cases.last_action_by(
        session, staff_id=staff.id or 0, actions=(Action.RESOLVE, Action.SUBMIT), since=since
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
    found = await command_target(msg, staff, session, services, (("assignee_id", OPEN_STATUSES),))
    if isinstance(found, str):
        return found
    cmd, case, _roles = found
    names = services.classifier.category_names()
    if cmd.note not in names:
        return m.RECLASSIFY_USAGE.format(categories="、".join(names))
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
async def my_cases(staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """我的工单: everything waiting for this person, oldest first, with its #reference and deadline."""
    mine = await candidates(session, staff, WAITING)
    if not mine:
        return m.MY_CASES_EMPTY
    lines = []
    for ref, c in zip(await cases.refs_for(session, staff=staff, cases=mine), mine, strict=True):
        if c.due_at is None:
            due = ""
        elif c.due_at < now:
            due = m.MY_CASE_OVERDUE
        else:
            due = m.MY_CASE_DUE.format(due=show(c.due_at, services.zone))
        lines.append(
            m.MY_CASE_LINE.format(
                ref=ref,
                number=c.number,
                status=c.status,
                category=c.category,
                place=place_of(c),
                age=_age(now, c.created_at),
                due=due,
            )
        )
    return "\n".join([m.MY_CASES_HEADER.format(count=len(mine)), *lines])


@router.message(kind("event"))
async def staff_event(msg: Inbound) -> str | None:
    """Staff events on either channel: following the account or adding the WeCom app (subscribe) gets
    the command list; opening the app (enter_agent), location reports and menu clicks get nothing, as an
    answer to each would be noise."""
    return m.STAFF_HELP if msg.event == "subscribe" else None


@router.message(kind("location"))
async def staff_location() -> str:
    """A pin from a staff member: no case is made from it (staff are not residents here)."""
    return m.STAFF_LOCATION_UNUSED


@router.message()
async def staff_help() -> str:
    return m.STAFF_HELP


async def actor_name(session: AsyncSession, kind: str, actor_id: int | None) -> str:
    """Staff by name; residents never by openid."""
    if kind == "staff" and actor_id is not None:
        staff = await session.get(Staff, actor_id)
        return staff.name if staff else "工作人员"
    return {"resident": "居民", "system": "系统", "open311": "Open311"}.get(kind, kind)


def _age(now: datetime, since: datetime) -> str:
    hours = int((now - since).total_seconds() // 3600)
    return f"{hours // 24}天{hours % 24}小时前" if hours >= 24 else f"{hours}小时前"
