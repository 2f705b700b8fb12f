"""One outbox claim with a backlog behind it: what made the replies stop after a flood.

    .venv/bin/python benchmarks/outbox_backlog.py [--url postgresql+asyncpg://postgres@127.0.0.1:5432/test_load]

After a flood the outbox holds thousands of pushes: each resident's reply (due now), and the
leaders' case cards, many held back for a quarter of an hour by WeChat's customer-service quota.
`claim_due` must skip a push while an older one to the same person is pending. Here: 4,000 due
replies to distinct residents interleaved with 4,000 not-yet-due pushes to 7 leaders, and 4,000
sent ones; the median of 20 claims of a batch (50). The PostgreSQL database's schema is DROPPED.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from storage import outbox
from storage.db import create_engine, drop_schema, session_factory, table_of, transaction, upgrade
from storage.models import OutboxMessage


def backlog(now: datetime) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    common = {"channel": "wechat_cs", "payload": {}, "created_at": now}
    for i in range(4000):
        later = now + timedelta(minutes=15)
        rows.append(common | {"recipient": f"leader{i % 7}", "status": "pending", "next_attempt_at": later})
        rows.append(common | {"recipient": f"resident{i}", "status": "pending", "next_attempt_at": now})
        rows.append(common | {"recipient": f"leader{i % 7}", "status": "sent", "next_attempt_at": now, "sent_at": now})
    return rows


async def main(url: str) -> None:
    if url.startswith("postgresql"):
        await drop_schema(url)
    await upgrade(url)
    engine = create_engine(url)
    factory = session_factory(engine)
    now = datetime.now(UTC)
    async with transaction(factory) as session:
        await (await session.connection()).execute(insert(table_of(OutboxMessage)), backlog(now))
    times = []
    for _ in range(20):
        started = time.perf_counter()
        async with transaction(factory) as session:
            claimed = await outbox.claim_due(session, now=now, lease=timedelta(seconds=1))
        times.append((time.perf_counter() - started) * 1000)
        now += timedelta(seconds=2)  # the lease ran out: the same rows are due again
    await engine.dispose()
    print(
        f"{url.split(':')[0]}: claim of {len(claimed)} with 8,000 pending (4,000 due): "
        f"median {statistics.median(times):.1f} ms, min {min(times):.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/backlog.sqlite3")
    asyncio.run(main(parser.parse_args().url))
