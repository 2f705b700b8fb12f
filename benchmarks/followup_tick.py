"""One follow-up tick against a big table: how long finding and claiming the due cases takes when
a million cases are open, and how long the whole tick (plan, compare-and-set, pings queued) takes.

    .venv/bin/python benchmarks/followup_tick.py [--open 1000000] [--due 1000] [--limit 1000]
    .venv/bin/python benchmarks/followup_tick.py --sweep      # due 100/1k/10k at 1M; 1k due at 10k/100k/1M
    .venv/bin/python benchmarks/followup_tick.py --revision 0004   # migrate only this far (an older schema)
    .venv/bin/python benchmarks/followup_tick.py --reuse ...  # keep the database's cases (see below)
    GRIDBOT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test_bench .venv/bin/python benchmarks/...

A fresh database each run: a SQLite file in a temp dir, or the PostgreSQL database named by
GRIDBOT_DATABASE_URL, whose public schema is DROPPED and recreated (point it at a scratch database).
With --reuse (and GRIDBOT_DATABASE_URL, a sqlite+aiosqlite:////path file or PostgreSQL) the database
is kept and migrated up to --revision, its cases counted, and only the missing ones loaded; points
with fewer open cases than it holds are skipped.
Migrations, the demo street office, then the open cases (已派遣/已接单/处理中, next look-at spread over
the next three weeks) bulk-loaded. Each repeat marks a fresh random cohort due (untimed), then times:
(a) the claim alone, `claim_due_pings` in its own transaction (commit included);
(b) a whole `FollowUp.tick(now)`: the claim, then the chase of each case, a chunk of them per
    transaction and a savepoint each (plan, compare-and-set, pings queued in the outbox). Half the
    due cases owe a 超时未接单, a sixth an escalation (督办, two pushes), a third are stalled (无进展).
Run by hand; not part of the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, `benchmarks/` is sys.path[0] and the venv's editable install would import the
# package from wherever it was installed (another worktree): measure this checkout's code.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, func, insert, inspect, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from bot.app import load_services
from bot.config import DEMO_GRID_FILE, Settings
from handlers.context import Services
from handlers.followup import LEASE, FollowUp
from storage import cases, grids
from storage.db import SessionFactory, create_engine, drop_schema, session_factory, transaction, upgrade
from storage.lifecycle import Status
from storage.models import Case, GridNode, OutboxMessage, PingLease, Resident

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 office time: no quiet hours, no holiday
CATEGORIES = ["市容环境", "道路设施", "噪音扰民", "供水供电供气", "物业管理", "矛盾纠纷", "治安隐患", "其他"]
GENERAL = ["市容环境", "道路设施", "噪音扰民", "物业管理", "治安隐患", "其他"]  # the policy's 24 h / 7 d class
TEXTS = [
    "3号楼东侧路灯坏了",
    "门口垃圾堆好几天没人清",
    "晚上装修噪音太大",
    "楼道里电动车充电",
    "井盖松动",
    "树枝压着电线",
]
PLACES = ["幸福里小区", "春晖园小区", "锦绣花园", "翠微苑小区", "枣林小区", "和平里北区"]
BATCH_ROWS = 50_000


# ---------------------------------------------------------------------------------------------- load


async def fresh_database(url: str, revision: str) -> None:
    if url.startswith("postgresql"):
        await drop_schema(url)
    await upgrade(url, revision)


async def grid_owners(factory: SessionFactory) -> list[tuple[int, int]]:
    """(grid id, the leader responsible for it) for every 网格 of the demo office."""
    async with transaction(factory) as session:
        nodes = (await session.exec(select(GridNode).where(GridNode.level == "网格"))).all()
        pairs = []
        for node in nodes:
            leader = await grids.leader_for(session, node)
            if leader is not None and leader.id is not None and node.id is not None:
                pairs.append((node.id, leader.id))
    return pairs


def resident_rows(start: int, count: int) -> Iterator[dict[str, Any]]:
    for i in range(start, start + count):
        seen = NOW - timedelta(days=60 * ((i * 7919) % 1000) / 1000)
        yield {"openid": f"o_bench_{i:09d}", "first_seen_at": seen, "last_seen_at": seen}


def case_rows(
    start: int, count: int, rng: random.Random, owners: list[tuple[int, int]], residents: tuple[int, int]
) -> Iterator[dict[str, Any]]:
    """Open cases as the bot leaves them: dispatched over the last 60 days, none due now."""
    for i in range(start, start + count):
        created = NOW - timedelta(seconds=rng.uniform(3600, 60 * 86400))
        dispatched = created + timedelta(seconds=rng.uniform(10, 1800))
        status = rng.choices([Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS], [40, 25, 35])[0]
        accepted = None if status is Status.DISPATCHED else dispatched + timedelta(seconds=rng.uniform(60, 86400))
        step = accepted or dispatched
        grid_id, assignee_id = rng.choice(owners)
        yield {
            "number": f"G{created:%Y%m%d}-{i:07d}",
            "category": rng.choice(CATEGORIES),
            "description": f"{rng.choice(PLACES)}{rng.choice(TEXTS)}，麻烦尽快处理",
            "place_text": rng.choice(PLACES),
            "lat": 39.90 + rng.random() * 0.03,
            "lon": 116.40 + rng.random() * 0.03,
            "grid_id": grid_id,
            "urgent": False,
            "confidence": rng.uniform(0.5, 1.0),
            "status": status,
            "resident_id": rng.randint(*residents),
            "assignee_id": assignee_id,
            "created_at": created,
            "updated_at": step,
            "dispatched_at": dispatched,
            "accepted_at": accepted,
            "due_at": dispatched + timedelta(days=7),
            "rework_count": 0,
            "reopen_count": 0,
            "step_at": step,
            "pinged_until": step,
            "next_ping_at": NOW + timedelta(seconds=rng.uniform(60, 21 * 86400)),
        }


def batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def bulk_insert(engine: AsyncEngine, table: Any, rows: Iterator[dict[str, Any]]) -> None:
    """executemany of one plain INSERT per batch on SQLite; COPY on PostgreSQL."""
    for batch in batches(rows, BATCH_ROWS):
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                raw = (await conn.get_raw_connection()).driver_connection
                columns = list(batch[0])
                records = [tuple(r[c] for c in columns) for r in batch]
                await raw.copy_records_to_table(table.name, records=records, columns=columns)  # type: ignore[union-attr]
            else:
                await conn.execute(insert(table), batch)


def loader(url: str) -> AsyncEngine:
    """An engine for loading only: on SQLite its connections get a 1 GiB page cache, so the dozen
    indexes on cases are built in memory (the measuring engine keeps the bot's settings)."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _big_cache(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA cache_size=-1048576")
            cur.close()

    return engine


async def grow(url: str, owners: list[tuple[int, int]], rng: random.Random, have: int, want: int) -> float:
    """Add open cases (and a resident per four cases) until `want` are open; returns the seconds."""
    started = time.perf_counter()
    engine = loader(url)
    await bulk_insert(engine, Resident.__table__, resident_rows(have // 4, want // 4 - have // 4))  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        lo, hi = (await conn.execute(select(func.min(Resident.id), func.max(Resident.id)))).one()  # type: ignore[arg-type]
    await bulk_insert(engine, Case.__table__, case_rows(have, want - have, rng, owners, (lo, hi)))  # type: ignore[attr-defined]
    loaded = time.perf_counter() - started
    # What autovacuum/ANALYZE would have done by the time a table is this big (SQLite keeps no stats
    # unless told, and the bot never tells it: left alone).
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE cases"))
            await conn.execute(text("VACUUM ANALYZE resident"))
    await engine.dispose()
    return loaded


# -------------------------------------------------------------------------------------- due cohorts

_SET_DUE = (
    update(Case)
    .where(Case.id == bindparam("b_id"))  # type: ignore[arg-type]
    .values(
        status=bindparam("b_status"),
        category=bindparam("b_category"),
        step_at=bindparam("b_step"),
        dispatched_at=bindparam("b_dispatched"),
        accepted_at=bindparam("b_accepted"),
        pinged_until=bindparam("b_pinged"),
        next_ping_at=bindparam("b_next"),
        due_at=bindparam("b_due"),
    )
)
_SET_NOT_DUE = update(Case).where(Case.id == bindparam("b_id")).values(next_ping_at=bindparam("b_next"))  # type: ignore[arg-type]


def due_row(case_id: int, rng: random.Random) -> dict[str, Any]:
    """A case whose next ping fell due in the last 30 s (the scheduler ticks every 30 s)."""
    late = timedelta(seconds=rng.uniform(0, 30))
    kind = rng.random()
    status, pinged = Status.DISPATCHED, None
    if kind < 0.5:  # 24 h to accept are up: 超时未接单 to the owner
        step = NOW - late - timedelta(hours=24)
    elif kind < 2 / 3:  # a day past that: 督办 to the 社区 leader, the owner told
        step = NOW - late - timedelta(hours=48)
        pinged = step + timedelta(hours=24)
    else:  # accepted three days ago and silent since: 无进展 to the owner
        status = rng.choice([Status.ACCEPTED, Status.IN_PROGRESS])
        step = NOW - late - timedelta(hours=72)
    return {
        "b_id": case_id,
        "b_status": status,
        "b_category": rng.choice(GENERAL),
        "b_step": step,
        "b_dispatched": step if status is Status.DISPATCHED else step - timedelta(hours=1),
        "b_accepted": None if status is Status.DISPATCHED else step,
        "b_pinged": pinged or step,
        "b_next": NOW - late,
        "b_due": NOW + timedelta(days=3),
    }


async def mark_due(engine: AsyncEngine, ids: list[int], rng: random.Random) -> None:
    async with engine.begin() as conn:
        await conn.execute(_SET_DUE, [due_row(i, rng) for i in ids])
    # Write this setup's changes out now, or the timed claim pays for them: PostgreSQL's backend
    # evicting the dirty buffers, SQLite's commit checkpointing the WAL.
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("CHECKPOINT"))
        else:  # outside a transaction, which the engine's BEGIN IMMEDIATE would start
            raw = (await conn.get_raw_connection()).driver_connection
            await (await raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")).close()  # type: ignore[union-attr]


async def unmark(engine: AsyncEngine, ids: list[int], rng: random.Random) -> None:
    """The cohort goes back among the not-yet-due (claimed or not), its leases (if any) ended: as a
    tick would leave them, so leases do not pile up from one repeat to the next."""
    rows = [{"b_id": i, "b_next": NOW + timedelta(seconds=rng.uniform(60, 21 * 86400))} for i in ids]
    async with engine.begin() as conn:
        await conn.execute(_SET_NOT_DUE, rows)
        if await conn.run_sync(lambda sync: inspect(sync).has_table(PingLease.__tablename__)):
            await conn.execute(delete(PingLease))


# --------------------------------------------------------------------------------------- measuring


class Statements:
    """How many statements a piece of work ran and how long they took at the driver."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count, self.seconds, self._t0 = 0, 0.0, 0.0
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def _before(self, *_: Any) -> None:
        self._t0 = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.count += 1
        self.seconds += time.perf_counter() - self._t0

    def reset(self) -> None:
        self.count, self.seconds = 0, 0.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p90": p90, "min": ordered[0]}


async def explain(engine: AsyncEngine, *, limit: int) -> list[str]:
    """The claim statement's plan: SQLite's query plan, PostgreSQL's executed plan (rolled back)."""
    stmt = cases.due_pings_claim(engine.dialect.name, now=NOW, lease_until=NOW + LEASE, limit=limit)
    async with engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect)
        params = compiled.construct_params()
        args = []
        for name in compiled.positiontup or []:
            process = compiled.binds[name].type.bind_processor(conn.dialect)
            args.append(process(params[name]) if process else params[name])
        prefix = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS)"
        rows = (await conn.exec_driver_sql(f"{prefix} {compiled}", tuple(args))).all()
        await conn.rollback()
    if engine.dialect.name == "sqlite":
        return [f"{'  ' * (row[1] > 0)}{row[3]}" for row in rows]
    return [row[0] for row in rows]


async def measure_claim(
    engine: AsyncEngine, factory: SessionFactory, ids: range, *, due: int, limit: int, repeats: int, rng: random.Random
) -> dict[str, Any]:
    totals, statements = [], []
    for _ in range(repeats):
        cohort = rng.sample(ids, due)
        await mark_due(engine, cohort, rng)
        t0 = time.perf_counter()
        async with transaction(factory) as session:
            t1 = time.perf_counter()
            claimed = await cases.claim_due_pings(session, now=NOW, lease_until=NOW + LEASE, limit=limit)
            t2 = time.perf_counter()
        totals.append(time.perf_counter() - t0)
        statements.append(t2 - t1)
        assert len(claimed) == min(due, limit), (len(claimed), due, limit)
        await unmark(engine, cohort, rng)
    return {"claim": summary(totals), "statement": summary(statements)}


async def measure_tick(
    engine: AsyncEngine,
    factory: SessionFactory,
    services: Services,
    ids: range,
    *,
    due: int,
    repeats: int,
    rng: random.Random,
    chunk: int = 0,
) -> dict[str, Any]:
    follow_up = FollowUp(factory, services, **({"chunk": chunk} if chunk else {}))
    watch = Statements(engine)
    totals, made, stmts, in_stmts = [], [], [], []
    for _ in range(repeats):
        cohort = rng.sample(ids, due)
        await mark_due(engine, cohort, rng)
        async with engine.connect() as conn:
            before = (await conn.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
        watch.reset()
        t0 = time.perf_counter()
        pings = await follow_up.tick(NOW)
        totals.append(time.perf_counter() - t0)
        stmts.append(watch.count)
        in_stmts.append(watch.seconds)
        async with engine.connect() as conn:
            queued = (await conn.execute(select(func.count()).select_from(OutboxMessage))).scalar_one() - before
        made.append((pings, queued))
        await unmark(engine, cohort, rng)
    event.remove(engine.sync_engine, "before_cursor_execute", watch._before)
    event.remove(engine.sync_engine, "after_cursor_execute", watch._after)
    return {
        "tick": summary(totals),
        "all": totals,
        "pings": made,
        "statements": statistics.median(stmts),
        "in_statements": statistics.median(in_stmts),
        "cases": min(due, follow_up.batch),
    }


# ------------------------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp()
    url = os.environ.get("GRIDBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
    backend = url.split(":", 1)[0]
    if args.reuse:
        await upgrade(url, args.revision)
    else:
        await fresh_database(url, args.revision)
    engine = create_engine(url)
    factory = session_factory(engine)
    services = await load_services(factory, Settings(database_url=url, grid_file=DEMO_GRID_FILE, _env_file=None))  # type: ignore[call-arg]
    owners = await grid_owners(factory)
    rng = random.Random(20261123)
    batch = FollowUp(factory, services).batch
    limit = args.limit or batch
    if args.sweep:
        points = [(10_000, 1_000), (100_000, 1_000), (1_000_000, 100), (1_000_000, 1_000), (1_000_000, 10_000)]
    else:
        points = [(args.open, args.due)]
    print(f"{backend} at migration {args.revision}: engine batch {batch}, claim limit {limit}, now {NOW.isoformat()}")
    results = []
    have = 0
    if args.reuse:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":  # the last run's churn, as autovacuum would leave it
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
            have = (await conn.execute(select(func.count()).select_from(Case))).scalar_one()
        print(f"reusing the database: {have:,} cases")
    for n_open, due in points:
        if n_open < have:
            print(f"skipped {n_open:,} open: the reused database holds {have:,}")
            continue
        if n_open > have:
            seconds = await grow(url, owners, rng, have, n_open)
            print(f"loaded {n_open - have:,} open cases in {seconds:.1f} s ({(n_open - have) / seconds:,.0f}/s)")
            have = n_open
        async with engine.connect() as conn:
            lo, hi = (await conn.execute(select(func.min(Case.id), func.max(Case.id)))).one()  # type: ignore[arg-type]
        ids = range(lo, hi + 1)
        if not args.no_explain:
            cohort = rng.sample(ids, due)
            await mark_due(engine, cohort, rng)
            print(f"plan of the claim, {n_open:,} open, {due:,} due, limit {limit}:")
            for line in await explain(engine, limit=limit):
                print(f"    {line}")
            await unmark(engine, cohort, rng)
        first = len(results)
        limits = [limit] + ([due] if args.sweep and due > limit else [])
        for lim in limits:
            claim = await measure_claim(engine, factory, ids, due=due, limit=lim, repeats=args.repeats, rng=rng)
            c, s = claim["claim"], claim["statement"]
            print(
                f"claim  {n_open:>9,} open {due:>6,} due limit {lim:>6,}: median {ms(c['median'])}, "
                f"p90 {ms(c['p90'])}, min {ms(c['min'])} (statement alone: median {ms(s['median'])})"
            )
            results.append((n_open, due, lim, claim, None))
        if args.tick_repeats:
            tick = await measure_tick(
                engine, factory, services, ids, due=due, repeats=args.tick_repeats, rng=rng, chunk=args.chunk
            )
            t = tick["tick"]
            per_case = t["median"] / tick["cases"]
            print(
                f"tick   {n_open:>9,} open {due:>6,} due: median {ms(t['median'])}, min {ms(t['min'])} "
                f"(runs: {', '.join(ms(x) for x in tick['all'])}); {tick['cases']} cases, "
                f"pings/pushes {tick['pings'][0]}, {tick['statements']:.0f} statements taking "
                f"{ms(tick['in_statements'])}, {ms(per_case)} per case"
            )
            results[first] = (*results[first][:4], tick)
    await engine.dispose()
    print("\n| database | open | due | limit | claim median | p90 | min | statement | whole tick (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_open, due, lim, claim, tick in results:
        c, s = claim["claim"], claim["statement"]
        whole = ms(tick["tick"]["median"]) if tick else "—"
        print(
            f"| {backend} | {n_open:,} | {due:,} | {lim:,} | {ms(c['median'])} | {ms(c['p90'])} | {ms(c['min'])} "
            f"| {ms(s['median'])} | {whole} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--open", type=int, default=1_000_000, help="open cases in the table")
    parser.add_argument("--due", type=int, default=1_000, help="of which due now")
    parser.add_argument("--limit", type=int, default=0, help="claim limit (default: the engine's batch)")
    parser.add_argument("--repeats", type=int, default=15, help="claims timed per point")
    parser.add_argument("--tick-repeats", type=int, default=3, help="whole ticks timed per point (0: none)")
    parser.add_argument("--sweep", action="store_true", help="due 100/1k/10k at 1M open; 1k due at 10k/100k/1M")
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--chunk", type=int, default=0, help="cases chased per transaction (default: the engine's)")
    parser.add_argument("--reuse", action="store_true", help="keep the database's cases; load only what is missing")
    parser.add_argument("--revision", default="head", help="migrate only this far (e.g. 0004: before an index change)")
    asyncio.run(main(parser.parse_args()))
