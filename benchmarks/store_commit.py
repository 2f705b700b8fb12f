"""The webhook's store, one message at a time: wall and CPU time of one durable commit.

Two ways, on the same database, with the same statements (storage.inbound's): inside a durable
session transaction (storage.inbound.store_in between BEGIN and COMMIT: how bot.receive.GroupCommit
stored until 2026-12-07, then with a multi-row INSERT and the wake as two statements, one more round
trip) and the one-step store it uses now (storage.inbound.store_durably: one statement in autocommit
on PostgreSQL, one trip to SQLite's thread). No load around it: this is the floor of each.

    .venv/bin/python benchmarks/store_commit.py [--messages 500]
    .venv/bin/python benchmarks/store_commit.py --url postgresql+asyncpg://postgres@127.0.0.1:5432/test_bench

The PostgreSQL database is scratch: its public schema is dropped and migrated afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage import inbound
from storage.db import create_engine, drop_schema, session_factory, transaction, upgrade

REPORT = {"kind": "text", "text": "幸福里小区3号楼东侧路灯坏了", "msg_id": 1}


def _row(tag: str, n: int) -> dict[str, Any]:
    return inbound.new_row(
        dedupe_key=f"{tag}:{n}:{time.time_ns()}", channel="wechat", sender=f"o_bench_{n % 50}",
        msg_type="text", payload=REPORT, now=datetime.now(UTC),
    )  # fmt: skip


async def measure(url: str, messages: int) -> None:
    engine = create_engine(url)
    factory = session_factory(engine)

    async def in_a_session(row: dict[str, Any]) -> None:
        async with transaction(factory, durable=True) as session:
            await inbound.store_in(session, [row], waking={row["dedupe_key"]}, now=datetime.now(UTC))

    async def in_one_step(row: dict[str, Any]) -> None:
        await inbound.store_durably(factory, [row], waking={row["dedupe_key"]}, now=datetime.now(UTC))

    ways: list[tuple[str, Callable[[dict[str, Any]], Awaitable[None]]]] = [
        ("session transaction", in_a_session),
        ("store_durably", in_one_step),
    ]
    print(f"{engine.dialect.name}: one message per commit, {messages} commits each (after 50 unmeasured)")
    for name, store in ways:
        for n in range(50):
            await store(_row(f"warm-{name}", n))
        took: list[float] = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n in range(messages):
            t = time.perf_counter()
            await store(_row(name, n))
            took.append(time.perf_counter() - t)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        p90 = statistics.quantiles(took, n=10)[8]
        print(
            f"  {name:20} wall {wall / messages * 1000:.2f} ms (median {statistics.median(took) * 1000:.2f}, "
            f"p90 {p90 * 1000:.2f})  CPU {cpu / messages * 1000:.2f} ms a commit"
        )
    await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    if args.url:
        await drop_schema(args.url)
        await upgrade(args.url)
        await measure(args.url, args.messages)
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'store.sqlite3'}"
        await upgrade(url)
        await measure(url, args.messages)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a SCRATCH PostgreSQL database (its schema is dropped); default: SQLite in a temp dir")
    p.add_argument("--messages", type=int, default=500)
    asyncio.run(main(p.parse_args()))
