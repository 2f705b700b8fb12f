"""The outbox: pushes written in the same transaction as the change they announce.

A row's status: pending (to deliver), sent, parked (never will be, with the reason), held (cannot
reach the person until they next write; woken with their message, storage.inbound.store_durably),
merged (travels inside the row named by merged_into_id: delivered when that one is, with sent_at set
then).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, or_, update
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import table_of
from storage.models import Case, OutboxMessage

# The UPDATEs below run as plain SQL (see table_of): no outbox row they change is loaded in the
# session, except by claim_due, which syncs the rows it returns itself.
OUTBOX = table_of(OutboxMessage)
_OPEN = ("pending", "held")


def enqueue(
    session: AsyncSession,
    *,
    recipient: str,
    payload: dict[str, Any],
    now: datetime,
    case_id: int | None = None,
    channel: str = "wechat_cs",
    kind: str | None = None,
) -> OutboxMessage:
    row = OutboxMessage(
        channel=channel,
        recipient=recipient,
        payload=payload,
        case_id=case_id,
        kind=kind,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


PING = "ping"


async def cancel_pings(session: AsyncSession, *, case_id: int) -> int:
    """The follow-up engine's reminders about a case not yet delivered: moot once the case moves on.
    A ping that carries other updates merged into it is kept (they would go with it)."""
    child = OUTBOX.alias()
    carries = exists().where(child.c.merged_into_id == OUTBOX.c.id)
    stmt = (
        update(OUTBOX)
        .where(OUTBOX.c.case_id == case_id, OUTBOX.c.kind == PING, OUTBOX.c.status.in_(_OPEN), ~carries)
        .values(status="cancelled", claimed_until=None)
    )
    return int((await session.exec(stmt)).rowcount)  # type: ignore[call-overload]


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
    due = list((await session.exec(stmt)).all())
    if not due:
        return []
    # One UPDATE for the batch, with the lease condition again: RETURNING names the rows it took. A
    # row another process leased since the SELECT is not among them (PostgreSQL re-checks the
    # condition on the row once that process commits; SQLite has one writer at a time).
    took = await session.exec(  # type: ignore[call-overload]
        update(OUTBOX)
        .where(
            OUTBOX.c.id.in_([row.id for row in due]),
            or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < now),
        )
        .values(claimed_until=now + lease)
        .returning(OUTBOX.c.id)
    )
    ours = set(took.scalars().all())
    claimed = [row for row in due if row.id in ours]
    for row in claimed:
        set_committed_value(row, "claimed_until", now + lease)
    return claimed


# Marking pushes sent (every push runs both): built once, the values bound when they run, as
# building a statement, and SQLAlchemy's cache key for it, costs more CPU than running it.
_SENT = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(
        status="sent",
        sent_at=bindparam("now"),
        claimed_until=None,
        attempts=OUTBOX.c.attempts + 1,
        channel=func.coalesce(bindparam("went_on", type_=OUTBOX.c.channel.type), OUTBOX.c.channel),
    )
)
_PARENT_ROW = OUTBOX.alias()
# The rows merged into a sent row earlier (while it was held) went with it, when it did.
_CARRIED = (
    update(OUTBOX)
    .where(OUTBOX.c.merged_into_id.in_(bindparam("into", expanding=True)), OUTBOX.c.status == "merged")
    .values(
        sent_at=select(_PARENT_ROW.c.sent_at).where(_PARENT_ROW.c.id == OUTBOX.c.merged_into_id).scalar_subquery(),
        claimed_until=None,
    )
)
# `row_ids` travel inside `into` from now on, and so do the rows merged into it before (while it
# was held) — only rows still undelivered: one that was sent or parked meanwhile keeps its own fate.
_MERGE = (
    update(OUTBOX)
    .where(
        OUTBOX.c.id != bindparam("into"),
        or_(
            and_(OUTBOX.c.id.in_(bindparam("row_ids", expanding=True)), OUTBOX.c.status.in_((*_OPEN, "merged"))),
            and_(OUTBOX.c.merged_into_id == bindparam("into"), OUTBOX.c.status == "merged"),
        ),
    )
    .values(status="merged", merged_into_id=bindparam("into"), sent_at=bindparam("at"), claimed_until=None)
)


@dataclass(frozen=True)
class Sent:
    """A delivered row. `channel`: the channel it actually went out on, when not its own (a template
    message instead of a customer-service one); `merged`: rows delivered inside it."""

    row_id: int
    at: datetime
    channel: str | None = None
    merged: Sequence[int] = ()


async def mark_sent(session: AsyncSession, sent: Sequence[Sent]) -> None:
    """Delivered, several rows at once: two statements for any number of plain pushes."""
    if not sent:
        return
    params = [{"row_id": s.row_id, "now": s.at, "went_on": s.channel} for s in sent]
    await session.exec(_SENT, params=params)  # type: ignore[call-overload]
    carriers = [s.row_id for s in sent if not s.merged]
    if carriers:
        await session.exec(_CARRIED, params={"into": carriers})  # type: ignore[call-overload]
    for s in sent:
        if s.merged:  # rare (a merged update or a fallback): the rows it carries now are re-pointed
            await _merge(session, into=s.row_id, row_ids=s.merged, sent_at=s.at)


async def hold(session: AsyncSession, *, row_id: int, error: str, merged: Sequence[int] = ()) -> None:
    """Keep the row (and the rows merged into it) until the recipient writes again."""
    await _set(session, row_id, status="held", claimed_until=None, last_error=error[:500])
    if merged:
        await _merge(session, into=row_id, row_ids=merged, sent_at=None)


async def _merge(session: AsyncSession, *, into: int, row_ids: Sequence[int], sent_at: datetime | None) -> None:
    params = {"into": into, "row_ids": list(row_ids), "at": sent_at}
    await session.exec(_MERGE, params=params)  # type: ignore[call-overload]


async def cancel_unsent(session: AsyncSession, *, reason: str) -> int:
    """Cancel every push not yet delivered (the demo's replayed past: nobody is there to receive it)."""
    result = await session.exec(  # type: ignore[call-overload]
        update(OutboxMessage)
        .where(col(OutboxMessage.status).in_(("pending", "held")))
        .values(status="cancelled", claimed_until=None, last_error=reason)
    )
    return int(result.rowcount or 0)


async def reschedule(session: AsyncSession, *, row_id: int, at: datetime) -> None:
    """Not now (a rate limit): due again at `at`, without counting an attempt."""
    await _set(session, row_id, next_attempt_at=at, claimed_until=None)


_COUNT_SENT = select(func.count()).where(  # built once, as _SENT: before every customer-service push
    OutboxMessage.recipient == bindparam("recipient"),
    OutboxMessage.channel == bindparam("channel"),
    col(OutboxMessage.sent_at) >= bindparam("since"),
    OutboxMessage.status == "sent",
)


async def count_sent(session: AsyncSession, *, recipient: str, channel: str, since: datetime) -> int:
    """How many messages went to this recipient on this channel since `since` (the 48 h quota)."""
    params = {"recipient": recipient, "channel": channel, "since": since}
    return int((await session.exec(_COUNT_SENT, params=params)).one())


async def recent_sent_times(
    session: AsyncSession, *, recipient: str, channel: str, since: datetime, limit: int
) -> list[datetime]:
    """When the latest `limit` messages to this recipient went out after `since`, newest first
    (sliding-window rate limits, shared by every process through the table)."""
    stmt = (
        select(OutboxMessage.sent_at)
        .where(
            OutboxMessage.recipient == recipient,
            OutboxMessage.channel == channel,
            col(OutboxMessage.sent_at) > since,
            OutboxMessage.status == "sent",
        )
        .order_by(col(OutboxMessage.sent_at).desc())
        .limit(limit)
    )
    return [t for t in (await session.exec(stmt)).all() if t is not None]


def _open_rows(row: type[OutboxMessage]) -> ColumnElement[bool]:
    return and_(
        col(row.recipient) == bindparam("recipient"),
        col(row.channel) == bindparam("channel"),
        col(row.status).in_(_OPEN),
    )


_PARENT = aliased(OutboxMessage)
# Built once, as _SENT (it runs before every customer-service push): the open rows and the rows
# merged into them, in one statement.
_UNDELIVERED = (
    select(OutboxMessage)
    .where(
        or_(
            _open_rows(OutboxMessage),
            and_(
                col(OutboxMessage.status) == "merged",
                col(OutboxMessage.merged_into_id).in_(select(_PARENT.id).where(_open_rows(_PARENT))),
            ),
        )
    )
    .order_by(col(OutboxMessage.id))
)


async def undelivered(session: AsyncSession, *, recipient: str, channel: str) -> list[OutboxMessage]:
    """Everything still to reach this recipient on this channel, oldest first: pending and held rows
    and the rows merged into them."""
    return list((await session.exec(_UNDELIVERED, params={"recipient": recipient, "channel": channel})).all())


async def mark_retry(session: AsyncSession, *, row_id: int, at: datetime, error: str) -> None:
    await _set(
        session,
        row_id,
        next_attempt_at=at,
        claimed_until=None,
        last_error=error[:500],
        attempts=OUTBOX.c.attempts + 1,
    )


async def release(session: AsyncSession, *, row_ids: Sequence[int]) -> None:
    """Give the leases back without counting an attempt."""
    stmt = update(OUTBOX).where(OUTBOX.c.id.in_(list(row_ids))).values(claimed_until=None)
    await session.exec(stmt)  # type: ignore[call-overload]


async def mark_parked(session: AsyncSession, *, row_id: int, error: str) -> None:
    """Give up: the error says this will never succeed; kept, with the reason, for the dispatcher."""
    await _set(
        session,
        row_id,
        status="parked",
        claimed_until=None,
        last_error=error[:500],
        attempts=OUTBOX.c.attempts + 1,
    )


async def parked(
    session: AsyncSession, *, since: datetime, grid_ids: Sequence[int] | None, limit: int
) -> list[tuple[OutboxMessage, Case | None]]:
    """Parked pushes queued since `since`, newest first, with their case. `grid_ids`: only pushes about
    cases on these nodes; None: every parked push, including those about no case (digests, notices)."""
    stmt = (
        select(OutboxMessage, Case)
        .join(Case, col(Case.id) == col(OutboxMessage.case_id), isouter=True)
        .where(OutboxMessage.status == "parked", col(OutboxMessage.created_at) >= since)
        .order_by(col(OutboxMessage.id).desc())
        .limit(limit)
    )
    if grid_ids is not None:
        stmt = stmt.where(col(Case.grid_id).in_(list(grid_ids)))
    return [(row, case) for row, case in (await session.exec(stmt)).all()]


async def requeue(session: AsyncSession, *, row_ids: Sequence[int], now: datetime) -> int:
    """Parked pushes sent again (the dispatcher fixed the cause): due now, attempts counted afresh."""
    stmt = (
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(list(row_ids)), col(OutboxMessage.status) == "parked")
        .values(status="pending", next_attempt_at=now, claimed_until=None, attempts=0)
        .execution_options(synchronize_session=False)
    )
    return int((await session.exec(stmt)).rowcount)  # type: ignore[call-overload]


async def _set(session: AsyncSession, row_id: int, **values: Any) -> None:
    # The delivery loop's verdicts, each in its own transaction with no outbox row loaded.
    await session.exec(update(OUTBOX).where(OUTBOX.c.id == row_id).values(**values))  # type: ignore[call-overload]
