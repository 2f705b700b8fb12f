"""The shared access tokens (table access_token): read, lease for a refresh, store, release.

Each step is its own short transaction (bot/tokens.py): nothing holds the database while the
token is fetched over HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import insert_once
from storage.models import AccessToken


async def read(session: AsyncSession, *, key: str) -> AccessToken | None:
    return (await session.exec(select(AccessToken).where(col(AccessToken.key) == key))).first()


async def take_lease(
    session: AsyncSession, *, key: str, seen: str | None, now: datetime, until: datetime, owner: str
) -> bool:
    """Compare-and-set: the caller becomes the one refresher if nobody holds an unexpired lease and the
    stored token is still `seen` (the one the caller found stale; None: there was none). False when
    another process is refreshing, or already has."""
    stmt = (
        update(AccessToken)
        .where(
            col(AccessToken.key) == key,
            or_(col(AccessToken.refreshing_until).is_(None), col(AccessToken.refreshing_until) < now),
            col(AccessToken.token).is_(None) if seen is None else col(AccessToken.token) == seen,
        )
        .values(refreshing_until=until, refresher=owner)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(await session.exec(stmt)) == 1:
        return True
    if await read(session, key=key) is not None:
        return False
    # The first refresher of this key creates its row; of two at once, the unique key refuses one.
    return await insert_once(session, AccessToken(key=key, refreshing_until=until, refresher=owner))


async def store(
    session: AsyncSession, *, key: str, owner: str, token: str, expires_at: datetime, now: datetime, day: str
) -> int | None:
    """The refresher's new token, and the lease released. Returns the day's fetch count so far, or
    None when the lease had run out and another process took it over (its token wins)."""
    stmt = (
        update(AccessToken)
        .where(col(AccessToken.key) == key, col(AccessToken.refresher) == owner)
        .values(
            token=token,
            expires_at=expires_at,
            fetched_at=now,
            refreshing_until=None,
            refresher=None,
            day_fetches=case((col(AccessToken.fetch_day) == day, col(AccessToken.day_fetches) + 1), else_=1),
            fetch_day=day,
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(await session.exec(stmt)) != 1:
        return None
    row = await read(session, key=key)
    return row.day_fetches if row else None


async def release(session: AsyncSession, *, key: str, owner: str) -> None:
    """A failed refresh lets go of its lease, so the next caller may try at once."""
    stmt = (
        update(AccessToken)
        .where(col(AccessToken.key) == key, col(AccessToken.refresher) == owner)
        .values(refreshing_until=None, refresher=None)
        .execution_options(synchronize_session=False)
    )
    await session.exec(stmt)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)
