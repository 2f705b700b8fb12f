"""The outbox delivers to several people at once and records verdicts together, without losing a
push or reordering one person's pushes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from bot.outbox import LEASE, PARALLEL, OutboxWorker
from bot.wechat_api import Result, Verdict
from handlers.pushes import text_push
from storage import outbox
from storage.db import SessionFactory, create_engine, session_factory, transaction
from storage.models import OutboxMessage
from tests.conftest import FakeClock


class Gate:
    """A WeChat API whose answers wait until `open_at` calls are in flight at once (or forever)."""

    def __init__(self, open_at: int | None) -> None:
        self.open_at = open_at
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent: list[tuple[str, str]] = []
        self._open = asyncio.Event()

    async def __call__(self, recipient: str, payload: dict[str, Any]) -> Result:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.open_at is None or self.in_flight >= self.open_at:
            self._open.set()
        await self._open.wait()
        self.in_flight -= 1
        self.sent.append((recipient, payload["text"]["content"]))
        return Result(Verdict.SENT)


class HangsFor(Gate):
    """Answers at once, except for one person: that call never returns (a process about to die)."""

    def __init__(self, recipient: str) -> None:
        super().__init__(None)
        self.recipient = recipient

    async def __call__(self, recipient: str, payload: dict[str, Any]) -> Result:
        if recipient == self.recipient:
            await asyncio.Event().wait()
        return await super().__call__(recipient, payload)


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[SessionFactory]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def enqueue(factory: SessionFactory, clock: FakeClock, people: dict[str, int]) -> None:
    async with transaction(factory) as session:
        for recipient, count in people.items():
            for n in range(count):
                outbox.enqueue(session, recipient=recipient, payload=text_push(str(n)), now=clock.now())


async def statuses(factory: SessionFactory) -> dict[str, list[str]]:
    async with transaction(factory) as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row.recipient, []).append(row.status)
    return found


async def test_different_people_are_sent_to_at_once(factory: SessionFactory, clock: FakeClock) -> None:
    gate = Gate(open_at=PARALLEL)  # deadlocks unless PARALLEL calls are in flight together
    worker = OutboxWorker(factory, {"wechat_cs": gate}, clock)
    await enqueue(factory, clock, {f"person{n:02d}": 1 for n in range(PARALLEL + 4)})
    await asyncio.wait_for(worker.drain(), timeout=10)
    assert gate.most_in_flight == PARALLEL
    assert sorted(r for r, _ in gate.sent) == [f"person{n:02d}" for n in range(PARALLEL + 4)]
    assert all(s == ["sent"] for s in (await statuses(factory)).values())


async def test_one_persons_pushes_keep_their_order_among_others(factory: SessionFactory, clock: FakeClock) -> None:
    gate = Gate(open_at=None)
    worker = OutboxWorker(factory, {"wechat_cs": gate}, clock)
    await enqueue(factory, clock, {"busy": 6, **{f"person{n}": 2 for n in range(10)}})
    await worker.drain()
    assert [text for r, text in gate.sent if r == "busy"] == [str(n) for n in range(6)]
    assert len(gate.sent) == 26 and all(set(s) == {"sent"} for s in (await statuses(factory)).values())


async def test_verdicts_that_arrive_together_are_recorded_in_one_transaction(
    factory: SessionFactory, clock: FakeClock
) -> None:
    gate = Gate(open_at=PARALLEL)  # every answer arrives at the same moment
    worker = OutboxWorker(factory, {"wechat_cs": gate}, clock)
    await enqueue(factory, clock, {f"person{n}": 1 for n in range(PARALLEL)})
    begins: list[object] = []

    def began(conn: object) -> None:
        begins.append(conn)

    engine = factory.kw["bind"].sync_engine
    event.listen(engine, "begin", began)
    try:
        assert await worker.run_once() == PARALLEL
    finally:
        event.remove(engine, "begin", began)
    assert len(begins) == 2  # the claim, then every verdict
    assert all(s == ["sent"] for s in (await statuses(factory)).values())


async def test_a_batch_cut_short_loses_nothing_and_resends_only_what_was_not_recorded(
    factory: SessionFactory, clock: FakeClock
) -> None:
    hangs = HangsFor("person3")
    worker = OutboxWorker(factory, {"wechat_cs": hangs}, clock)
    await enqueue(factory, clock, {f"person{n}": 1 for n in range(6)})
    batch = asyncio.create_task(worker.run_once())
    for _ in range(10_000):  # until the five answered pushes are recorded
        if sum(s == ["sent"] for s in (await statuses(factory)).values()) == 5:
            break
        await asyncio.sleep(0)
    batch.cancel()  # the process stops while person3's call is still out
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert (await statuses(factory))["person3"] == ["pending"]
    healthy = Gate(open_at=None)
    later = OutboxWorker(factory, {"wechat_cs": healthy}, clock)
    await later.drain()
    assert healthy.sent == []  # still leased: nobody else takes it yet
    clock.advance(seconds=LEASE.total_seconds() + 1)
    await later.drain()
    assert healthy.sent == [("person3", "0")]  # sent again after the lease, and only it
    assert all(s == ["sent"] for s in (await statuses(factory)).values())
