"""The database goes away for a while (PostgreSQL stopped and started again, as in a restart or a
failover): the webhook fails fast with 503 so WeChat retries, nothing already acknowledged is lost,
and the server carries on by itself once the database is back.

Runs a PostgreSQL server of its own (initdb in a temp dir, its own port), whatever the suite's
database: the shared server is never stopped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import receive
from bot.app import RECEIVER
from storage import db
from storage.db import drop_schema, upgrade
from storage.lifecycle import Status
from tests.conftest import LEADER_HP01, RESIDENT, RESIDENT_2, WeChat, free_port

RESIDENT_3 = "o_resident_zhao"


def _bindir() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return next((p.parent for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)


class Postgres:
    """A throwaway PostgreSQL server: start, stop (fast shutdown: connections are cut), start again."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir, self.root, self.port = bindir, root, port
        self.data = root / "data"
        # initdb refuses to run as root: run the server binaries as the postgres user then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(self.prefix + [str(a) for a in args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
    root = Path(tempfile.mkdtemp(prefix="gridbot-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = Postgres(bindir, root, free_port())
    server.init()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped by a failed test
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def database_url(postgres: Postgres) -> AsyncIterator[str]:
    """This module's tests run on the throwaway server (overrides the suite's database)."""
    await asyncio.to_thread(_ensure_running, postgres)
    await drop_schema(postgres.url)
    await upgrade(postgres.url)
    yield postgres.url


def _ensure_running(server: Postgres) -> None:
    try:
        server.start()
    except subprocess.CalledProcessError:
        pass  # already running


async def test_postgres_down_webhook_answers_503_fast_then_the_retry_makes_the_case(
    wechat: WeChat, postgres: Postgres
) -> None:
    assert "已受理" in (await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了") or "")
    [lamp] = await wechat.cases()

    await asyncio.to_thread(postgres.stop)
    report = wechat.xml(RESIDENT_2, "text", {"Content": "春晖园8号楼楼道堆满杂物"}, msg_id=5_000_001)
    accept = wechat.xml(LEADER_HP01, "text", {"Content": f"接单 {lamp.number}"}, msg_id=5_000_002)
    for xml in (report, accept):
        started = time.monotonic()
        status, body = await wechat.post(xml)
        # Not stored, so not acknowledged: WeChat retries (it waits 5 s for an answer, then tries
        # again, three times in all). Within that wait, so the retry is WeChat's, not a timeout's.
        assert status == 503 and "Traceback" not in body
        assert time.monotonic() - started < 5.0

    await asyncio.to_thread(postgres.start)
    # WeChat's retries: the same messages, same MsgId. The server was not restarted.
    assert "已受理" in (wechat.sim.read_reply((await wechat.post(report))[1]) or "")
    assert "已接单" in (wechat.sim.read_reply((await wechat.post(accept))[1]) or "")
    await wechat.deliver()
    lamp_now, clutter = await wechat.cases()
    assert lamp_now.number == lamp.number and lamp_now.status == Status.ACCEPTED
    assert clutter.description.startswith("春晖园8号楼")
    assert any("已由和平里第一网格" in t for t in wechat.pushes_to(RESIDENT))


@pytest.mark.parametrize("idle_ping", [True, False], ids=["pinged-when-idle", "used-a-moment-ago"])
async def test_postgres_restarted_between_two_messages_the_next_is_answered_as_usual(
    wechat: WeChat, postgres: Postgres, monkeypatch: pytest.MonkeyPatch, idle_ping: bool
) -> None:
    """Every pooled connection died with the restart. One idle for a while is checked before use
    and replaced; one used a moment ago is not, so the store meets it dead and tries once more on
    a fresh connection: either way the resident gets their case number, no 503, no retry needed."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0 if idle_ping else 1e9)
    assert "已受理" in (await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了") or "")
    await wechat.app[RECEIVER].wait_idle()
    await asyncio.to_thread(postgres.stop)
    await asyncio.to_thread(postgres.start)

    status, body = await wechat.post(wechat.xml(RESIDENT_2, "text", {"Content": "春晖园8号楼楼道堆满杂物"}))
    assert status == 200 and "已受理" in (wechat.sim.read_reply(body) or "")
    assert len(await wechat.cases()) == 2


async def test_postgres_lost_after_the_message_was_stored_it_is_processed_when_back(
    wechat: WeChat, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged (stored) and then the database goes: the message is not marked failed but kept
    for recovery, and the resident gets their case number once the database is back."""
    real_handle = receive.handle

    async def database_goes_first(*args: Any, **kw: Any) -> Any:
        await asyncio.to_thread(postgres.stop)
        return await real_handle(*args, **kw)

    monkeypatch.setattr(receive, "handle", database_goes_first)
    reply = await wechat.text(RESIDENT_3, "锦绣花园2号楼门口垃圾堆好几天没人清")
    assert reply == receive.PROCESSING_FAILED  # an apology now: "您的消息已保存…"
    await wechat.app[RECEIVER].wait_idle()
    monkeypatch.setattr(receive, "handle", real_handle)

    await asyncio.to_thread(postgres.start)
    assert await wechat.cases() == []
    wechat.clock.advance(seconds=11)
    assert await wechat.app[RECEIVER].recover() == 1
    await wechat.deliver()
    [case] = await wechat.cases()
    assert case.description.startswith("锦绣花园2号楼")
    assert any(case.number in t for t in wechat.pushes_to(RESIDENT_3))
    assert await wechat.app[RECEIVER].recover() == 0  # once
