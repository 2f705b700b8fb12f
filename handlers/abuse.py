"""Abuse: per-resident rate limits and the block list (屏蔽), which dispatchers manage in chat.

A flooding or blocked resident's messages are still stored (the inbound log keeps everything); they
are answered once, politely, and are not turned into cases or pushes. Staff are never limited.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.casework import command_target, verb
from handlers.context import Services
from handlers.routing import Router
from handlers.types import Inbound
from storage import cases, inbound
from storage.lifecycle import FINAL_STATUSES, OPEN_STATUSES, Action, Role, Status
from storage.models import Resident, Staff

router = Router("abuse")

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
_ANY = (("assignee_id", frozenset({*OPEN_STATUSES, *FINAL_STATUSES, Status.RESOLVED, Status.AWAITING_RATING})),)


async def gate(
    session: AsyncSession, *, resident: Resident, services: Services, now: datetime
) -> tuple[bool, str | None]:
    """Before a resident's message is handled: (handle it?, the reply when not — None: say nothing).
    The polite notice is said once per window, not once per message."""
    if resident.blocked_at is not None:
        return False, _notice_once(resident, m.BLOCKED_NOTICE, now, DAY)
    # This message is already in the inbound log, so it counts itself.
    per_minute, per_hour = await inbound.counts_from(session, sender=resident.openid, since=(now - MINUTE, now - HOUR))
    if per_minute > services.max_per_minute:
        return False, _notice_once(resident, m.THROTTLED, now, MINUTE)
    if per_hour > services.max_per_hour:
        return False, _notice_once(resident, m.THROTTLED, now, HOUR)
    return True, None


async def case_cap(
    session: AsyncSession, *, resident: Resident, services: Services, now: datetime
) -> tuple[bool, str | None]:
    """May the resident open another case this hour? (yes or no, the reply when not — once an hour)."""
    count = await cases.count_reported(session, resident_id=resident.id or 0, since=now - HOUR)
    if count < services.max_cases_per_hour:
        return True, None
    return False, _notice_once(resident, m.CASES_CAPPED.format(count=count), now, HOUR)


def _notice_once(resident: Resident, notice: str, now: datetime, window: timedelta) -> str | None:
    if resident.throttle_notice_at is not None and resident.throttle_notice_at > now - window:
        return None
    resident.throttle_notice_at = now
    return notice


@router.message(verb("屏蔽", "解除屏蔽"))
async def block(msg: Inbound, staff: Staff, session: AsyncSession, services: Services, now: datetime) -> str:
    """屏蔽 G… 原因 / 解除屏蔽 G…: a dispatcher blocks (or unblocks) the account that reported a case.
    The account is named by the case, never shown: staff do not see openids."""
    blocking = (msg.text or "").lstrip().startswith("屏蔽")
    found = await command_target(msg, staff, session, services, _ANY, note_needed=m.BLOCK_USAGE if blocking else None)
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    if Role.DISPATCHER not in roles:
        return m.DISPATCHERS_ONLY.format(verb=cmd.verb)
    reporter = await cases.reporter(session, case)
    if reporter is None:
        return m.BLOCK_NOBODY.format(number=case.number)
    if blocking:
        reporter.blocked_at, reporter.blocked_by, reporter.block_reason = now, staff.id, cmd.note[:200]
    else:
        reporter.blocked_at = reporter.blocked_by = reporter.block_reason = None
    session.add(reporter)
    note = cmd.note if blocking else "解除屏蔽"
    await cases.add_event(
        session, case=case, action=Action.BLOCK, actor_kind="staff", actor_id=staff.id, now=now, note=note
    )
    return (
        m.BLOCKED_DONE.format(number=case.number, reason=cmd.note)
        if blocking
        else m.UNBLOCKED.format(number=case.number)
    )
