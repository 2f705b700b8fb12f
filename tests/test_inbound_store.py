"""storage.inbound.store_durably: the webhook's store in one step (one statement on PostgreSQL, one
hop to SQLite's thread), stored exactly as the ORM stores a message, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage import inbound, outbox
from storage.db import SessionFactory, reading, transaction
from storage.models import InboundMessage, OutboxMessage
from tests.conftest import ON_POSTGRES, FakeClock

PAYLOAD = {"kind": "text", "text": "幸福里小区3号楼东侧路灯坏了 <b>&amp;</b> '; DROP TABLE cases; --", "msg_id": 7}


def _row(clock: FakeClock, key: str, sender: str, **kw: object) -> dict[str, object]:
    return inbound.new_row(
        dedupe_key=key, channel="wechat", sender=sender, msg_type="text", payload=PAYLOAD, now=clock.now(), **kw
    )  # type: ignore[arg-type]


async def _held_for(factory: SessionFactory, clock: FakeClock, *people: str) -> None:
    async with transaction(factory) as session:
        for person in people:
            outbox.enqueue(session, channel="wechat_cs", recipient=person, payload={"text": "进展"}, now=clock.now())
        await session.flush()
        for row in (await session.exec(select(OutboxMessage))).all():
            row.status = "held"


async def _statuses(factory: SessionFactory) -> dict[str, str]:
    async with reading(factory) as session:
        return {r.recipient: r.status for r in (await session.exec(select(OutboxMessage))).all()}


async def test_a_batch_is_stored_as_the_orm_stores_it_and_a_retry_is_skipped(
    process_db: Callable[[], SessionFactory], clock: FakeClock
) -> None:
    factory = process_db()
    first = await inbound.store_durably(
        factory, [_row(clock, "a:1", "o_a"), _row(clock, "b:1", "o_b", reply_mode="customer_service")],
        waking=set(), now=clock.now(),
    )  # fmt: skip
    assert set(first) == {"a:1", "b:1"}
    clock.advance(seconds=3)
    again = await inbound.store_durably(
        factory, [_row(clock, "a:1", "o_a"), _row(clock, "c:1", "o_c")], waking=set(), now=clock.now()
    )
    assert list(again) == ["c:1"]  # WeChat's retry of a:1 got no new row, and did not undo c:1
    async with reading(factory) as session:
        rows = {r.dedupe_key: r for r in (await session.exec(select(InboundMessage))).all()}
    assert sorted(rows) == ["a:1", "b:1", "c:1"]
    a = rows["a:1"]
    assert a.id == first["a:1"] and a.payload == PAYLOAD and a.sender == "o_a" and a.status == "received"
    assert a.received_at == clock.now() - timedelta(seconds=3)  # aware UTC, as the ORM reads it back
    assert a.reply_mode is None and rows["b:1"].reply_mode == "customer_service"
    async with reading(factory) as session:  # processing finds them as it finds any, oldest first
        pending = [row.id for row in await inbound.pending(session, limit=10)]
    assert sorted(pending[:2]) == sorted(first.values()) and pending[2:] == [again["c:1"]]


async def test_what_was_held_wakes_only_for_a_new_message_that_wakes(
    process_db: Callable[[], SessionFactory], clock: FakeClock
) -> None:
    """A message opens the customer-service window: what was held for its sender is due, in the same
    commit. An event does not (it is not in `waking`), nor does WeChat's retry of an old message."""
    factory = process_db()
    await inbound.store_durably(factory, [_row(clock, "old:1", "o_retry")], waking=set(), now=clock.now())
    await _held_for(factory, clock, "o_writes", "o_event", "o_retry", "o_silent")
    await inbound.store_durably(
        factory,
        [_row(clock, "w:1", "o_writes"), _row(clock, "e:1", "o_event"), _row(clock, "old:1", "o_retry")],
        waking={"w:1", "old:1"},
        now=clock.now(),
    )
    assert await _statuses(factory) == {
        "o_writes": "pending", "o_event": "held", "o_retry": "held", "o_silent": "held"
    }  # fmt: skip


async def test_a_batch_the_database_refuses_is_stored_not_at_all(
    process_db: Callable[[], SessionFactory], clock: FakeClock
) -> None:
    """All or nothing, and the error is SQLAlchemy's on both databases (the webhook answers 503 for
    those, so WeChat tries again), not the driver's."""
    factory = process_db()
    await _held_for(factory, clock, "o_good")
    bad = _row(clock, "bad:1", "o_bad")
    bad["channel"] = None  # NOT NULL
    with pytest.raises(IntegrityError):
        await inbound.store_durably(factory, [_row(clock, "good:1", "o_good"), bad], waking={"good:1"}, now=clock.now())
    async with reading(factory) as session:
        assert (await session.exec(select(InboundMessage))).all() == []
    assert await _statuses(factory) == {"o_good": "held"}
    assert list(await inbound.store_durably(factory, [_row(clock, "good:1", "o_good")], waking=set(), now=clock.now()))


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's transactions")
async def test_a_read_on_postgresql_is_not_a_transaction_of_its_own(process_db: Callable[[], SessionFactory]) -> None:
    """storage.db.reading: each statement in autocommit (under READ COMMITTED each reads its own
    snapshot anyway), without the BEGIN and COMMIT round trips: the webhook's reply watch and its
    pending count run one every few milliseconds. now() is the transaction's start: it moves."""
    factory = process_db()
    async with reading(factory) as session:
        first = (await session.exec(text("SELECT clock_timestamp(), now()"))).one()  # type: ignore[call-overload]
        await asyncio.sleep(0.01)
        second = (await session.exec(text("SELECT now()"))).scalar_one()  # type: ignore[call-overload]
    assert second > first[0] >= first[1]
