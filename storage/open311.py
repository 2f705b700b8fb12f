"""The queries behind the Open311 API (bot/open311.py): cases by number, category, status and date,
the latest public note of each, and who filed a case through the API."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.lifecycle import Action, Status
from storage.models import Case, CaseEvent, Open311Request


def record_request(session: AsyncSession, request: Open311Request) -> None:
    session.add(request)


async def by_idempotency_key(session: AsyncSession, *, client: str, key: str) -> tuple[Open311Request, Case] | None:
    """The request this client filed with this Idempotency-Key, and its case."""
    stmt = (
        select(Open311Request, Case)
        .join(Case, col(Case.id) == col(Open311Request.case_id))
        .where(Open311Request.client == client, Open311Request.idempotency_key == key)
    )
    found = (await session.exec(stmt)).first()
    return (found[0], found[1]) if found else None


async def by_fingerprint(
    session: AsyncSession, *, client: str, fingerprint: str, since: datetime
) -> tuple[Open311Request, Case] | None:
    """The newest request this client filed with the same fingerprint since `since`, and its case."""
    stmt = (
        select(Open311Request, Case)
        .join(Case, col(Case.id) == col(Open311Request.case_id))
        .where(
            Open311Request.client == client,
            Open311Request.fingerprint == fingerprint,
            col(Open311Request.filed_at) >= since,
        )
        .order_by(col(Open311Request.filed_at).desc())
        .limit(1)
    )
    found = (await session.exec(stmt)).first()
    return (found[0], found[1]) if found else None


async def find_cases(
    session: AsyncSession,
    *,
    numbers: Collection[str] = (),
    categories: Collection[str] | None = None,
    statuses: Collection[Status] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
) -> list[Case]:
    """Cases newest first: by number when `numbers` is given (nothing else then applies), else by
    category, status and when they were reported (since ≤ created_at ≤ until). None: any."""
    stmt = select(Case)
    if numbers:
        stmt = stmt.where(col(Case.number).in_([n.upper() for n in numbers]))
    else:
        if categories is not None:
            stmt = stmt.where(col(Case.category).in_(list(categories)))
        if statuses is not None:
            stmt = stmt.where(col(Case.status).in_(list(statuses)))
        if since is not None:
            stmt = stmt.where(col(Case.created_at) >= since)
        if until is not None:
            stmt = stmt.where(col(Case.created_at) <= until)
    stmt = stmt.order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit)
    return list((await session.exec(stmt)).all())


async def latest_notes(session: AsyncSession, *, case_ids: list[int], actions: Iterable[Action]) -> dict[int, str]:
    """Each case's newest note among events of `actions` (by case id; cases without one are absent)."""
    if not case_ids:
        return {}
    newest = (
        select(func.max(CaseEvent.id))
        .where(
            col(CaseEvent.case_id).in_(case_ids),
            col(CaseEvent.action).in_(list(actions)),
            col(CaseEvent.note).is_not(None),
        )
        .group_by(col(CaseEvent.case_id))
    )
    stmt = select(CaseEvent.case_id, CaseEvent.note).where(col(CaseEvent.id).in_(newest.scalar_subquery()))
    return {case_id: note for case_id, note in (await session.exec(stmt)).all() if note}


async def requests_for(session: AsyncSession, *, case_ids: list[int]) -> dict[int, Open311Request]:
    """Who filed these cases through the API (cases from WeChat are absent)."""
    if not case_ids:
        return {}
    stmt = select(Open311Request).where(col(Open311Request.case_id).in_(case_ids))
    return {r.case_id: r for r in (await session.exec(stmt)).all()}
