"""What residents say back about their own cases: the rating after 办结 (满意 / 基本满意 / 不满意, or
1 / 2 / 3), and a remark on a case by its number. Residents act on nothing else."""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.casework import grid_name
from handlers.commands import find_case_number, half_width
from handlers.context import Outcome, Services
from handlers.deadlines import resolution_deadline
from handlers.dispatching import notify_staff
from handlers.pushes import push_to_staff, text_push
from handlers.routing import Router, SkipHandler
from handlers.text import mask_phones_in
from handlers.types import Inbound
from storage import cases, outbox
from storage.lifecycle import OPEN_STATUSES, Action, Role
from storage.models import Case, Resident, Staff

router = Router("feedback")

SATISFIED, FAIRLY, UNSATISFIED = "满意", "基本满意", "不满意"
_RATINGS = {
    "1": SATISFIED,
    "非常满意": SATISFIED,
    "满意": SATISFIED,
    "2": FAIRLY,
    "基本满意": FAIRLY,
    "一般": FAIRLY,
    "3": UNSATISFIED,
    "不满意": UNSATISFIED,
    "很不满意": UNSATISFIED,
}
# The rating alone, or followed by a separator and the reason: "3，灯还是不亮". Never "1号楼…".
_RATING = re.compile(
    r"^\s*(?P<r>基本满意|非常满意|很不满意|不满意|满意|一般|[123])\s*(?:$|[\s，,。.:：、!！;；]+(?P<reason>.*)$)", re.S
)


def _rating(msg: Inbound) -> bool:
    return msg.kind == "text" and _RATING.match(half_width(msg.text or "")) is not None


def _mentions_a_case(msg: Inbound) -> bool:
    return msg.kind == "text" and find_case_number(msg.text or "") is not None


@router.message(_rating)
async def on_rating(
    msg: Inbound, resident: Resident, session: AsyncSession, services: Services, now: datetime, outcome: Outcome
) -> str:
    """The reporter rates their case waiting for it (待评价). 不满意 reopens it (重办): back to the same
    leader with the reason and a new deadline. With no case waiting, it is an ordinary message."""
    case = await cases.awaiting_rating(session, resident_id=resident.id or 0)
    if case is None:
        raise SkipHandler
    match = _RATING.match(half_width(msg.text or ""))
    assert match is not None
    rating = _RATINGS[match.group("r")]
    reason = (msg.text or "")[match.start("reason") :].strip() if match.group("reason") else ""
    case.rating, case.rated_at = rating, now
    outcome.case_id = case.id
    action = Action.REOPEN if rating == UNSATISFIED else Action.RATE
    note = f"{rating}：{reason}" if reason else rating
    await cases.transition(
        session,
        case=case,
        action=action,
        roles=Role.RESIDENT,
        now=now,
        actor_kind="resident",
        actor_id=resident.id,
        note=note,
    )
    if action is Action.RATE:
        return m.RATED.format(rating=rating, number=case.number)
    leader = await announce_reopened(session, case=case, reason=reason, services=services, now=now, told=resident)
    if leader is None:
        return m.RATED.format(rating=rating, number=case.number)
    return m.REOPENED.format(number=case.number, grid=grid_name(services, leader.grid_id), leader=leader.name)


async def announce_reopened(
    session: AsyncSession, *, case: Case, reason: str, services: Services, now: datetime, told: Resident | None
) -> Staff | None:
    """重办 done: a new deadline, the leader gets the case back with the reason, and the residents
    are told (except `told`, who hears it in a reply). The leader, or None when there is none."""
    case.due_at = resolution_deadline(case, now, services.policy)
    leader = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    if leader is None:
        return None
    flag = m.REOPEN_FLAG.format(reason=reason or m.REOPEN_NO_REASON)
    await notify_staff(session, staff=leader, case=case, services=services, now=now, flag=flag)
    grid = grid_name(services, leader.grid_id)
    reopened = text_push(m.PUSH_REOPENED.format(number=case.number, grid=grid, leader=leader.name))
    for follower in await cases.audience(session, case):
        if told is None or follower.id != told.id:
            outbox.enqueue(session, recipient=follower.openid, payload=reopened, now=now, case_id=case.id)
    return leader


@router.message(_mentions_a_case)
async def on_remark(
    msg: Inbound, resident: Resident, session: AsyncSession, services: Services, now: datetime, outcome: Outcome
) -> str:
    """ "G20261122-0001 灯还是不亮": a remark on one of the resident's own open cases, passed to its
    leader. Any other number is an ordinary message (查询 has its own route)."""
    number = find_case_number(msg.text or "")
    case = await cases.case_by_number(session, number) if number else None
    if case is None or case.status not in OPEN_STATUSES:
        raise SkipHandler
    if resident.id not in {r.id for r in await cases.audience(session, case)}:
        raise SkipHandler
    text = (msg.text or "").strip()
    await cases.add_event(
        session, case=case, action=Action.SUPPLEMENT, actor_kind="resident", actor_id=resident.id, now=now, note=text
    )
    outcome.case_id = case.id
    leader = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    if leader is not None:
        content = m.PUSH_SUPPLEMENT.format(number=case.number, note=mask_phones_in(text)[:300])
        push_to_staff(session, staff=leader, content=content, now=now, services=services, case_id=case.id)
    return m.SUPPLEMENT_BY_NUMBER.format(number=case.number)
