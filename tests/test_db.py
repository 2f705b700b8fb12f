"""storage.db: how far a commit goes, and SQLite statements run inline while another process writes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import text

from storage.db import SessionFactory, transaction
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's synchronous setting and write lock")

NORMAL, FULL = 1, 2  # PRAGMA synchronous


async def _hold_the_write_lock(factory: SessionFactory, holding: asyncio.Event, release: asyncio.Event) -> None:
    """Another connection (another process, with its own factory) holds SQLite's write lock until
    `release`; `holding` once it does."""
    async with transaction(factory) as session:
        await session.exec(text("UPDATE staff SET last_ref = last_ref + 1"))  # type: ignore[call-overload]
        holding.set()
        await release.wait()


async def _synchronous(factory: SessionFactory, *, durable: bool) -> int:
    async with transaction(factory, durable=durable) as session:
        return int((await session.exec(text("PRAGMA synchronous"))).scalar_one())  # type: ignore[call-overload]


async def test_a_durable_transaction_waits_for_the_disk_and_the_next_one_does_not(
    process_db: Callable[[], SessionFactory],
) -> None:
    factory = process_db()
    assert await _synchronous(factory, durable=False) == NORMAL
    assert await _synchronous(factory, durable=True) == FULL
    assert await _synchronous(factory, durable=False) == NORMAL


async def test_the_webhooks_one_step_store_waits_for_the_disk_and_the_next_transaction_does_not(
    process_db: Callable[[], SessionFactory],
) -> None:
    """storage.db.write_durably (the inbound store) commits with synchronous=FULL on SQLite's thread;
    the pooled connection then goes back to NORMAL for the next ordinary transaction."""
    import sqlite3

    from storage.db import write_durably

    factory = process_db()
    assert await _synchronous(factory, durable=False) == NORMAL

    def inside(db: sqlite3.Connection) -> tuple[int, bool]:
        return int(db.execute("PRAGMA synchronous").fetchone()[0]), db.in_transaction

    async def never(conn: object) -> tuple[int, bool]:
        raise AssertionError("PostgreSQL only")

    assert await write_durably(factory, sqlite=inside, postgresql=never) == (FULL, True)
    assert await _synchronous(factory, durable=False) == NORMAL
    assert await write_durably(factory, sqlite=inside, postgresql=never) == (FULL, True)
    async with transaction(factory) as session:  # the store's polling for the lock left it as it was
        busy = (await session.exec(text("PRAGMA busy_timeout"))).scalar_one()  # type: ignore[call-overload]
    assert busy == 15_000


async def test_a_store_that_cannot_get_the_write_lock_in_time_fails_as_sqlalchemy_does(
    process_db: Callable[[], SessionFactory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding SQLite's write lock past the busy timeout: the store raises
    SQLAlchemy's OperationalError (the webhook answers 503 and WeChat tries again), and stores once
    the lock is free."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import OperationalError

    import storage.db
    from storage import inbound

    monkeypatch.setattr(storage.db, "BUSY_TIMEOUT", 0.2)
    other, ours = process_db(), process_db()
    holding, release = asyncio.Event(), asyncio.Event()

    now = datetime.now(UTC)
    row = inbound.new_row(dedupe_key="k", channel="wechat", sender="o", msg_type="text", payload={}, now=now)
    holder = asyncio.create_task(_hold_the_write_lock(other, holding, release))
    await holding.wait()
    with pytest.raises(OperationalError, match="locked"):
        await inbound.store_durably(ours, [row], waking=set(), now=now)
    release.set()
    await holder
    assert list(await inbound.store_durably(ours, [row], waking=set(), now=now)) == ["k"]


async def test_a_transaction_waits_for_another_process_writer_without_stalling_the_loop(
    process_db: Callable[[], SessionFactory],
) -> None:
    """BEGIN IMMEDIATE waits (busy_timeout) on aiosqlite's thread: the event loop keeps running."""
    from datetime import UTC, datetime

    from storage import inbound

    other, ours = process_db(), process_db()
    ticks = 0
    holding, release, hundred_ticks = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not release.is_set():
            ticks += 1
            if ticks == 100:
                hundred_ticks.set()
            await asyncio.sleep(0)

    holder = asyncio.create_task(_hold_the_write_lock(other, holding, release))
    await holding.wait()
    ticker = asyncio.create_task(tick())
    waiting = asyncio.create_task(_synchronous(ours, durable=False))
    now = datetime.now(UTC)  # and the webhook's one-step store, from a third process
    row = inbound.new_row(dedupe_key="k", channel="wechat", sender="o", msg_type="text", payload={}, now=now)
    storing = asyncio.create_task(inbound.store_durably(process_db(), [row], waking=set(), now=now))
    await hundred_ticks.wait()  # the loop runs while our transaction and the store wait for the lock
    assert not waiting.done() and not storing.done()
    release.set()
    await holder
    await ticker
    assert await waiting == NORMAL
    assert list(await storing) == ["k"]


async def test_storing_a_message_goes_before_the_queued_processing(database_url: str) -> None:
    """Inside one process, a durable transaction (an inbound message being stored) waits only for
    the one running now, not for everything queued before it."""
    from datetime import UTC, datetime

    from storage import inbound
    from storage.db import create_engine, session_factory

    engine = create_engine(database_url)
    factory = session_factory(engine)
    order: list[str] = []
    running, finish = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with transaction(factory):
            running.set()
            await finish.wait()
        order.append("running")

    async def one(name: str, durable: bool) -> None:
        async with transaction(factory, durable=durable):
            order.append(name)

    async def webhook_store() -> None:  # the one-step store (storage.db.write_durably)
        await inbound.store_durably(factory, [row], waking=set(), now=now)
        order.append("webhook store")

    now = datetime.now(UTC)
    row = inbound.new_row(dedupe_key="k", channel="wechat", sender="o", msg_type="text", payload={}, now=now)
    tasks = [asyncio.create_task(first())]
    await running.wait()
    for name, durable in (("processing 1", False), ("processing 2", False), ("store", True)):
        tasks.append(asyncio.create_task(one(name, durable)))
        await asyncio.sleep(0)  # queued in this order
    tasks.append(asyncio.create_task(webhook_store()))
    await asyncio.sleep(0)
    finish.set()
    await asyncio.gather(*tasks)
    await engine.dispose()
    assert order == ["running", "store", "webhook store", "processing 1", "processing 2"]


async def test_claiming_pushes_looks_up_each_recipients_older_pending_by_index(
    process_db: Callable[[], SessionFactory],
) -> None:
    """The outbox claim skips a push while an older one to the same person is pending. Without an
    index on (recipient, status, id) that check walked every push the person ever had: after a flood
    one claim took 5 s (benchmarks/outbox_backlog.py). The plan must use the index."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.dialects import sqlite

    from storage import outbox

    factory = process_db()
    captured: list[str] = []
    async with transaction(factory) as session:
        conn = await session.connection()

        def plan(statement: str, params: tuple[object, ...]) -> None:
            captured.extend(
                str(r[-1])
                for r in conn.sync_connection.exec_driver_sql(  # type: ignore[union-attr]
                    "EXPLAIN QUERY PLAN " + statement, params
                ).all()
            )

        real_exec = session.exec

        async def explained(stmt: object, *args: object, **kw: object) -> object:
            if not captured:
                compiled = stmt.compile(dialect=sqlite.dialect())  # type: ignore[attr-defined]
                await conn.run_sync(lambda _: plan(str(compiled), tuple(compiled.params.values())))
            return await real_exec(stmt, *args, **kw)  # type: ignore[arg-type]

        session.exec = explained  # type: ignore[method-assign]
        await outbox.claim_due(session, now=datetime.now(UTC), lease=timedelta(seconds=10))
    assert any("ix_outbox_recipient_open" in line for line in captured), captured


async def test_a_read_goes_past_the_writer_queue(database_url: str) -> None:
    """The outbox's delivery rules read before every push: while message processing holds the
    writer (with more queued behind it), a read runs at once."""
    from storage.db import create_engine, reading, session_factory

    engine = create_engine(database_url)
    factory = session_factory(engine)
    writing, finish = asyncio.Event(), asyncio.Event()

    writer = asyncio.create_task(_hold_the_write_lock(factory, writing, finish))
    await writing.wait()
    queued = asyncio.create_task(_synchronous(factory, durable=False))

    async def read() -> None:
        async with reading(factory) as session:
            await session.exec(text("SELECT count(*) FROM staff"))  # type: ignore[call-overload]

    await asyncio.wait_for(read(), timeout=5)  # behind the writer it would never run
    assert not queued.done()  # while a write transaction still waits its turn
    finish.set()
    await asyncio.gather(writer, queued)
    await engine.dispose()
