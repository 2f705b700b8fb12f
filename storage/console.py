"""The web console's rows: staff passwords, sessions (by token hash), failed logins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ConsoleSession, LoginFailure, Staff


async def staff_by_key(session: AsyncSession, key: str) -> Staff | None:
    return (await session.exec(select(Staff).where(Staff.key == key, col(Staff.active).is_(True)))).first()


async def set_password(session: AsyncSession, *, staff: Staff, password_hash: str | None) -> None:
    """A new password ends every session the person had."""
    staff.password_hash = password_hash
    session.add(staff)
    await session.exec(delete(ConsoleSession).where(col(ConsoleSession.staff_id) == staff.id))  # type: ignore[call-overload]


async def open_session(
    session: AsyncSession, *, token_hash: str, staff_id: int, csrf: str, now: datetime, expires_at: datetime
) -> None:
    session.add(
        ConsoleSession(token_hash=token_hash, staff_id=staff_id, csrf=csrf, created_at=now, expires_at=expires_at)
    )


async def live_session(session: AsyncSession, *, token_hash: str, now: datetime) -> tuple[ConsoleSession, Staff] | None:
    """The session behind a token and its (active) staff member; None when unknown or expired."""
    row = await session.get(ConsoleSession, token_hash)
    if row is None or row.expires_at <= now:
        return None
    # A deactivated member's sessions stop at once. (No password is no bar: a one-time link logs in
    # without one; setting or clearing a password closes the sessions anyway.)
    staff = await session.get(Staff, row.staff_id)
    if staff is None or not staff.active:
        return None
    return row, staff


def set_flash(session: AsyncSession, row: ConsoleSession, *, path: str, text: str) -> None:
    """What an action said, for the page it redirects to."""
    row.flash = {"path": path, "text": text}
    session.add(row)


def take_flash(session: AsyncSession, row: ConsoleSession, *, path: str) -> str | None:
    """The flash meant for `path`, once: showing it clears it."""
    if not row.flash or row.flash.get("path") != path:
        return None
    text = row.flash.get("text")
    row.flash = None
    session.add(row)
    return text


async def close_session(session: AsyncSession, *, token_hash: str) -> None:
    await session.exec(delete(ConsoleSession).where(col(ConsoleSession.token_hash) == token_hash))  # type: ignore[call-overload]


async def purge_expired(session: AsyncSession, *, now: datetime) -> None:
    await session.exec(delete(ConsoleSession).where(col(ConsoleSession.expires_at) <= now))  # type: ignore[call-overload]


async def record_failure(session: AsyncSession, *, subjects: list[str], now: datetime, window_start: datetime) -> None:
    """Count a failed login against each subject, forgetting failures older than the window: a
    guesser who never gets in would otherwise leave rows behind forever."""
    await purge_failures(session, before=window_start)
    for subject in subjects:
        session.add(LoginFailure(subject=subject, at=now))


async def failures_since(session: AsyncSession, *, subject: str, since: datetime) -> int:
    stmt = select(func.count()).where(LoginFailure.subject == subject, col(LoginFailure.at) >= since)
    return int((await session.exec(stmt)).one())


async def forget_failures(session: AsyncSession, *, subject: str) -> None:
    """A successful login clears the count against that staff key."""
    await session.exec(delete(LoginFailure).where(col(LoginFailure.subject) == subject))  # type: ignore[call-overload]


async def purge_failures(session: AsyncSession, *, before: datetime) -> None:
    await session.exec(delete(LoginFailure).where(col(LoginFailure.at) < before))  # type: ignore[call-overload]
