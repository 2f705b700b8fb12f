"""Staff rows for the console's 人员管理, and one-time login links."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.lifecycle import OPEN_STATUSES
from storage.models import Case, ConsoleSession, LoginLink, Staff


async def staff_on(session: AsyncSession, grid_ids: Collection[int]) -> list[Staff]:
    """Everyone on these nodes, active or not, in the order they were added."""
    stmt = select(Staff).where(col(Staff.grid_id).in_(list(grid_ids))).order_by(col(Staff.id))
    return list((await session.exec(stmt)).all())


async def get_staff(session: AsyncSession, staff_id: int) -> Staff | None:
    return await session.get(Staff, staff_id)


async def key_taken(session: AsyncSession, key: str) -> bool:
    return (await session.exec(select(Staff.id).where(Staff.key == key))).first() is not None


async def contact_taken(
    session: AsyncSession, *, wechat_openid: str | None, wecom_userid: str | None, except_id: int | None
) -> bool:
    """Another member already has this openid or WeCom user id (both are unique)."""
    conditions = []
    if wechat_openid:
        conditions.append(col(Staff.wechat_openid) == wechat_openid)
    if wecom_userid:
        conditions.append(col(Staff.wecom_userid) == wecom_userid)
    if not conditions:
        return False
    stmt = select(Staff.id).where(or_(*conditions))
    if except_id is not None:
        stmt = stmt.where(col(Staff.id) != except_id)
    return (await session.exec(stmt)).first() is not None


async def save(session: AsyncSession, staff: Staff) -> Staff:
    session.add(staff)
    await session.flush()
    return staff


async def open_cases_held(session: AsyncSession, staff_id: int) -> int:
    """Open cases waiting on this person: assigned, being transferred to, to verify, or to approve."""
    stmt = select(func.count()).where(
        col(Case.status).in_(list(OPEN_STATUSES)),
        or_(
            col(Case.assignee_id) == staff_id,
            col(Case.transfer_to_id) == staff_id,
            col(Case.verifier_id) == staff_id,
            col(Case.extension_approver_id) == staff_id,
        ),
    )
    return int((await session.exec(stmt)).one())


async def end_access(session: AsyncSession, staff_id: int) -> None:
    """Close the person's console sessions and withdraw their unused login links."""
    await session.exec(delete(ConsoleSession).where(col(ConsoleSession.staff_id) == staff_id))  # type: ignore[call-overload]
    await session.exec(
        delete(LoginLink).where(col(LoginLink.staff_id) == staff_id, col(LoginLink.used_at).is_(None))  # type: ignore[call-overload]
    )


def add_login_link(
    session: AsyncSession,
    *,
    token_hash: str,
    staff_id: int,
    created_by: int | None,
    now: datetime,
    expires_at: datetime,
) -> None:
    session.add(
        LoginLink(
            token_hash=token_hash, staff_id=staff_id, created_by=created_by, created_at=now, expires_at=expires_at
        )
    )


async def live_link(session: AsyncSession, *, token_hash: str, now: datetime) -> Staff | None:
    """Whose unused, unexpired link this is (and only if they are still active)."""
    link = await session.get(LoginLink, token_hash)
    if link is None or link.used_at is not None or link.expires_at <= now:
        return None
    staff = await session.get(Staff, link.staff_id)
    return staff if staff is not None and staff.active else None


async def use_link(session: AsyncSession, *, token_hash: str, now: datetime) -> Staff | None:
    """Consume the link: one conditional UPDATE, so of two simultaneous uses only one wins."""
    stmt = (
        update(LoginLink)
        .where(
            col(LoginLink.token_hash) == token_hash,
            col(LoginLink.used_at).is_(None),
            col(LoginLink.expires_at) > now,
        )
        .values(used_at=now)
    )
    result = await session.exec(stmt)  # type: ignore[call-overload]
    if result.rowcount != 1:
        return None
    link = await session.get(LoginLink, token_hash)
    staff = await session.get(Staff, link.staff_id) if link is not None else None
    return staff if staff is not None and staff.active else None


async def purge_links(session: AsyncSession, *, now: datetime) -> None:
    await session.exec(delete(LoginLink).where(col(LoginLink.expires_at) <= now))  # type: ignore[call-overload]
