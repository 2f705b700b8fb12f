"""Scheduled jobs that must run once per key, whichever process gets there first."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import insert_once
from storage.models import JobRun


async def claim_run(session: AsyncSession, *, name: str, key: str, now: datetime) -> bool:
    """True for the one caller that records (name, key) first; False for everyone after."""
    return await insert_once(session, JobRun(name=name, key=key, at=now))


async def has_run(session: AsyncSession, *, name: str, key: str) -> bool:
    """Whether (name, key) is recorded: a cheap look before trying to claim it."""
    return await session.get(JobRun, (name, key)) is not None
