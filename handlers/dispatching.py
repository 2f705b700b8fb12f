"""派遣: routing a case to the leader responsible for its grid, and telling them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.context import Services
from handlers.places import GridRef
from storage import grids, outbox
from storage.cases import transition
from storage.lifecycle import Action, Role
from storage.models import Case, Staff


def text_push(content: str) -> dict[str, Any]:
    """A customer-service text message body, as /cgi-bin/message/custom/send expects it."""
    return {"msgtype": "text", "text": {"content": content}}


def place_of(case: Case) -> str:
    return case.place_text or m.UNKNOWN_PLACE


async def route_case(
    session: AsyncSession, *, case: Case, grid: GridRef, services: Services, now: datetime
) -> Staff | None:
    """Put the case on `grid` and dispatch it to the grid's leader, or the nearest one above."""
    node = await grids.get_node(session, grid.id)
    assert node is not None
    case.grid_id = node.id
    leader = await grids.leader_for(session, node)
    if leader is None:
        session.add(case)
        return None
    case.assignee_id = leader.id
    await transition(
        session,
        case=case,
        action=Action.DISPATCH,
        role=Role.SYSTEM,
        now=now,
        actor_kind="system",
        note=f"派给{grid.name} {leader.name}",
    )
    await notify_staff(session, staff=leader, case=case, services=services, now=now)
    return leader


async def notify_staff(
    session: AsyncSession, *, staff: Staff, case: Case, services: Services, now: datetime
) -> None:
    if not staff.wechat_openid:
        return  # WeCom-only staff are reached through the WeCom channel (a later issue)
    grid_name = services.grids.refs[case.grid_id].name if case.grid_id in services.grids.refs else "—"
    content = m.PUSH_NEW_CASE.format(
        urgent=m.URGENT_FLAG if case.urgent else "",
        number=case.number,
        category=case.category,
        place=place_of(case),
        grid=grid_name,
        description=case.description,
    )
    outbox.enqueue(
        session, recipient=staff.wechat_openid, payload=text_push(content), now=now, case_id=case.id
    )


def notify_resident(session: AsyncSession, *, openid: str, case: Case, content: str, now: datetime) -> None:
    outbox.enqueue(session, recipient=openid, payload=text_push(content), now=now, case_id=case.id)
