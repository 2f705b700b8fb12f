"""Engine, sessions and migrations: the one async recipe for SQLModel in this project."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, InvalidatePoolError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"

SessionFactory = async_sessionmaker[AsyncSession]
POOL_SIZE = 20  # connections each process keeps open to PostgreSQL (bot.receive: who uses them)
WRITE_LOCK_POLL = 0.001  # seconds between tries for another process's SQLite write lock (the store)
BUSY_TIMEOUT = 15.0  # seconds a connection waits for SQLite's write lock (PRAGMA busy_timeout)


def create_engine(url: str, **kw: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A short connect timeout: with the server unreachable a webhook answers 503 while WeChat
        # still waits (5 s), rather than after asyncpg's default minute.
        kw.setdefault("connect_args", {"timeout": 3})
        # Kept open, not just allowed: what is open at once under load (processing 8, the outbox's 8
        # lanes, the inbound store, the scheduler) passed SQLAlchemy's default 5, and every connection
        # past the pool was closed on return and opened again (a new server process each time; seen
        # in `top` under webhook_load, though the figures did not move measurably).
        kw.setdefault("pool_size", POOL_SIZE)
        kw.setdefault("max_overflow", 10)
        # Last in, first out: under load the same few connections are used again and again, warm,
        # and the rest sit idle (and get the ping below when next used).
        engine = create_async_engine(url, pool_use_lifo=True, **kw)
        _ping_when_idle(engine)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url, connect_args={"timeout": 15, "check_same_thread": False, "async_creator_fn": _inline_connect}, **kw
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let us issue BEGIN ourselves (SQLAlchemy's documented aiosqlite recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        cur.close()
        record.info["synchronous"] = "NORMAL"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # How far a commit goes (see `transaction`); SQLite refuses to change it inside a transaction.
        wanted = "FULL" if conn.get_execution_options().get(DURABLE) else "NORMAL"
        info = conn.connection.info
        if info.get("synchronous") != wanted:
            conn.exec_driver_sql(f"PRAGMA synchronous={wanted}")
            info["synchronous"] = wanted
        # Take the write lock up front: a deferred transaction that reads and then writes fails
        # with "database is locked" instead of waiting when another writer got there first.
        # A `reading` one never writes: in WAL it reads its snapshot while another connection writes.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READING) else "BEGIN IMMEDIATE")

    return engine


PING_AFTER_IDLE = 1.0  # seconds a pooled PostgreSQL connection may sit unused and be handed out unchecked


def _ping_when_idle(engine: AsyncEngine) -> None:
    """A pooled connection that died with a server restart is replaced, not handed out: the checks
    of SQLAlchemy's pool_pre_ping, but only for a connection that sat unused for PING_AFTER_IDLE.
    Its ping is three round trips on asyncpg (BEGIN, an empty statement, ROLLBACK) for every
    transaction: under load that was a tenth of a server's CPU (py-spy, benchmarks/README.md) for
    connections used a millisecond before. One in use when the server went fails its statement
    instead, which invalidates the whole pool (SQLAlchemy's disconnect handling): the webhook's store
    tries once more on a fresh connection (bot.receive.GroupCommit), the rest is retried later."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(dbapi_conn: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["returned"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _handed_out(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get("returned", 0.0) <= PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool replaces this one and every other opened before it
            raise InvalidatePoolError() from exc


def stale_connection(exc: BaseException) -> bool:
    """The statement failed because its pooled connection had died (the server restarted since it
    was last used); the pool has been invalidated, so trying again gets a fresh connection."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (a restart, a network cut, SQLite
    busy past its timeout): worth trying again later, unlike an error in the statement or the data."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError)


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite runs every call on its own thread: a thread hop and a GIL handoff for the cursor,
    the execute, the fetch and the close — four per statement, the largest cost of a message on a
    busy machine (benchmarks/README.md). A statement on a WAL database is microseconds of work, so
    it runs here, inline. What can wait still goes to the thread, so the event loop never does:
    BEGIN (IMMEDIATE: another process's write lock, up to busy_timeout), COMMIT (the fsync), PRAGMA
    (connection setup) and close. SQLAlchemy awaits each call before the next, so the sqlite3
    connection is never used from both threads at once (hence check_same_thread=False)."""

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if _may_wait(fn, args) or not self._running or self._connection is None:
            return await super()._execute(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def on_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(the sqlite3 connection), on the connection's own thread (write_durably)."""
        return await super()._execute(fn, self._conn)  # type: ignore[no-any-return]


def _may_wait(fn: Any, args: tuple[Any, ...]) -> bool:
    name = getattr(fn, "__name__", "")
    if name == "close":  # the connection's close waits for its thread; a cursor's is instant
        return isinstance(getattr(fn, "__self__", None), sqlite3.Connection)
    if name in ("commit", "executescript"):
        return True
    if name == "execute" and args and isinstance(args[0], str):
        return args[0].lstrip()[:6].upper() in ("BEGIN ", "BEGIN", "COMMIT", "PRAGMA", "END")
    return False


def _inline_connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """aiosqlite.connect, making an _InlineConnection (SQLAlchemy's async_creator_fn)."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, **kwargs)

    conn = _InlineConnection(connector, 64)
    conn._thread.daemon = True  # as SQLAlchemy does for its own aiosqlite connections
    return conn


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


# SQLite has one writer at a time. Left to itself, a waiting connection sleeps in SQLite's busy
# handler with growing naps (seconds of tail latency under load); inside one process we queue
# transactions instead, first come first served — except that storing an inbound message (a
# durable transaction) goes before the queued rest: it is what lets WeChat be answered at all, and
# behind a backlog of processing it would wait past WeChat's 5 s and be sent again.
# Other processes still meet busy_timeout.
class _WriterQueue:
    def __init__(self) -> None:
        self._busy = False
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._others: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, *, urgent: bool) -> None:
        if not self._busy:
            self._busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._others).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the turn just as we were cancelled: pass it on
            else:
                (self._urgent if urgent else self._others).remove(waiter)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._others):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the turn passes straight to it: still busy
                    return
        self._busy = False


_sqlite_writers: weakref.WeakKeyDictionary[Any, _WriterQueue] = weakref.WeakKeyDictionary()


# SQLite in WAL mode: with synchronous=NORMAL a commit is in the WAL (the OS has it) when it
# returns, so it survives the process crashing; FULL also waits for the fsync, so it survives a power
# cut too — about 5 ms a commit on the benchmark machine's disk, and SQLite commits one at a time.
# A commit that makes a promise to the outside world (the inbound message WeChat is about to hear
# "stored" for) is `durable`: FULL. The others are NORMAL, and are on disk by the next durable commit
# (the WAL is one file, and its fsync takes every frame before it) or checkpoint. After a power cut
# the work of the last moments may be undone, never the messages acknowledged: recover() redoes it.
# PostgreSQL: every commit is durable (synchronous_commit=on), the flag changes nothing.
DURABLE = "gridbot_durable"


@asynccontextmanager
async def transaction(factory: SessionFactory, *, durable: bool = False) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any exception. `durable`: the commit
    survives a power cut (SQLite's synchronous=FULL for this one), not only a crash."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        async with factory() as session, session.begin():
            yield session
        return
    writers = _sqlite_writers.setdefault(engine.sync_engine, _WriterQueue())
    await writers.acquire(urgent=durable)
    try:
        async with factory() as session, session.begin():
            if durable:
                await session.connection(execution_options={DURABLE: True})
            yield session
    finally:
        writers.release()


T = TypeVar("T")


def _begin_immediate_soon(db: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, trying every WRITE_LOCK_POLL while another process holds the write lock.
    SQLite's own busy handler naps longer and longer (1, 2, 5, 10 … 100 ms): with two server
    processes writing, a store napped through the other's lock releases, and the answers at
    500 msg/s waited 200 ms and more. Only the webhook's store polls; on this connection's thread."""
    give_up = time.monotonic() + BUSY_TIMEOUT
    db.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= give_up:
                    raise
            time.sleep(WRITE_LOCK_POLL)
    finally:
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")


async def write_durably(
    factory: SessionFactory,
    *,
    sqlite: Callable[[sqlite3.Connection], T],
    postgresql: Callable[[AsyncConnection], Awaitable[T]],
) -> T:
    """One durable commit made in one step, for the webhook's store (bot.receive.GroupCommit): under
    load the event loop is busy, and every round trip of a transaction waits its turn there, so
    `transaction(durable=True)` (BEGIN, the statements, COMMIT: four round trips on PostgreSQL,
    three hops to SQLite's thread, 2 ms of CPU a commit) took 30–90 ms to store a message at
    500 msg/s (benchmarks/README.md).

    PostgreSQL: `postgresql(conn)` runs one statement on a connection in autocommit (one round
    trip: the statement is its own transaction, committed with synchronous_commit=on). SQLite:
    `sqlite(conn)` runs on the connection's thread between BEGIN IMMEDIATE and a COMMIT with
    synchronous=FULL (one hop), in its turn of the writer queue, ahead of the rest (`transaction`).
    Either way the caller's statements are dialect SQL; errors come out as SQLAlchemy's."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        async with engine.connect() as conn:
            return await postgresql(await conn.execution_options(isolation_level="AUTOCOMMIT"))
    writers = _sqlite_writers.setdefault(engine.sync_engine, _WriterQueue())
    await writers.acquire(urgent=True)
    try:
        async with engine.connect() as conn:
            pooled = await conn.get_raw_connection()
            info = pooled.info
            driver = pooled.driver_connection
            assert isinstance(driver, _InlineConnection)  # create_engine's (async_creator_fn)

            def commit(db: sqlite3.Connection) -> T:
                if info.get("synchronous") != "FULL":
                    db.execute("PRAGMA synchronous=FULL")
                    info["synchronous"] = "FULL"
                _begin_immediate_soon(db)
                try:
                    result = sqlite(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                return result

            try:
                return await driver.on_thread(commit)
            except sqlite3.Error as exc:  # as SQLAlchemy would have raised it (callers catch those)
                raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
    finally:
        writers.release()


READING = "gridbot_reading"


@asynccontextmanager
async def reading(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """A transaction that only reads. On SQLite it skips the writer queue: behind a backlog of
    message processing a read would otherwise wait its turn for a lock it does not need (the
    outbox's delivery rules read before every push). Writing in it is a bug (SQLite refuses with
    "database is locked" when another connection holds the write lock; PostgreSQL would commit each
    write at once)."""
    engine = factory.kw["bind"]
    async with factory() as session, session.begin():
        if engine.dialect.name == "sqlite":
            await session.connection(execution_options={READING: True})
        else:
            # PostgreSQL: in autocommit, without the BEGIN and COMMIT round trips. Under READ
            # COMMITTED every statement reads its own snapshot anyway, transaction or not.
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


async def drop_schema(url: str) -> None:
    """Empty a PostgreSQL database: every table, index and migration record gone (the tests' and
    benchmarks' scratch databases, before migrating afresh). Never point it at real data."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = url
    return cfg


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Run the migrations (blocking; creates its own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations from async code, in a thread with its own loop."""
    await asyncio.to_thread(upgrade_sync, url, revision)


def table_of(model: type[SQLModel]) -> Table:
    """A model's table. An UPDATE written with the table's columns (not the model's) runs as plain
    SQL; through the ORM (update(Model)) it goes through the bulk-update machinery, which costs more
    CPU than the statement. For rows that no object loaded in the session needs to see change."""
    return model.__table__  # type: ignore[attr-defined,no-any-return]


async def insert_once(session: AsyncSession, row: Any) -> bool:
    """Insert `row` unless its unique key is taken (by another process too): True for the one caller
    that inserted it. A savepoint keeps the caller's transaction usable after the refusal."""
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True
