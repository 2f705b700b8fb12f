"""`kill -9` in the middle of a flood of reports, a restart, and WeChat's retries: every message that
got an answer becomes a case, and no message becomes two.

The real `gridbot serve` in a child process (safe mode, the demo street office) against the test
database; residents' phones and the WeChat server played from here, the WeChat API a local fake.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.orm import aliased
from sqlmodel import col, func, select

from bot.config import DEMO_GRID_FILE, Settings
from bot.fake_wechat import FakeWeChat
from bot.wechat import WeChatSimulator
from storage.db import create_engine, session_factory, transaction
from storage.models import Case, InboundMessage, Resident
from tests.conftest import APPID, SECRET, TOKEN, free_port

ROOT = Path(__file__).resolve().parent.parent
AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
PLACES = ["幸福里小区", "春晖园小区", "锦绣花园", "翠微苑小区", "枣林小区"]
PROBLEMS = ["东侧路灯坏了", "门口垃圾堆好几天没人清", "楼道里堆满杂物", "井盖松动了", "单元门禁坏了"]
REPORTS = 160
KILL_AFTER = 50  # answered reports before the kill
NUMBER = re.compile(r"G\d{8}-\d{4}")


@dataclass
class Report:
    openid: str
    text: str
    msg_id: int
    answered: bool = False
    reply: str | None = None


async def _spawn(command: str, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", command, env=env, cwd=str(log.parent), stdout=out, stderr=out
        )


async def _start(port: int, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    proc = await _spawn("serve", env, log)
    for _ in range(300):
        if proc.returncode is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log.read_text()[-2000:]}")  # noqa: ASYNC240
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return proc
    raise AssertionError("the server never listened")


async def _post(http: aiohttp.ClientSession, url: str, sim: WeChatSimulator, r: Report) -> None:
    """One delivery attempt, as the WeChat server makes it: answered, or not (connection refused,
    dropped, or a 5xx) — then WeChat will try again."""
    import time

    xml = sim.xml(r.openid, "text", {"Content": r.text}, create_time=int(time.time()), msg_id=r.msg_id)
    query, body = sim.sign(xml, timestamp=int(time.time()))
    try:
        async with http.post(url, params=query, data=body, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            text = await resp.text()
            if resp.status != 200:
                return
    except (aiohttp.ClientError, TimeoutError):
        return
    r.answered = True
    r.reply = r.reply or sim.read_reply(text)


@pytest.mark.parametrize("processing", ["inline", "separate"])
async def test_kill_9_mid_flood_then_restart_every_answered_report_is_one_case(
    processing: str, database_url: str, fake_wechat_url: str, fake_wechat: FakeWeChat, tmp_path: Path
) -> None:
    """separate: `gridbot serve` and `gridbot process`, both killed at once and both restarted."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")} | {
        "PYTHONPATH": str(ROOT),
        "GRIDBOT_PORT": str(port),
        "GRIDBOT_DATABASE_URL": database_url,
        "GRIDBOT_WECHAT_TOKEN": TOKEN,
        "GRIDBOT_WECHAT_APPID": APPID,
        "GRIDBOT_WECHAT_SECRET": SECRET,
        "GRIDBOT_WECHAT_AES_KEY": AES,
        "GRIDBOT_WECHAT_API_BASE": fake_wechat_url,
        "GRIDBOT_WECOM_API_BASE": fake_wechat_url,  # never the real host
        "GRIDBOT_GRID_FILE": str(DEMO_GRID_FILE),
        "GRIDBOT_RESIDENT_MAX_CASES_PER_HOUR": "100",
        "GRIDBOT_RECOVER_EVERY_SECONDS": "0.5",
        "GRIDBOT_RECOVER_AFTER_SECONDS": "1",
        # Pushes the killed process had leased come back after the lease: keep it short here.
        "GRIDBOT_OUTBOUND_TIMEOUT_SECONDS": "0.5",
        "GRIDBOT_OUTBOX_LEASE_SECONDS": "4",
        "GRIDBOT_PROCESSING": processing,
    }
    sim = WeChatSimulator(token=TOKEN, appid=APPID, aes_key=AES)
    url = f"http://127.0.0.1:{port}/wechat"
    log = tmp_path / "server.log"
    reports = [
        Report(f"o_flood_{i:04d}", f"{PLACES[i % 5]}{i % 30 + 1}号楼{PROBLEMS[(i // 5) % 5]}", 7_000_000_000 + i)
        for i in range(REPORTS)
    ]

    server = await _start(port, env, log)
    processes = [await _spawn("process", env, log)] if processing == "separate" else []
    killed = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:

            async def phone(batch: list[Report]) -> None:
                for r in batch:
                    await _post(http, url, sim, r)
                    if not killed.is_set() and sum(x.answered for x in reports) >= KILL_AFTER:
                        killed.set()
                        server.send_signal(signal.SIGKILL)  # mid-flood: other requests are in flight
                        for proc in processes:
                            proc.send_signal(signal.SIGKILL)

            await asyncio.gather(*(phone(reports[i::8]) for i in range(8)))
            await server.wait()
            assert killed.is_set() and server.returncode == -signal.SIGKILL
            for proc in processes:
                assert await proc.wait() == -signal.SIGKILL
            answered_before = {r.openid for r in reports if r.answered}
            assert KILL_AFTER <= len(answered_before) < REPORTS  # some got through, some hit the dead server

            server = await _start(port, env, log)
            processes = [await _spawn("process", env, log)] if processing == "separate" else []
            # WeChat retries what got no answer (same MsgId), and some answered ones whose answer it
            # lost on the way: none of these may make a second case.
            for r in [r for r in reports if not r.answered] + [r for r in reports if r.answered][:20]:
                await _post(http, url, sim, r)
            assert all(r.answered for r in reports)

            factory = session_factory(create_engine(database_url))
            try:
                for _ in range(300):  # the stored-but-unprocessed ones, picked up by recover()
                    async with transaction(factory) as session:
                        waiting = (
                            await session.exec(select(func.count()).where(col(InboundMessage.status) == "received"))
                        ).one()
                    if waiting == 0:
                        break
                    await asyncio.sleep(0.1)
                async with transaction(factory) as session:
                    original = aliased(Case)
                    rows = (
                        await session.exec(
                            select(Resident.openid, Case.number, original.number)
                            .join(Case, col(Case.resident_id) == Resident.id)
                            .outerjoin(original, col(Case.duplicate_of_id) == original.id)
                        )
                    ).all()
                    inbound = (await session.exec(select(InboundMessage))).all()
                cases_of: dict[str, list[str]] = {}
                merged_into: dict[str, str] = {}  # a repeat report (重复) is its own case, linked to the first
                for openid, number, first in rows:
                    cases_of.setdefault(openid, []).append(number)
                    if first:
                        merged_into[number] = first
                # Every report is one case: none lost with the process, none made twice by a retry or recovery.
                assert sorted(cases_of) == sorted(r.openid for r in reports)
                assert all(len(numbers) == 1 for numbers in cases_of.values()), {
                    k: v for k, v in cases_of.items() if len(v) > 1
                }
                assert len(inbound) == REPORTS and all(m.status == "processed" and m.case_id for m in inbound)
                # And each resident heard their number: in the answer, or (stored but not processed before the
                # kill) in a customer-service message once the restarted server recovered it.
                for r in reports:
                    (number,) = cases_of[r.openid]
                    if r.reply and NUMBER.search(r.reply):
                        assert merged_into.get(number, number) in r.reply
                    else:
                        told = merged_into.get(number, number)
                        for _ in range(100):
                            if any(told in t for t in fake_wechat.texts_to(r.openid)):
                                break
                            await asyncio.sleep(0.1)
                        assert any(told in t for t in fake_wechat.texts_to(r.openid)), (r.openid, r.reply)
                # The processing process runs at a lower CPU priority than the servers (process_nice).
                nicer = min(os.getpriority(os.PRIO_PROCESS, 0) + Settings.model_fields["process_nice"].default, 19)
                for proc in processes:
                    server_nice = os.getpriority(os.PRIO_PROCESS, server.pid)
                    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == nicer > server_nice
            finally:
                await factory.kw["bind"].dispose()
    finally:
        for proc in [server, *processes]:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
