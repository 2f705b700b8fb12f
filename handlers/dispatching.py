"""派遣: routing a case to the leader responsible for its grid, and telling the people concerned."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.context import Services
from handlers.deadlines import resolution_deadline, show
from handlers.groups import post_urgent
from handlers.places import GridRef
from handlers.pushes import push_to_staff, text_push
from handlers.text import mask_phone, mask_phones_in
from storage import cases, grids, outbox
from storage.lifecycle import Action, Role, Status
from storage.models import Case, Resident, Staff


def place_of(case: Case) -> str:
    return case.place_text or m.UNKNOWN_PLACE


async def route_case(
    session: AsyncSession,
    *,
    case: Case,
    grid: GridRef,
    services: Services,
    now: datetime,
    by: Staff | None = None,
) -> Staff | None:
    """Put the case on `grid` and (re)dispatch it to the grid's leader, or the nearest one above.

    A new case is dispatched (派遣: by the system, or `by` a dispatcher); one dispatched but not yet
    accepted moves (改派) and its previous leader is told. Returns the leader, or None when nobody up
    the hierarchy leads."""
    node = await grids.get_node(session, grid.id)
    assert node is not None
    previous = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    leader = await grids.leader_for(session, node)
    case.grid_id = node.id  # after the reads: their autoflush would write it in an UPDATE of its own
    if leader is None:
        session.add(case)
        return None
    if previous is not None and previous.id == leader.id and case.status != Status.NEW:
        session.add(case)
        return leader  # same leader: nothing to move
    case.assignee_id = leader.id
    action = Action.DISPATCH if case.status == Status.NEW else Action.REROUTE
    case.due_at = case.due_at or resolution_deadline(case, now, services.policy)
    await cases.transition(
        session,
        case=case,
        action=action,
        roles=Role.DISPATCHER if by is not None else Role.SYSTEM,
        now=now,
        actor_kind="staff" if by is not None else "system",
        actor_id=by.id if by is not None else None,
        note=f"派给{grid.name} {leader.name}",
    )
    await notify_staff(session, staff=leader, case=case, services=services, now=now)
    if case.urgent:
        await post_urgent(session, case=case, leader=leader, services=services, now=now)
    if previous is not None:
        push_to_staff(
            session,
            staff=previous,
            now=now,
            services=services,
            case_id=case.id,
            content=m.PUSH_REROUTED.format(number=case.number, grid=grid.name),
        )
    return leader


async def notify_staff(
    session: AsyncSession,
    *,
    staff: Staff,
    case: Case,
    services: Services,
    now: datetime,
    flag: str = "",
    footer: str = m.CARD_FOOTER_WORK,
) -> None:
    """The case card, headed by `flag` when it arrives for a reason (退回, 上报, 转派 …) and ending with
    what to reply (`footer`). It carries the recipient's short reference (#3) for replies. The
    reporter's phone is masked, and no openid is shown: staff call through the platform."""
    ref = await cases.ref_for(session, staff=staff, case=case)
    reporter = await session.get(Resident, case.resident_id) if case.resident_id else None
    phone = reporter.phone if reporter else None
    grid = services.grids.refs.get(case.grid_id) if case.grid_id is not None else None
    if case.confidence < services.confirm_below:
        category = m.CATEGORY_TO_CONFIRM.format(category=case.category, number=case.number)
    else:
        category = case.category
    content = m.PUSH_NEW_CASE.format(
        urgent=m.URGENT_FLAG if case.urgent else "",
        title=m.CARD_TITLE if flag else m.CARD_TITLE_NEW,
        number=case.number,
        ref=ref,
        category=category,
        place=place_of(case),
        grid=grid.name if grid else "—",
        description=mask_phones_in(case.description),
        contact=m.CONTACT_LINE.format(phone=mask_phone(phone)) if phone else "",
        due=m.CARD_DUE.format(due=show(case.due_at, services.zone)) if case.due_at else "",
        footer=footer.format(ref=ref),
    )
    push_to_staff(session, staff=staff, content=flag + content, now=now, services=services, case_id=case.id)


async def notify_residents(session: AsyncSession, *, case: Case, content: str, now: datetime) -> None:
    """Tell the reporter and everyone who reported the same problem again."""
    for resident in await cases.audience(session, case):
        outbox.enqueue(session, recipient=resident.openid, payload=text_push(content), now=now, case_id=case.id)
