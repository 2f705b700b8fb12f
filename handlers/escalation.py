"""Moving a case between grids, levels and departments, always with a reason on record:
退回, 上报, 派遣, 转派 (and the target's 拒收).

首接负责制: the grid that first receives a case owns it until a transfer is accepted. A 转派 only asks;
the case stays with its owner (转派中) until the target replies 接单, and a 拒收 leaves it with them.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.casework import MINE_WORKING, apply, command_target, grid_name, verb
from handlers.commands import split_target
from handlers.context import Services
from handlers.dispatching import notify_staff, route_case
from handlers.places import DEPARTMENT_LEVEL
from handlers.routing import Router
from handlers.types import Inbound
from storage import grids
from storage.lifecycle import Action, Status, first_allowed
from storage.models import Case, Staff

router = Router("escalation")

_TRANSFERRED_TO_ME = ("transfer_to_id", frozenset({Status.TRANSFERRING}))


@router.message(verb("退回"))
async def return_case(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """退回: wrong grid or not ours. Back to the dispatcher level (待派遣), with the reason on record.
    From the target of a 转派 it means 拒收."""
    found = await command_target(
        msg, staff, session, services, (MINE_WORKING, _TRANSFERRED_TO_ME), note_needed=m.REASON_NEEDED
    )
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    if first_allowed(case.status, (Action.RETURN, Action.REFUSE_TRANSFER)) is Action.REFUSE_TRANSFER:
        return await _refuse_transfer(session, case, staff, roles, cmd.note, services, now)
    node = await grids.get_node(session, case.grid_id) if case.grid_id is not None else None
    dispatcher = await grids.dispatcher_for(session, node) if node is not None else None
    refusal = await apply(session, case, staff, Action.RETURN, roles, now, cmd.note)
    if refusal:
        return refusal
    case.assignee_id = dispatcher.id if dispatcher else None
    if dispatcher is not None:
        flag = m.RETURNED_FLAG.format(by=staff.name, reason=cmd.note)
        await notify_staff(session, staff=dispatcher, case=case, services=services, now=now, flag=flag)
    return m.RETURNED.format(number=case.number, to=dispatcher.name if dispatcher else "调度员")


@router.message(verb("上报"))
async def escalate(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """上报: beyond this level's means. The parent level's leader takes it over, with the reason."""
    found = await command_target(msg, staff, session, services, (MINE_WORKING,), note_needed=m.REASON_NEEDED)
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    own = await grids.get_node(session, staff.grid_id)
    parent = await grids.get_node(session, own.parent_id) if own and own.parent_id else None
    above = await grids.leader_for(session, parent) if parent else None
    if above is None:
        return m.NOWHERE_ABOVE.format(number=case.number)
    refusal = await apply(session, case, staff, Action.ESCALATE, roles, now, cmd.note)
    if refusal:
        return refusal
    case.assignee_id = above.id
    flag = m.ESCALATED_FLAG.format(by=staff.name, reason=cmd.note)
    await notify_staff(session, staff=above, case=case, services=services, now=now, flag=flag)
    return m.ESCALATED.format(number=case.number, to=f"{grid_name(services, above.grid_id)} {above.name}")


@router.message(verb("派遣"))
async def dispatch(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """派遣 G… 网格: a dispatcher (or a leader above) sends a waiting case to a grid."""
    found = await command_target(msg, staff, session, services, (("assignee_id", frozenset({Status.NEW})),))
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    place = services.grids.locate_text(cmd.note) if cmd.note else None
    if place is None:
        return m.DISPATCH_USAGE.format(number=case.number)
    if case.status != Status.NEW:
        return m.ILLEGAL.format(number=case.number, status=case.status, verb="派遣")
    leader = await route_case(session, case=case, grid=place.grid, services=services, now=now, by=staff)
    if leader is None:
        return m.NO_LEADER_THERE.format(grid=place.grid.name)
    return m.DISPATCHED.format(number=case.number, grid=grid_name(services, leader.grid_id), leader=leader.name)


@router.message(verb("转派"))
async def transfer(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """转派 G… 去向 原因: ask another grid or a department (城管, 供水, 物业 …) to take the case."""
    found = await command_target(msg, staff, session, services, (MINE_WORKING,))
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    where, reason = split_target(cmd.note)
    target = services.grids.locate_target(where) if where else None
    if target is None or not reason:
        departments = "、".join(r.name for r in services.grids.refs.values() if r.level == DEPARTMENT_LEVEL)
        return m.TRANSFER_USAGE.format(number=case.number, departments=departments or "（未配置）")
    if target.id == case.grid_id:
        return m.TRANSFER_SAME.format(number=case.number, grid=target.name)
    node = await grids.get_node(session, target.id)
    receiver = await grids.leader_for(session, node) if node else None
    if receiver is None or receiver.id == staff.id:
        return m.NO_LEADER_THERE.format(grid=target.name)
    refusal = await apply(session, case, staff, Action.TRANSFER, roles, now, f"转{target.name}：{reason}")
    if refusal:
        return refusal
    case.assignee_id = case.assignee_id or staff.id  # 首接负责: whoever transfers it owns it until then
    case.transfer_grid_id, case.transfer_to_id = target.id, receiver.id
    flag = m.TRANSFER_FLAG.format(by=staff.name, reason=reason)
    await notify_staff(
        session, staff=receiver, case=case, services=services, now=now, flag=flag, footer=m.CARD_FOOTER_TRANSFER
    )
    return m.TRANSFERRED.format(number=case.number, target=target.name, leader=receiver.name)


@router.message(verb("拒收"))
async def refuse_transfer(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """拒收 G… 原因: the target of a 转派 will not take it; it stays with the first receiver."""
    found = await command_target(msg, staff, session, services, (_TRANSFERRED_TO_ME,), note_needed=m.REASON_NEEDED)
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    return await _refuse_transfer(session, case, staff, roles, cmd.note, services, now)


async def _refuse_transfer(
    session: AsyncSession,
    case: Case,
    staff: Staff,
    roles: frozenset,
    reason: str,
    services: Services,
    now: datetime,
) -> str:
    refusal = await apply(session, case, staff, Action.REFUSE_TRANSFER, roles, now, reason)
    if refusal:
        return refusal
    case.transfer_grid_id = case.transfer_to_id = None
    owner = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    if owner is not None:
        flag = m.TRANSFER_REFUSED_FLAG.format(by=staff.name, reason=reason)
        await notify_staff(session, staff=owner, case=case, services=services, now=now, flag=flag)
    return m.TRANSFER_REFUSED.format(number=case.number, owner=owner.name if owner else "原负责人")
