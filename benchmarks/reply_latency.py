"""Reply latency of the real server over loopback: signed reports from distinct residents.

    .venv/bin/python benchmarks/reply_latency.py [--messages 500] [--concurrency 10] [--safe]
    GRIDBOT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/...

Each message is stored, classified, routed and answered (plus an outbox push) before the reply is
timed as done. Prints messages/s and p50/p99/max latency. Run by hand; not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

import aiohttp
from aiohttp import web

from bot.app import create_app
from bot.config import DEMO_GRID_FILE, Settings
from bot.fake_wechat import FakeWeChat
from bot.wechat import WeChatSimulator
from storage.db import upgrade

AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TEXTS = [
    "幸福里小区3号楼东侧路灯坏了",
    "春晖园小区门口垃圾堆好几天没人清",
    "锦绣花园晚上装修噪音太大",
    "翠微苑小区停水了",
    "枣林小区楼道里电动车充电",
]


async def main(messages: int, concurrency: int, safe: bool) -> None:
    tmp = tempfile.mkdtemp()
    url = os.environ.get("GRIDBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
    await upgrade(url)
    fake = web.AppRunner(FakeWeChat("wxbench", "s").app(), access_log=None)
    await fake.setup()
    fake_site = web.TCPSite(fake, "127.0.0.1", 0)
    await fake_site.start()
    fake_port = fake_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = Settings(
        database_url=url,
        wechat_token="benchtoken",
        wechat_appid="wxbench",
        wechat_secret="s",
        wechat_aes_key=AES if safe else "",
        wechat_api_base=f"http://127.0.0.1:{fake_port}",
        grid_file=DEMO_GRID_FILE,
        _env_file=None,
    )  # type: ignore[call-arg]
    bot = web.AppRunner(create_app(settings), access_log=None)
    await bot.setup()
    site = web.TCPSite(bot, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sim = WeChatSimulator(token="benchtoken", appid="wxbench", aes_key=AES if safe else "")
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            now = int(time.time())
            xml = sim.xml(f"o_bench_{i}", "text", {"Content": TEXTS[i % len(TEXTS)]}, create_time=now)
            query, body = sim.sign(xml, timestamp=now)
            t0 = time.perf_counter()
            async with http.post(f"http://127.0.0.1:{port}/wechat", params=query, data=body) as resp:
                text = await resp.text()
            latencies.append(time.perf_counter() - t0)
            assert resp.status == 200 and "已受理" in (sim.read_reply(text) or ""), text

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await bot.cleanup()
    await fake.cleanup()
    q = statistics.quantiles(latencies, n=100)
    backend = url.split(":", 1)[0]
    print(
        f"{backend} {'safe' if safe else 'plain'} mode, {messages} reports, concurrency {concurrency}: "
        f"{messages / elapsed:.0f} msg/s, p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--safe", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.concurrency, args.safe))
