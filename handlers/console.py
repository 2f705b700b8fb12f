"""What the web console may show a staff member, and its case actions.

Scope: one function (`in_scope`) says which cases a staff member sees — those on their grid node or
below, and those waiting for them by name (an escalated or transferred case); every console page
filters through it, so a case outside is simply not found.

Actions: the console's buttons are the chat commands. Each form becomes the command a leader would
type ("办结 G20261122-0001 已修好") and goes to the very handler that answers it in chat, so the state
machine, its refusals and every push are the same, with nothing copied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, false, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import escalation, leader
from handlers import messages as m
from handlers.casework import apply, roles_of
from handlers.context import Services
from handlers.feedback import announce_reopened
from handlers.types import Inbound
from storage.lifecycle import Action
from storage.models import Case, Staff


def in_scope(staff: Staff, services: Services) -> ColumnElement[bool]:
    """The cases `staff` may see: on their node or below (a 转派 target's too), or waiting for them."""
    below = services.grids.subtree(staff.grid_id)
    conditions: list[Any] = [
        col(Case.grid_id).in_(below),
        col(Case.transfer_grid_id).in_(below),
        col(Case.assignee_id) == staff.id,
        col(Case.transfer_to_id) == staff.id,
        col(Case.verifier_id) == staff.id,
        col(Case.extension_approver_id) == staff.id,
    ]
    if len(services.grids.line(staff.grid_id)) == 1:  # the street: also what has no grid yet
        conditions.append(col(Case.grid_id).is_(None))
    return or_(false(), *conditions)


def rate_nodes(staff: Staff, services: Services) -> list[int]:
    """The grid nodes whose rates `staff` may see: their node and everything below it, as `in_scope`
    scopes cases (a 网格员 their grid, a 社区 its grids, the 街道 all), depth first for a selector."""
    below = set(services.grids.subtree(staff.grid_id))
    order: list[int] = []

    def walk(node_id: int) -> None:
        order.append(node_id)
        for child in sorted(i for i in below if services.grids.line(i)[1:2] == [node_id]):
            walk(child)

    walk(staff.grid_id)
    return [i for i in order if i in below]


async def visible_case(session: AsyncSession, *, staff: Staff, services: Services, number: str) -> Case | None:
    """The case by number if `staff` may see it; None alike for "no such case" and "not yours"."""
    stmt = select(Case).where(Case.number == number.upper(), in_scope(staff, services))
    return (await session.exec(stmt)).first()


@dataclass(frozen=True)
class ActionForm:
    """One console action: the chat verb it stands for, and what the form must carry."""

    verb: str
    needs_note: bool
    needs_target: bool = False


ACTIONS = {
    "dispatch": ActionForm("派遣", needs_note=False, needs_target=True),
    "transfer": ActionForm("转派", needs_note=True, needs_target=True),
    "escalate": ActionForm("上报", needs_note=True),
    "resolve": ActionForm("办结", needs_note=True),
    "reopen": ActionForm("重办", needs_note=False),
}

Handler = Callable[..., Awaitable[str]]
_CHAT_HANDLERS: dict[str, Handler] = {
    "dispatch": escalation.dispatch,
    "transfer": escalation.transfer,
    "escalate": escalation.escalate,
    "resolve": leader.resolve,
}


def one_line(text: str) -> str:
    return " ".join(text.split())


async def perform(
    session: AsyncSession,
    *,
    staff: Staff,
    case: Case,
    action: str,
    note: str,
    target: str,
    services: Services,
    now: datetime,
) -> str:
    """Do a console action on a case the caller has already scoped; the reply chat would give."""
    form = ACTIONS[action]
    note, target = one_line(note), one_line(target)
    if action == "reopen":
        return await _reopen(session, staff=staff, case=case, note=note, services=services, now=now)
    words = [form.verb, case.number]
    if form.needs_target:
        words.append(target)
    if note:
        words.append(note)
    msg = Inbound(channel="console", sender=staff.key, kind="text", created_at=now, text=" ".join(words))
    return await _CHAT_HANDLERS[action](msg=msg, staff=staff, session=session, services=services, now=now)


async def _reopen(
    session: AsyncSession, *, staff: Staff, case: Case, note: str, services: Services, now: datetime
) -> str:
    """重办 has no chat verb for staff (a resident's 不满意 reopens a case); the state machine says
    who may, and when it allows it the effects are those of 不满意."""
    roles = await roles_of(session, staff, case, services)
    refusal = await apply(session, case, staff, Action.REOPEN, roles, now, note or None)
    if refusal:
        return refusal
    found = await announce_reopened(session, case=case, reason=note, services=services, now=now, told=None)
    return m.CONSOLE_REOPENED.format(number=case.number, leader=found.name if found else "—")
