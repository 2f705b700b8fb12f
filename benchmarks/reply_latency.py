"""Reply latency of the real server over loopback: signed reports from distinct residents.

    .venv/bin/python benchmarks/reply_latency.py [--messages 500] [--concurrency 10] [--safe | --wecom]
    GRIDBOT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/...

Each message is stored, classified, routed and answered (plus an outbox push) before the reply is
timed as done. With --wecom, WeCom staff (the demo's 吴刚, 刘志强, 马强) send "我的工单" through the
encrypted /wecom callback instead: decrypt, staff lookup, their open cases, encrypted reply.
Prints messages/s and p50/p99/max latency. Run by hand; not part of the tests.
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
from bot.config import DEMO_GRID_FILE, DEMO_WECOM, Settings
from bot.fake_wechat import FakeWeChat
from bot.fake_wecom import FakeWeCom
from bot.wechat import WeChatSimulator
from bot.wecom import WeComSimulator
from storage.db import upgrade

AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TEXTS = [
    "幸福里小区3号楼东侧路灯坏了",
    "春晖园小区门口垃圾堆好几天没人清",
    "锦绣花园晚上装修噪音太大",
    "翠微苑小区停水了",
    "枣林小区楼道里电动车充电",
]
WECOM_STAFF = ["wugang", "liuzhiqiang", "maqiang"]


async def main(messages: int, concurrency: int, safe: bool, wecom: bool) -> None:
    tmp = tempfile.mkdtemp()
    url = os.environ.get("GRIDBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
    await upgrade(url)
    fake = web.AppRunner(FakeWeChat("wxbench", "s").app(), access_log=None)
    await fake.setup()
    fake_site = web.TCPSite(fake, "127.0.0.1", 0)
    await fake_site.start()
    fake_port = fake_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    # Group robots post whether or not WeCom is on: always to a local fake, never the real host.
    corp, secret, agent = str(DEMO_WECOM["wecom_corp_id"]), str(DEMO_WECOM["wecom_secret"]), 1000002
    fake_wecom = web.AppRunner(FakeWeCom(corp, secret, agent).app(), access_log=None)
    await fake_wecom.setup()
    wecom_site = web.TCPSite(fake_wecom, "127.0.0.1", 0)
    await wecom_site.start()
    wecom_port = wecom_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = Settings(
        database_url=url,
        wechat_token="benchtoken",
        wechat_appid="wxbench",
        wechat_secret="s",
        wechat_aes_key=AES if safe else "",
        wechat_api_base=f"http://127.0.0.1:{fake_port}",
        wecom_api_base=f"http://127.0.0.1:{wecom_port}",
        grid_file=DEMO_GRID_FILE,
        _env_file=None,
        **(DEMO_WECOM if wecom else {}),
    )  # type: ignore[arg-type]
    bot = web.AppRunner(create_app(settings), access_log=None)
    await bot.setup()
    site = web.TCPSite(bot, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sim = WeChatSimulator(token="benchtoken", appid="wxbench", aes_key=AES if safe else "")
    wsim = WeComSimulator(
        token=settings.wecom_token, corp_id=corp, aes_key=settings.wecom_aes_key or AES, agent_id=agent
    )
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            now = int(time.time())
            if wecom:
                xml = wsim.xml(WECOM_STAFF[i % len(WECOM_STAFF)], "text", {"Content": "我的工单"}, create_time=now)
                query, body = wsim.sign(xml, timestamp=now)
            else:
                xml = sim.xml(f"o_bench_{i}", "text", {"Content": TEXTS[i % len(TEXTS)]}, create_time=now)
                query, body = sim.sign(xml, timestamp=now)
            t0 = time.perf_counter()
            path = "/wecom" if wecom else "/wechat"
            async with http.post(f"http://127.0.0.1:{port}{path}", params=query, data=body) as resp:
                text = await resp.text()
            latencies.append(time.perf_counter() - t0)
            if wecom:
                assert resp.status == 200 and "工单" in (wsim.read_reply(text) or ""), text
            else:
                reply = sim.read_reply(text) or ""
                # The same problem reported again is merged into the open case (重复), also an answer.
                assert resp.status == 200 and ("已受理" in reply or "已有居民反映" in reply), reply

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        if wecom:  # give 吴刚 open cases to list: reports from residents in 春晖第二网格 (not timed)
            for j in range(10):
                now = int(time.time())
                xml = sim.xml(f"o_seed_{j}", "text", {"Content": f"锦绣花园{j + 1}号楼门口路灯坏了"}, create_time=now)
                query, body = sim.sign(xml, timestamp=now)
                async with http.post(f"http://127.0.0.1:{port}/wechat", params=query, data=body) as resp:
                    assert resp.status == 200
            started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await bot.cleanup()
    await fake_wecom.cleanup()
    await fake.cleanup()
    q = statistics.quantiles(latencies, n=100)
    backend = url.split(":", 1)[0]
    what = "WeCom /wecom (encrypted), 我的工单 from staff" if wecom else f"{'safe' if safe else 'plain'} mode, reports"
    print(
        f"{backend} {what}, {messages} messages, concurrency {concurrency}: "
        f"{messages / elapsed:.0f} msg/s, p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--safe", action="store_true")
    parser.add_argument("--wecom", action="store_true", help="WeCom staff through /wecom instead of residents")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.concurrency, args.safe, args.wecom))
