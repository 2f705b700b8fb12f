"""退回, 上报 and 派遣: moving a case between levels of the grid hierarchy, always with a reason."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.context import Services
from handlers.dispatching import notify_staff, route_case
from handlers.leader import apply_action, command_target, grid_name, verb
from handlers.routing import Router
from handlers.types import Inbound
from storage import grids
from storage.lifecycle import Action, Status
from storage.models import Case, Staff

router = Router("escalation")

_WORKING = frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS})


@router.message(verb("退回"))
async def return_case(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """退回: wrong grid or not ours. Back to the dispatcher level (待派遣), with the reason on record."""
    found = await command_target(msg, staff, session, services, _WORKING, note_needed=m.REASON_NEEDED)
    if isinstance(found, str):
        return found
    cmd, case = found
    node = await grids.get_node(session, case.grid_id) if case.grid_id is not None else None
    dispatcher = await grids.dispatcher_for(session, node) if node is not None else None
    illegal = await apply_action(session, case, staff, Action.RETURN, cmd.note, now)
    if illegal:
        return illegal
    case.assignee_id = dispatcher.id if dispatcher else None
    if dispatcher is not None:
        await _card(session, dispatcher, case, services, now, m.RETURNED_FLAG.format(by=staff.name, reason=cmd.note))
    return m.RETURNED.format(number=case.number, to=dispatcher.name if dispatcher else "调度员")


@router.message(verb("上报"))
async def escalate(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """上报: beyond this level's means. The parent level's leader takes it over, with the reason."""
    found = await command_target(msg, staff, session, services, _WORKING, note_needed=m.REASON_NEEDED)
    if isinstance(found, str):
        return found
    cmd, case = found
    own = await grids.get_node(session, staff.grid_id)
    parent = await grids.get_node(session, own.parent_id) if own and own.parent_id else None
    above = await grids.leader_for(session, parent) if parent else None
    if above is None:
        return m.NOWHERE_ABOVE.format(number=case.number)
    illegal = await apply_action(session, case, staff, Action.ESCALATE, cmd.note, now)
    if illegal:
        return illegal
    case.assignee_id = above.id
    await _card(session, above, case, services, now, m.ESCALATED_FLAG.format(by=staff.name, reason=cmd.note))
    return m.ESCALATED.format(number=case.number, to=f"{grid_name(services, above.grid_id)} {above.name}")


@router.message(verb("派遣"))
async def dispatch(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """派遣 G… 网格: a dispatcher (or a leader above) sends a waiting case to a grid."""
    found = await command_target(msg, staff, session, services, frozenset({Status.NEW}))
    if isinstance(found, str):
        return found
    cmd, case = found
    place = services.grids.locate_text(cmd.note) if cmd.note else None
    if place is None:
        return m.DISPATCH_USAGE.format(number=case.number)
    if case.status != Status.NEW:
        return m.ILLEGAL.format(number=case.number, status=case.status, verb="派遣")
    leader = await route_case(session, case=case, grid=place.grid, services=services, now=now, by=staff)
    if leader is None:
        return m.NO_LEADER_THERE.format(grid=place.grid.name)
    return m.DISPATCHED.format(number=case.number, grid=grid_name(services, leader.grid_id), leader=leader.name)


async def _card(session: AsyncSession, staff: Staff, case: Case, services: Services, now: datetime, flag: str) -> None:
    """The case card, headed by why it arrives (退回 / 上报)."""
    await notify_staff(session, staff=staff, case=case, services=services, now=now, flag=flag)
