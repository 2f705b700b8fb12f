"""The inbound message log: one row per WeChat message, written before WeChat gets an answer."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import SessionFactory, table_of, write_durably
from storage.models import InboundMessage
from storage.outbox import OUTBOX

INBOUND = table_of(InboundMessage)


def new_row(
    *,
    dedupe_key: str,
    channel: str,
    sender: str,
    msg_type: str,
    payload: dict[str, Any],
    now: datetime,
    reply_mode: str | None = None,
) -> dict[str, Any]:
    """The columns of a message to store (store_durably, store_in). A plain dict: building the SQLModel object
    (validation, ORM instrumentation) cost more than storing it, on every webhook call.
    `reply_mode` already set when it is stored: nobody waits for its passive reply (bot/receive.py,
    processing in its own process)."""
    return {
        "dedupe_key": dedupe_key,
        "channel": channel,
        "sender": sender,
        "msg_type": msg_type,
        "payload": payload,
        "received_at": now,
        "status": "received",
        "reply_mode": reply_mode,
    }


# store_durably's statements: dialect SQL, because each is what makes the store one step there.
# PostgreSQL: the batch as arrays, unnested into one INSERT, and waking what was held for the senders
# in the same statement (a data-modifying WITH), so that it is one round trip and its own transaction.
_STORE_PG = text("""
WITH stored AS (
    INSERT INTO inbound_message (dedupe_key, channel, sender, msg_type, payload, received_at, status, reply_mode)
    SELECT k, c, s, t, CAST(p AS json), r, 'received', m
    FROM unnest(CAST(:keys AS varchar[]), CAST(:channels AS varchar[]), CAST(:senders AS varchar[]),
                CAST(:types AS varchar[]), CAST(:payloads AS text[]), CAST(:received AS timestamptz[]),
                CAST(:modes AS varchar[])) AS batch(k, c, s, t, p, r, m)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING dedupe_key, id, sender
), woken AS (
    UPDATE outbox SET status = 'pending', next_attempt_at = :now, claimed_until = NULL
    WHERE status = 'held'
      AND recipient IN (SELECT sender FROM stored WHERE dedupe_key = ANY(CAST(:waking AS varchar[])))
)
SELECT dedupe_key, id FROM stored
""")
# SQLite: plain statements on the connection's thread, one row at a time (microseconds each there).
_STORE_SQLITE = (
    "INSERT INTO inbound_message (dedupe_key, channel, sender, msg_type, payload, received_at, status, reply_mode)"
    " VALUES (?, ?, ?, ?, ?, ?, 'received', ?) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
)
_WAKE_SQLITE = (
    "UPDATE outbox SET status = 'pending', next_attempt_at = ?, claimed_until = NULL"
    " WHERE status = 'held' AND recipient IN ({people})"
)


def _converters(dialect: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any], Callable[[Any], Any]]:
    """The payload's, received_at's and next_attempt_at's own conversions for this dialect: the rows
    are stored exactly as the ORM stores them."""
    payload = INBOUND.c.payload.type.bind_processor(dialect)
    stamp = INBOUND.c.received_at.type.bind_processor(dialect)
    due = OUTBOX.c.next_attempt_at.type.bind_processor(dialect)
    assert payload is not None and stamp is not None and due is not None
    return payload, stamp, due


def _pg_params(rows: list[dict[str, Any]], waking: set[str], now: datetime, dialect: Any) -> dict[str, Any]:
    """_STORE_PG's parameters: the rows as arrays."""
    payload, stamp, due = _converters(dialect)
    return {
        "keys": [r["dedupe_key"] for r in rows],
        "channels": [r["channel"] for r in rows],
        "senders": [r["sender"] for r in rows],
        "types": [r["msg_type"] for r in rows],
        "payloads": [payload(r["payload"]) for r in rows],
        "received": [stamp(r["received_at"]) for r in rows],
        "modes": [r["reply_mode"] for r in rows],
        "now": due(now),
        "waking": sorted(waking),
    }


async def _store_pg(
    conn: AsyncConnection, rows: list[dict[str, Any]], waking: set[str], now: datetime
) -> dict[str, int]:
    result = await conn.execute(_STORE_PG, _pg_params(rows, waking, now, conn.dialect))
    return {key: int(row_id) for key, row_id in result.all()}


def _store_sqlite(
    execute: Callable[[str, tuple[Any, ...]], Any], rows: list[dict[str, Any]], waking: set[str], now: datetime,
    dialect: Any,
) -> dict[str, int]:  # fmt: skip
    """_STORE_SQLITE row by row, then _WAKE_SQLITE; execute(sql, params) returns a cursor (sqlite3's
    or SQLAlchemy's)."""
    payload, stamp, due = _converters(dialect)
    ids: dict[str, int] = {}
    people: set[str] = set()
    for r in rows:
        values = (r["dedupe_key"], r["channel"], r["sender"], r["msg_type"], payload(r["payload"]),
                  stamp(r["received_at"]), r["reply_mode"])  # fmt: skip
        inserted = execute(_STORE_SQLITE, values).fetchone()
        if inserted is not None:
            ids[r["dedupe_key"]] = int(inserted[0])
            if r["dedupe_key"] in waking:
                people.add(r["sender"])
    if people:
        execute(_WAKE_SQLITE.format(people=", ".join("?" * len(people))), (due(now), *sorted(people)))
    return ids


async def store_durably(
    factory: SessionFactory, rows: list[dict[str, Any]], *, waking: set[str], now: datetime
) -> dict[str, int]:
    """The webhook's store (bot.receive.GroupCommit): the rows (new_row, distinct keys) committed
    durably in one step (storage.db.write_durably), dedupe key → id of each inserted now; a key
    stored before (WeChat retrying) is skipped. The senders of the rows inserted whose keys are in
    `waking` wrote to us: what was held for them is due now, in the same commit."""
    if not rows:
        return {}
    dialect = factory.kw["bind"].dialect

    async def on_postgresql(conn: AsyncConnection) -> dict[str, int]:
        return await _store_pg(conn, rows, waking, now)

    def on_sqlite(db: sqlite3.Connection) -> dict[str, int]:
        return _store_sqlite(db.execute, rows, waking, now, dialect)

    return await write_durably(factory, sqlite=on_sqlite, postgresql=on_postgresql)


async def store_in(
    session: AsyncSession, rows: list[dict[str, Any]], *, waking: set[str], now: datetime
) -> dict[str, int]:
    """The same statements as store_durably, in the caller's transaction: the warm-up (rolled back)
    and tests that store a message as a server would."""
    if not rows:
        return {}
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        return await _store_pg(conn, rows, waking, now)
    return await conn.run_sync(lambda sync: _store_sqlite(sync.exec_driver_sql, rows, waking, now, sync.dialect))


async def by_key(session: AsyncSession, dedupe_key: str) -> InboundMessage | None:
    return (await session.exec(select(InboundMessage).where(InboundMessage.dedupe_key == dedupe_key))).first()


# Built once: they run for every message (building a statement costs more CPU than running it).
_CLAIM = (
    update(INBOUND)
    .where(INBOUND.c.id == bindparam("row_id"), INBOUND.c.status == "received")
    .values(status="processed", processed_at=bindparam("now"))
    .returning(INBOUND.c.reply_mode, INBOUND.c.received_at)
)
_FINISH = (
    update(INBOUND)
    .where(INBOUND.c.id == bindparam("row_id"))
    .values(reply=bindparam("reply"), reply_mode=bindparam("mode"), case_id=bindparam("case"))
)


class Claimed(NamedTuple):
    reply_mode: str | None  # set before processing: the webhook does not wait for a passive reply
    received_at: datetime


async def claim(session: AsyncSession, *, row_id: int, now: datetime) -> Claimed | None:
    """Take the message for processing. Exactly one caller, in any process, gets it; the row stays
    locked until that caller's transaction ends, so `abandon` waits for it."""
    result = await session.exec(_CLAIM, params={"row_id": row_id, "now": now})  # type: ignore[call-overload]
    row = result.first()
    return None if row is None else Claimed(row.reply_mode, row.received_at)


_ABANDON = (
    update(INBOUND)
    .where(INBOUND.c.id == bindparam("row_id"), INBOUND.c.status == "received", INBOUND.c.reply_mode.is_(None))
    .values(reply_mode="customer_service")
)


async def abandon(session: AsyncSession, *, row_id: int) -> bool:
    """The webhook stops waiting for this message's passive reply: True when processing has not
    taken it yet (it will reply through customer service). False: processing committed first (or
    is committing: this waits for its row lock), and the reply is in the row."""
    result = await session.exec(_ABANDON, params={"row_id": row_id})  # type: ignore[call-overload]
    return bool(result.rowcount == 1)


_OUTCOME = select(INBOUND.c.status, INBOUND.c.reply_mode, INBOUND.c.reply).where(INBOUND.c.id == bindparam("row_id"))


async def outcome(session: AsyncSession, *, row_id: int) -> tuple[str, str | None, str | None]:
    """(status, reply_mode, reply) of a stored message."""
    status, mode, reply = (await session.exec(_OUTCOME, params={"row_id": row_id})).one()  # type: ignore[call-overload]
    return status, mode, reply


_OUTCOMES = select(INBOUND.c.id, INBOUND.c.status, INBOUND.c.reply_mode, INBOUND.c.reply).where(
    INBOUND.c.id.in_(bindparam("row_ids", expanding=True)), INBOUND.c.status != "received"
)


async def outcomes(session: AsyncSession, *, row_ids: list[int]) -> dict[int, tuple[str, str | None, str | None]]:
    """Of these messages, the ones processed (or failed): id → (status, reply_mode, reply)."""
    rows = (await session.exec(_OUTCOMES, params={"row_ids": row_ids})).all()  # type: ignore[call-overload]
    return {int(row_id): (status, mode, reply) for row_id, status, mode, reply in rows}


# In the order of ix_inbound_pending (status, received_at): a range of the index, not a sort of
# every waiting row (after a flood, tens of thousands) each time the processing process looks.
_PENDING = (
    select(INBOUND.c.id, INBOUND.c.payload, INBOUND.c.reply_mode, INBOUND.c.received_at)
    .where(INBOUND.c.status == "received")
    .order_by(INBOUND.c.received_at, INBOUND.c.id)
    .limit(bindparam("limit"))
)
_COUNT_PENDING = select(func.count()).select_from(
    select(INBOUND.c.id).where(INBOUND.c.status == "received").limit(bindparam("limit")).subquery()
)
_NEWEST = select(func.max(INBOUND.c.id))


class Pending(NamedTuple):
    id: int
    payload: dict[str, Any]
    reply_mode: str | None  # None: its webhook may be waiting for the passive reply
    received_at: datetime


async def pending(session: AsyncSession, *, limit: int) -> list[Pending]:
    """The oldest messages not processed yet."""
    rows = (await session.exec(_PENDING, params={"limit": limit})).all()  # type: ignore[call-overload]
    return [Pending(int(row_id), payload, mode, at) for row_id, payload, mode, at in rows]


async def newest_id(session: AsyncSession) -> int:
    """The id of the message stored last (0: none yet): how many arrived since, across processes."""
    return int((await session.exec(_NEWEST)).one() or 0)  # type: ignore[call-overload]


async def count_pending(session: AsyncSession, *, limit: int) -> int:
    """How many messages wait for processing, counted up to `limit` (an index range, not a scan)."""
    return int((await session.exec(_COUNT_PENDING, params={"limit": limit})).one())  # type: ignore[call-overload]


async def finish(session: AsyncSession, *, row_id: int, reply: str | None, mode: str, case_id: int | None) -> None:
    params = {"row_id": row_id, "reply": reply, "mode": mode, "case": case_id}
    await session.exec(_FINISH, params=params)  # type: ignore[call-overload]


async def mark_failed(session: AsyncSession, *, row_id: int, now: datetime) -> None:
    stmt = update(InboundMessage).where(col(InboundMessage.id) == row_id).values(status="failed", processed_at=now)
    await session.exec(stmt)  # type: ignore[call-overload]


async def unprocessed(session: AsyncSession, *, received_before: datetime, limit: int = 100) -> list[int]:
    """Messages stored but never processed (the process died after acknowledging them)."""
    stmt = (
        select(InboundMessage.id)
        .where(InboundMessage.status == "received", col(InboundMessage.received_at) < received_before)
        .order_by(col(InboundMessage.id))
        .limit(limit)
    )
    return [int(i) for i in (await session.exec(stmt)).all() if i is not None]


_COUNTS_FROM = select(
    func.count().filter(col(InboundMessage.received_at) >= bindparam("recent")),
    func.count(),
).where(InboundMessage.sender == bindparam("sender"), col(InboundMessage.received_at) >= bindparam("earlier"))


async def counts_from(session: AsyncSession, *, sender: str, since: tuple[datetime, datetime]) -> tuple[int, int]:
    """How many messages this sender sent since each of two times (the later first), in one query."""
    recent, earlier = since
    params = {"recent": recent, "earlier": earlier, "sender": sender}
    first, second = (await session.exec(_COUNTS_FROM, params=params)).one()  # type: ignore[call-overload]
    return int(first), int(second)


async def last_from(session: AsyncSession, *, sender: str) -> datetime | None:
    """When this sender last wrote to us (WeChat's 48-hour customer-service window starts there).
    Events do not count: most open no window (TEMPLATESENDJOBFINISH, LOCATION, VIEW), and the few
    that do (subscribe, CLICK, SCAN) allow only 3 messages within 1 minute."""
    stmt = select(func.max(InboundMessage.received_at)).where(
        InboundMessage.sender == sender, InboundMessage.msg_type != "event"
    )
    return (await session.exec(stmt)).one()


async def get(session: AsyncSession, row_id: int) -> InboundMessage | None:
    return await session.get(InboundMessage, row_id)


async def loose_media(session: AsyncSession, *, sender: str, since: datetime) -> list[InboundMessage]:
    """Photos a resident sent recently that are not attached to any case yet."""
    stmt = (
        select(InboundMessage)
        .where(
            InboundMessage.sender == sender,
            InboundMessage.msg_type == "image",
            col(InboundMessage.case_id).is_(None),
            col(InboundMessage.received_at) >= since,
        )
        .order_by(col(InboundMessage.id))
    )
    return list((await session.exec(stmt)).all())


async def attach_to_case(session: AsyncSession, *, row_ids: list[int], case_id: int) -> None:
    if row_ids:
        stmt = update(InboundMessage).where(col(InboundMessage.id).in_(row_ids)).values(case_id=case_id)
        await session.exec(stmt)  # type: ignore[call-overload]
