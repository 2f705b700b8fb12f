"""Scheduled jobs that must run once per key, whichever process gets there first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import JobRun


async def claim_run(session: AsyncSession, *, name: str, key: str, now: datetime) -> bool:
    """True for the one caller that records (name, key) first; False for everyone after."""
    try:
        async with session.begin_nested():
            session.add(JobRun(name=name, key=key, at=now))
    except IntegrityError:
        return False
    return True


async def has_run(session: AsyncSession, *, name: str, key: str) -> bool:
    """Whether (name, key) is recorded: a cheap look before trying to claim it."""
    return await session.get(JobRun, (name, key)) is not None
