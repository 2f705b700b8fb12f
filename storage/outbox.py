"""The outbox: pushes written in the same transaction as the change they announce."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import OutboxMessage


def enqueue(
    session: AsyncSession,
    *,
    recipient: str,
    payload: dict[str, Any],
    now: datetime,
    case_id: int | None = None,
    channel: str = "wechat_cs",
) -> OutboxMessage:
    row = OutboxMessage(
        channel=channel,
        recipient=recipient,
        payload=payload,
        case_id=case_id,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


async def claim_due(session: AsyncSession, *, now: datetime, lease: timedelta, limit: int = 50) -> list[OutboxMessage]:
    """Lease the due messages, oldest first, skipping any recipient with an older one still pending
    (so one person's messages arrive in the order they were written)."""
    earlier = aliased(OutboxMessage)
    blocked = exists().where(
        and_(
            col(earlier.recipient) == col(OutboxMessage.recipient),
            col(earlier.status) == "pending",
            col(earlier.id) < col(OutboxMessage.id),
        )
    )
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status == "pending",
            col(OutboxMessage.next_attempt_at) <= now,
            or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) < now),
            ~blocked,
        )
        .order_by(col(OutboxMessage.id))
        .limit(limit)
    )
    claimed = []
    for row in (await session.exec(stmt)).all():
        took = await session.exec(  # type: ignore[call-overload]
            update(OutboxMessage)
            .where(
                col(OutboxMessage.id) == row.id,
                or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) < now),
            )
            .values(claimed_until=now + lease)
        )
        if took.rowcount == 1:
            claimed.append(row)
    return claimed


async def mark_sent(session: AsyncSession, *, row_id: int, now: datetime) -> None:
    await _set(session, row_id, status="sent", sent_at=now, claimed_until=None, attempts=OutboxMessage.attempts + 1)


async def mark_retry(session: AsyncSession, *, row_id: int, at: datetime, error: str) -> None:
    await _set(
        session,
        row_id,
        next_attempt_at=at,
        claimed_until=None,
        last_error=error[:500],
        attempts=OutboxMessage.attempts + 1,
    )


async def release(session: AsyncSession, *, row_id: int) -> None:
    """Give the lease back without counting an attempt."""
    await _set(session, row_id, claimed_until=None)


async def mark_parked(session: AsyncSession, *, row_id: int, error: str) -> None:
    """Give up: the error says this will never succeed; kept, with the reason, for the dispatcher."""
    await _set(
        session,
        row_id,
        status="parked",
        claimed_until=None,
        last_error=error[:500],
        attempts=OutboxMessage.attempts + 1,
    )


async def _set(session: AsyncSession, row_id: int, **values: Any) -> None:
    await session.exec(update(OutboxMessage).where(col(OutboxMessage.id) == row_id).values(**values))  # type: ignore[call-overload]
