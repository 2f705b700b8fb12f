"""Statements and transactions per message, by kind: where the webhook's database round trips go.

    .venv/bin/python benchmarks/query_count.py [--blocks 20] [--pushes 2000]
    GRIDBOT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test_load .venv/bin/python ...

Sends the mix of webhook_load.py (`--blocks` × 10 messages, safe mode) through the real app in this
process, counting with SQLAlchemy event listeners (before_cursor_execute, begin) what answering each
message took, then what delivering the pushes it queued took (outbox drain). A round trip is a
thread hop with aiosqlite and a network one with asyncpg: fewer is faster on both. `--pushes N`
then queues N customer-service pushes, one to each of N people, and times the outbox draining them;
`--busy K` drains them while K message processors keep the database busy (each a transaction
holding the writer 10 ms, again and again: on SQLite the outbox's transactions queue behind them).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_load import AES, APPID, SECRET, TOKEN, build_messages  # noqa: E402

from bot.app import CLOCK, FACTORY, WORKER, create_app  # noqa: E402
from bot.config import DEMO_GRID_FILE, Settings  # noqa: E402
from bot.fake_wechat import FakeWeChat  # noqa: E402
from handlers.pushes import text_push  # noqa: E402
from storage import outbox  # noqa: E402
from storage.db import transaction, upgrade  # noqa: E402

COUNTS = {"statements": 0, "begins": 0}


def _count_statement(*_: Any) -> None:
    COUNTS["statements"] += 1


def _count_begin(*_: Any) -> None:
    COUNTS["begins"] += 1


async def main(blocks: int, pushes: int, busy: int) -> None:
    tmp = tempfile.mkdtemp()
    url = os.environ.get("GRIDBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/count.sqlite3")
    await upgrade(url)
    fake = TestServer(FakeWeChat(APPID, SECRET).app())
    await fake.start_server()
    settings = Settings(
        database_url=url,
        wechat_token=TOKEN,
        wechat_appid=APPID,
        wechat_secret=SECRET,
        wechat_aes_key=AES,
        wechat_api_base=str(fake.make_url("")).rstrip("/"),
        wecom_api_base=str(fake.make_url("")).rstrip("/"),
        grid_file=DEMO_GRID_FILE,
        media_dir=Path(tmp) / "media",
        _env_file=None,
    )  # type: ignore[call-arg]
    client = TestClient(TestServer(create_app(settings, background=False)))
    await client.start_server()
    event.listen(Engine, "before_cursor_execute", _count_statement)
    event.listen(Engine, "begin", _count_begin)
    per_kind: dict[str, list[tuple[int, int, float, float]]] = collections.defaultdict(list)
    msgs = build_messages("count", blocks * 10, str(fake.make_url("")).rstrip("/"))
    kinds = ["report", "report", "report", "report", "report", "report", "photo", "pin", "staff", "query/rate"]
    n = 0
    for msg in msgs:
        kind = "retry" if msg.retry_of is not None else kinds[n % 10]
        n += msg.retry_of is None
        COUNTS.update(statements=0, begins=0)
        t0, c0 = time.perf_counter(), time.process_time()
        resp = await client.post("/wechat", params=msg.query, data=msg.body)
        await resp.read()
        assert resp.status == 200
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        per_kind[kind].append((COUNTS["statements"], COUNTS["begins"], wall, cpu))
    COUNTS.update(statements=0, begins=0)
    outbox_rows = 0
    t0, c0 = time.perf_counter(), time.process_time()
    rounds = 0
    while (done := await client.app[WORKER].run_once()) > 0:
        outbox_rows += done
        rounds += 1
    drain, drain_cpu = time.perf_counter() - t0, time.process_time() - c0
    backend = url.split(":", 1)[0]
    print(
        f"{backend}, {len(msgs)} messages (safe mode), per message: statements, transactions, ms wall, ms CPU"
        " (this process: client and server; the CPU figure is the one that survives a busy machine)"
    )
    for kind, rows in per_kind.items():
        k = len(rows)
        print(
            f"  {kind:11s} ×{k:4d}: {sum(r[0] for r in rows) / k:5.1f} statements, "
            f"{sum(r[1] for r in rows) / k:4.1f} transactions, {sum(r[2] for r in rows) / k * 1000:5.1f} ms, "
            f"{sum(r[3] for r in rows) / k * 1000:5.1f} ms CPU"
        )
    if outbox_rows:
        print(
            f"  outbox: {outbox_rows} pushes in {rounds} rounds: {COUNTS['statements'] / outbox_rows:.1f} statements, "
            f"{COUNTS['begins'] / outbox_rows:.1f} transactions, {drain / outbox_rows * 1000:.1f} ms, "
            f"{drain_cpu / outbox_rows * 1000:.1f} ms CPU per push"
        )
    if pushes:
        await _drain_pushes(client.app, pushes, backend, busy)
    await client.close()
    await fake.close()


async def _drain_pushes(app: Any, pushes: int, backend: str, busy: int) -> None:
    """Pushes per second when the outbox has a backlog to many people (the aftermath of a flood)."""
    async with transaction(app[FACTORY]) as session:
        for i in range(pushes):
            outbox.enqueue(session, recipient=f"o-push-{i}", payload=text_push(f"进展 {i}"), now=app[CLOCK].now())
    processors = [asyncio.create_task(_keep_busy(app[FACTORY])) for _ in range(busy)]
    COUNTS.update(statements=0, begins=0)
    t0, c0 = time.perf_counter(), time.process_time()
    sent = 0
    while (done := await app[WORKER].run_once()) > 0:
        sent += done
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    for task in processors:
        task.cancel()
    await asyncio.gather(*processors, return_exceptions=True)
    print(
        f"  {backend}, {sent} queued pushes to {pushes} people, {busy} busy: {sent / wall:.0f} pushes/s, "
        f"{COUNTS['statements'] / sent:.1f} statements, {COUNTS['begins'] / sent:.2f} transactions, "
        f"{cpu / sent * 1000:.2f} ms CPU per push"
    )


async def _keep_busy(factory: Any) -> None:
    """A message processor's write transactions, back to back (their statements are not counted in
    the figures per push, but their transactions are)."""
    while True:
        async with transaction(factory) as session:
            await session.exec(select(1))
            await asyncio.sleep(0.01)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--pushes", type=int, default=0, help="then time draining N pushes to N people")
    parser.add_argument("--busy", type=int, default=0, help="while K processors keep the database busy")
    args = parser.parse_args()
    asyncio.run(main(args.blocks, args.pushes, args.busy))
