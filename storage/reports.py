"""The reads behind `gridbot report` and the rate views (handlers/rates.py): read-only, one query each."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import exists, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.lifecycle import OPEN_STATUSES, Action
from storage.models import Case, CaseEvent, Staff


async def cases_touching(
    session: AsyncSession, *, start: datetime, end: datetime, grid_ids: Collection[int] | None = None
) -> list[tuple[Case, bool]]:
    """Every case that can figure in a period [start, end): reported before its end, and either still
    open or with something (dispatch, acceptance, 办结, 结案, rating, deadline, report) on or after its
    start. Each with whether a 延期 was ever approved on it (an `同意延期` event on its timeline).
    `grid_ids` None: the whole office, unplaced cases included."""
    extended = exists().where(col(CaseEvent.case_id) == col(Case.id), col(CaseEvent.action) == Action.APPROVE_EXTENSION)
    moments = (
        Case.created_at,
        Case.dispatched_at,
        Case.accepted_at,
        Case.resolved_at,
        Case.closed_at,
        Case.rated_at,
        Case.due_at,
    )
    stmt = (
        select(Case, extended.label("extended"))
        .where(col(Case.created_at) < end)
        .where(or_(col(Case.status).in_(list(OPEN_STATUSES)), *(col(m) >= start for m in moments)))
        .order_by(col(Case.id))
    )
    if grid_ids is not None:
        stmt = stmt.where(col(Case.grid_id).in_(list(grid_ids)))
    rows = (await session.exec(stmt)).all()
    return [(case, bool(flag)) for case, flag in rows]


async def staff_names(session: AsyncSession) -> dict[int, str]:
    """Every staff member's name by id (the leaders of a by-leader view, the 负责人 of the ledger)."""
    rows = (await session.exec(select(Staff.id, Staff.name))).all()
    return {int(i): name for i, name in rows if i is not None}


async def case_numbers(session: AsyncSession, ids: Collection[int]) -> dict[int, str]:
    """Case numbers by id (the originals repeats point to)."""
    if not ids:
        return {}
    rows = (await session.exec(select(Case.id, Case.number).where(col(Case.id).in_(list(ids))))).all()
    return {int(i): number for i, number in rows if i is not None}
