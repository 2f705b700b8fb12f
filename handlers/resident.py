"""Residents' own commands: 查询 (my cases, or one case), and a kind word for staff-only verbs."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.commands import find_case_number, half_width, parse_command
from handlers.context import Services
from handlers.dispatching import place_of
from handlers.routing import Router
from handlers.types import Inbound
from storage import cases
from storage.lifecycle import Action
from storage.models import Resident

router = Router("resident")

# What a resident's 查询 shows of the timeline: every step but these, and the notes of these steps only
# (a 退回 or 返工 reason, a refused 转派 or 延期, is the office's internal business).
_HIDDEN = frozenset({Action.BLOCK, Action.RECLASSIFY})
PUBLIC_NOTES = frozenset(
    {
        Action.DISPATCH,
        Action.REROUTE,
        Action.PROGRESS,
        Action.RESOLVE,
        Action.SUSPEND,
        Action.APPROVE_EXTENSION,
        Action.MARK_DUPLICATE,
        Action.MARK_UNFOUNDED,
    }
)


def _staff_command(msg: Inbound) -> bool:
    """A staff command from someone who is not staff: the verb alone or with a case reference
    ("接单", "办结 G…"). "上报一个问题：…" is a resident's report, not a command."""
    if msg.kind != "text":
        return False
    cmd = parse_command(msg.text or "")
    return cmd is not None and cmd.verb != "帮助" and (cmd.number is not None or cmd.ref is not None or not cmd.note)


def _query(msg: Inbound) -> bool:
    return msg.kind == "text" and half_width(msg.text or "").startswith("查询")


@router.message(_staff_command)
async def on_staff_command(msg: Inbound) -> str:
    """Someone who is not staff tried a staff command: refuse, and say how to report instead."""
    cmd = parse_command(msg.text or "")
    assert cmd is not None
    return m.STAFF_ONLY.format(verb=cmd.verb)


@router.message(_query)
async def on_query(msg: Inbound, resident: Resident, session: AsyncSession, services: Services) -> str:
    """查询: the resident's open cases, or one case's status and timeline."""
    number = find_case_number(msg.text or "")
    if number is None:
        mine = await cases.open_cases_for_resident(session, resident_id=resident.id or 0)
        if not mine:
            return m.RESIDENT_NO_CASES
        lines = [
            m.RESIDENT_CASE_LINE.format(number=c.number, category=c.category, status=c.status, place=place_of(c))
            for c in mine
        ]
        return "\n".join([m.RESIDENT_CASES_HEADER, *lines, m.RESIDENT_CASES_FOOTER])
    case = await cases.case_by_number(session, number)
    if case is not None and case.duplicate_of_id is not None and case.resident_id == resident.id:
        case = await cases.get_case(session, case.duplicate_of_id)  # a repeat report: show the original
    if case is None or resident.id not in {r.id for r in await cases.audience(session, case)}:
        return m.RESIDENT_CASE_NOT_FOUND.format(number=number)
    lines = [
        m.RESIDENT_TIMELINE_HEADER.format(
            number=case.number, category=case.category, status=case.status, place=place_of(case)
        )
    ]
    for e in await cases.timeline(session, case.id or 0):
        if e.action in _HIDDEN:
            continue
        # Notes meant for residents are shown; staff's internal reasons and residents' own words are not.
        note = f"：{e.note[:60]}" if e.note and e.action in PUBLIC_NOTES and e.actor_kind != "resident" else ""
        at = e.at.astimezone(services.zone).strftime("%m-%d %H:%M")
        lines.append(m.RESIDENT_TIMELINE_LINE.format(at=at, action=e.action, note=note))
    return "\n".join(lines)
