"""Webhook load: the real server (`gridbot serve`, one or two processes) against a bare aiohttp handler.

    .venv/bin/python benchmarks/webhook_load.py                       # SQLite and PG, 1 and 2 workers
    .venv/bin/python benchmarks/webhook_load.py --db sqlite --workers 1 --rates 50,100 --duration 5
    .venv/bin/python benchmarks/webhook_load.py --db sqlite --soak 600 --soak-rate 100
    GRIDBOT_BENCH_PG=postgresql+asyncpg://postgres@127.0.0.1:5432/test_load  (the PG database: its
    public schema is DROPPED and recreated — point it at a scratch database only)

Every process is separate: a local fake of the WeChat and WeCom APIs (never a real host), the
server(s) (`python -m bot.cli serve`, with `--reuse-port` for two processes sharing the port), the
bare handler, and the load generator. Messages are signed and AES-encrypted (safe mode) exactly as
WeChat does it (bot.wechat.WeChatSimulator), in a realistic mix per ten messages:

    6 new reports (text) from distinct residents · 1 photo (PicUrl + MediaId: the server fetches the
    media from the fake) · 1 location pin · 1 leader command (接单 / 进展 / 我的工单, demo staff) ·
    1 resident 查询 or rating; and every 50th message is sent twice (WeChat's retry: same MsgId).

Open loop at each fixed rate (a message is due at t0 + i/rate whatever happened to the previous
ones; latency runs from when it was due, so a slow server cannot hide its queue), then a closed-loop
phase per `--concurrency` (requests in flight) for the maximum throughput: with 32 the server
mostly answers in full (it waits for processing while that fits the 1 s reply budget), with 256 the
queue is past the budget and it answers 已收到 once the message is stored, the reply following as a
customer-service message. The bare handler (an aiohttp app that only answers "success") takes the
same request bodies; ratio = ours / bare (its best closed loop). After the load it waits until every
message is processed and no push is due, and reports how long that took (the queue the residents saw).

After the phases: every message answered 200 must be in inbound_message (durably stored before it
was acknowledged), no resident has two cases (retries made one), and the peak RSS of each server
process (VmHWM). Each phase also reports the cores each process used while the load ran (servers,
the processing process last, the generator, all of PostgreSQL), the answering servers' CPU per
message, and how many answers over 100 ms were due in each second of the phase (tenths in the
first). Results print as tables and, with --json, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "loadbenchtoken"
APPID = "wxloadbench"
SECRET = "load-secret"
AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TIMEOUT = 5.0  # WeChat gives up after 5 s (and retries)

PROBLEMS = [
    "路灯坏了好几天了",
    "门口垃圾堆了三天没人清",
    "晚上装修噪音太大",
    "停水了",
    "楼道里有人给电动车充电",
    "井盖丢了很危险",
    "路面塌了一个坑",
    "楼上漏水到我家了",
]
PLACES = [
    "幸福里小区3号楼",
    "和平里北区12号楼",
    "和平里南区2号楼",
    "春晖园8号楼",
    "锦绣花园6号楼",
    "枣林小区4号楼",
    "翠微苑9号楼",
    "光明北街",
    "文化路",
    "滨河路",
]
# Leaders with a WeChat openid (the Official Account channel), and what they send.
STAFF = [
    "o_demo_zhangwei_hp01",
    "o_demo_zhaomin_hp02",
    "o_demo_sunlei_hp03",
    "o_demo_zhouting_ch01",
    "o_demo_zhenghongmei_zl01",
    "o_demo_zhangxiuying_hp",
    "o_demo_chenjing_zl",
]
STAFF_COMMANDS = ["我的工单", "接单", "进展 已联系物业，明天处理", "我的工单"]


# ---------------------------------------------------------------------------------------------
# The message mix


@dataclass
class Message:
    query: dict[str, str]
    body: bytes
    key: str  # the server's dedupe key: FromUserName:MsgId
    retry_of: int | None = None  # index of the original, for WeChat's retries


def build_messages(tag: str, count: int, fake_base: str, start: int = 0) -> list[Message]:
    """`count` messages of the mix, signed now (WeChat's replay window is 5 minutes: a long phase
    builds them a minute at a time). `start`: where in the mix to begin (the next chunk's)."""
    from bot.wechat import WeChatSimulator

    sim = WeChatSimulator(token=TOKEN, appid=APPID, aes_key=AES)
    now = int(time.time())
    out: list[Message] = []

    def add(sender: str, kind: str, fields: dict[str, Any]) -> None:
        msg_id = sim.next_msg_id()
        xml = sim.xml(sender, kind, fields, create_time=now, msg_id=msg_id)
        query, body = sim.sign(xml, timestamp=now)
        out.append(Message(query, body, f"{sender}:{msg_id}"))
        if len(out) % 50 == 0:  # WeChat's retry: the very same request again
            out.append(Message(query, body, f"{sender}:{msg_id}", retry_of=len(out) - 1))

    i = start
    while len(out) < count:
        block, slot = divmod(i, 10)
        resident = f"o_load_{tag}_{block}_{min(slot, 5)}"
        if slot < 6:
            text = f"{PLACES[(i * 7) % len(PLACES)]}{PROBLEMS[(i * 3 + block) % len(PROBLEMS)]}"
            add(resident, "text", {"Content": text})
        elif slot == 6:  # the resident who just reported sends a photo of it
            media = f"media_{tag}_{i}"
            add(f"o_load_{tag}_{block}_0", "image", {"PicUrl": f"{fake_base}/pic/{media}.jpg", "MediaId": media})
        elif slot == 7:  # ... and another one a location pin
            lat, lon = 39.925 + (block % 7) * 0.0005, 116.403 + (block % 5) * 0.002
            add(f"o_load_{tag}_{block}_1", "location", {"Location_X": lat, "Location_Y": lon, "Scale": 16, "Label": ""})
        elif slot == 8:
            add(STAFF[block % len(STAFF)], "text", {"Content": STAFF_COMMANDS[block % len(STAFF_COMMANDS)]})
        else:  # a resident of the previous block asks after the case, or rates it
            content = "查询" if block % 2 else "1"
            add(f"o_load_{tag}_{max(block - 1, 0)}_2", "text", {"Content": content})
        i += 1
    return out[:count]


# ---------------------------------------------------------------------------------------------
# The load generator (runs in its own process: `webhook_load.py _generate ...`)


@dataclass
class PhaseResult:
    name: str
    target: str  # "50/s" | "closed 32"
    sent: int = 0
    ok: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # non-200 answers, by status
    timeouts: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    rss_mib: list[float] = field(default_factory=list)  # peak RSS of each server process after the phase
    # CPU the phase took, in cores (1.0 = one core busy throughout): each server process (the
    # processing process last), the load generator, and every PostgreSQL process together.
    cpu: dict[str, Any] = field(default_factory=dict)
    slow: dict[str, int] = field(default_factory=dict)  # second of the phase → answers slower than SLOW


async def _post(
    http: Any, url: str, msg: Message, latencies: list[tuple[float, float]], res: PhaseResult, due: float
) -> bool:
    import aiohttp

    res.sent += 1
    try:
        async with http.post(url, params=msg.query, data=msg.body) as resp:
            await resp.read()
            status = resp.status
    except TimeoutError:
        res.timeouts += 1
        return False
    except aiohttp.ClientError:
        res.errors += 1
        return False
    if status != 200:
        res.errors += 1
        res.statuses[str(status)] = res.statuses.get(str(status), 0) + 1
        return False
    latencies.append((due, time.perf_counter() - due))
    res.ok += 1
    return True


def _finish(res: PhaseResult, latencies: list[tuple[float, float]], t0: float, elapsed: float) -> PhaseResult:
    res.seconds = elapsed
    res.rate = res.ok / elapsed if elapsed else 0.0
    if len(latencies) >= 2:
        q = statistics.quantiles([lat for _, lat in latencies], n=100, method="inclusive")
        res.p50, res.p99, res.max = q[49] * 1000, q[98] * 1000, max(lat for _, lat in latencies) * 1000
    # When the answers slower than SLOW were due: how many in each second of the phase.
    for due, lat in latencies:
        if lat > SLOW:
            second = str(int(due - t0)) if due - t0 >= 1 else f"{int((due - t0) * 10) / 10:.1f}"
            res.slow[second] = res.slow.get(second, 0) + 1
    return res


CHUNK_SECONDS = 60
WARMUP_RATE = 20  # messages a second before the measured phases (--warmup seconds of it)
SLOW = 0.1  # seconds: the p99 target


async def open_loop(
    url: str, tag: str, fake: str, rate: float, duration: float, acked: list[str], watch: list[int]
) -> PhaseResult:
    import aiohttp

    res = PhaseResult(name="open", target=f"{rate:g}/s")
    latencies: list[tuple[float, float]] = []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    connector = aiohttp.TCPConnector(limit=0)
    total = int(rate * duration)
    chunk = int(rate * CHUNK_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        tasks: set[asyncio.Task[None]] = set()
        msgs = build_messages(tag, min(total, chunk), fake)
        meter = CpuMeter(watch)
        t0 = time.perf_counter()

        async def one(msg: Message, due: float) -> None:
            if await _post(http, url, msg, latencies, res, due):
                acked.append(msg.key)

        for i in range(total):
            if i and i % chunk == 0:  # the next minute's messages, with a fresh timestamp
                msgs = build_messages(tag, min(total - i, chunk), fake, start=i)
            msg = msgs[i % chunk]
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(msg, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*list(tasks))
        elapsed = time.perf_counter() - t0
        res.cpu = meter.cores()
    return _finish(res, latencies, t0, elapsed)


async def closed_loop(
    url: str, msgs: list[Message], concurrency: int, seconds: float, acked: list[str], watch: list[int]
) -> PhaseResult:
    import aiohttp

    res = PhaseResult(name="closed", target=f"closed {concurrency}")
    latencies: list[tuple[float, float]] = []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    it = iter(msgs)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        meter = CpuMeter(watch)
        t0 = time.perf_counter()
        stop = t0 + seconds

        async def worker() -> None:
            for msg in it:
                if time.perf_counter() >= stop:
                    return
                if await _post(http, url, msg, latencies, res, time.perf_counter()):
                    acked.append(msg.key)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        res.cpu = meter.cores()
    return _finish(res, latencies, t0, elapsed)


def generate(args: argparse.Namespace) -> None:
    """One phase; prints the PhaseResult as JSON and appends acknowledged dedupe keys to --acked."""
    acked: list[str] = []
    watch = [int(p) for p in args.watch.split(",") if p]
    if args.rate:
        res = asyncio.run(open_loop(args.url, args.tag, args.fake, args.rate, args.duration, acked, watch))
    else:  # closed loop: enough messages for the phase even against the bare handler
        msgs = build_messages(args.tag, int(args.max_messages), args.fake)
        res = asyncio.run(closed_loop(args.url, msgs, args.concurrency, args.duration, acked, watch))
    if args.acked:
        with open(args.acked, "a") as f:
            f.writelines(k + "\n" for k in acked)
    print(json.dumps(asdict(res)), flush=True)


# ---------------------------------------------------------------------------------------------
# Helper processes


def bare(args: argparse.Namespace) -> None:
    """The floor: an aiohttp app that reads the body and answers "success", nothing else."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/wechat", handler)
    app.router.add_get("/healthz", lambda r: handler(r))
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


def fakes(args: argparse.Namespace) -> None:
    """The local fakes of the WeChat API (pushes, tokens, media) and of WeCom (group robots)."""
    from aiohttp import web

    from bot.config import DEMO_WECOM
    from bot.fake_wechat import FakeWeChat
    from bot.fake_wecom import FakeWeCom

    async def run() -> None:
        runners = []
        for fake, port in (
            (FakeWeChat(APPID, SECRET), args.port),
            (FakeWeCom(str(DEMO_WECOM["wecom_corp_id"]), "x", 1000002), args.wecom_port),
        ):
            runner = web.AppRunner(fake.app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_logged(log: Path, line: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Until the process has logged `line` (the processing process: started, taking messages)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{log.name}: exited {proc.returncode}: {log.read_text()[-2000:]}")
        if log.exists() and line in log.read_text():
            return
        time.sleep(0.1)
    raise SystemExit(f"{log.name}: never logged {line.strip()!r} in {seconds:g} s")


def wait_healthy(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing healthy on port {port}")


def _proc_kib(pid: int, field_name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    return _proc_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    return _proc_kib(pid, "VmHWM") / 1024


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (fields 14 and 15 of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class CpuMeter:
    """Cores used while the load runs (1.0: one core busy throughout), measured by the generator
    from the moment its load starts to the moment it ends: each watched process, the generator
    itself, and all of PostgreSQL's processes together."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = self._read()

    def _read(self) -> tuple[float, list[float], float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return time.monotonic(), [cpu_seconds(p) for p in self.pids], me.ru_utime + me.ru_stime, postgres_cpu_seconds()

    def cores(self) -> dict[str, Any]:
        (t0, watched0, me0, pg0), (t1, watched1, me1, pg1) = self.start, self._read()
        wall = t1 - t0
        return {
            "servers": [round((b - a) / wall, 2) for a, b in zip(watched0, watched1, strict=True)],
            "generator": round((me1 - me0) / wall, 2),
            "postgres": round((pg1 - pg0) / wall, 2),
        }


def postgres_cpu_seconds() -> float:
    """All the machine's PostgreSQL processes (the backends serving our connections among them)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    total += cpu_seconds(int(entry.name))
    return total


class Stack:
    """The fakes plus one or two server processes on one database (or the bare handler)."""

    def __init__(self, tmp: Path, db_url: str | None, workers: int, processing: str = "inline") -> None:
        self.tmp, self.db_url, self.workers, self.processing = tmp, db_url, workers, processing
        self.procs: list[subprocess.Popen[bytes]] = []
        self.servers: list[subprocess.Popen[bytes]] = []
        self.port = free_port()
        self.fake_port, self.wecom_port = free_port(), free_port()

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None, log: str = "") -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
        full |= {"PYTHONPATH": str(ROOT)} | (env or {})
        out = open(self.tmp / log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(argv, env=full, cwd=self.tmp, stdout=out, stderr=out)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        me = [sys.executable, str(Path(__file__).resolve())]
        if self.db_url is None:
            self.servers.append(self._spawn([*me, "_bare", "--port", str(self.port)]))
            wait_healthy(self.port, self.servers[0])
            return
        fake = self._spawn([*me, "_fakes", "--port", str(self.fake_port), "--wecom-port", str(self.wecom_port)])
        env = {
            "GRIDBOT_DATABASE_URL": self.db_url,
            "GRIDBOT_PORT": str(self.port),
            "GRIDBOT_WECHAT_TOKEN": TOKEN,
            "GRIDBOT_WECHAT_APPID": APPID,
            "GRIDBOT_WECHAT_SECRET": SECRET,
            "GRIDBOT_WECHAT_AES_KEY": AES,
            "GRIDBOT_WECHAT_API_BASE": f"http://127.0.0.1:{self.fake_port}",
            "GRIDBOT_WECOM_API_BASE": f"http://127.0.0.1:{self.wecom_port}",
            "GRIDBOT_GRID_FILE": str(ROOT / "bot/data/demo_grid.yaml"),
            "GRIDBOT_MEDIA_DIR": str(self.tmp / "media"),
            "GRIDBOT_PROCESSING": self.processing,
        }
        argv = [sys.executable, "-m", "bot.cli", "serve"] + (["--reuse-port"] if self.workers > 1 else [])
        for n in range(self.workers):
            # One after the other: each migrates and imports the grid at start.
            self.servers.append(self._spawn(argv, env, log=f"server{n}.log"))
            wait_healthy(self.port, self.servers[-1])
        if self.processing == "separate":  # `gridbot process` beside the servers; its RSS is listed last
            self.servers.append(self._spawn([sys.executable, "-m", "bot.cli", "process"], env, log="process.log"))
            wait_logged(self.tmp / "process.log", " processing ", self.servers[-1])
        del fake

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_phase(
    stack: Stack,
    tag: str,
    acked: Path,
    *,
    rate: float = 0,
    duration: float,
    concurrency: int = 32,
    max_messages: int = 0,
) -> PhaseResult:
    argv = [
        sys.executable, str(Path(__file__).resolve()), "_generate",
        "--url", f"http://127.0.0.1:{stack.port}/wechat", "--fake", f"http://127.0.0.1:{stack.fake_port}",
        "--tag", tag, "--duration", str(duration), "--rate", str(rate), "--concurrency", str(concurrency),
        "--max-messages", str(max_messages), "--acked", str(acked),
        "--watch", ",".join(str(p.pid) for p in stack.servers),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    res = PhaseResult(**json.loads(out.stdout.strip().splitlines()[-1]))
    res.rss_mib = [round(peak_rss_mib(p.pid), 1) for p in stack.servers]
    # CPU of the servers that answer (not the processing process) per message answered.
    answering = res.cpu["servers"][: stack.workers]
    res.cpu["answer_ms_per_msg"] = round(sum(answering) * res.seconds / res.ok * 1000, 3) if res.ok else None
    return res


# ---------------------------------------------------------------------------------------------
# Durability checks, straight from the database


async def _check(db_url: str, acked: set[str]) -> dict[str, Any]:
    stored = {r[0] for r in await _query(db_url, "SELECT dedupe_key FROM inbound_message")}
    per_resident = "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM cases GROUP BY resident_id) AS c"
    unprocessed = "SELECT COUNT(*) FROM inbound_message WHERE status <> 'processed'"
    return {
        "acknowledged": len(acked),
        "stored": len(stored),
        "acknowledged_not_stored": len(acked - stored),
        "cases": (await _query(db_url, "SELECT COUNT(*) FROM cases"))[0][0],
        "most_cases_per_resident": (await _query(db_url, per_resident))[0][0],
        "not_processed": (await _query(db_url, unprocessed))[0][0],
    }


async def _drain(db_url: str, since: float, give_up_after: float) -> dict[str, Any]:
    """After the load: wait, the servers still running, until every stored message is processed
    and the outbox has nothing due left (the replies that went by customer service, the leaders'
    pushes), and report how long that took and each one's rate over the whole run. Acknowledging
    faster than processing makes a queue: this is how long the last resident waited for an answer."""
    now_sql = "datetime('now')" if db_url.startswith("sqlite") else "now()"
    t0 = time.time()
    processed_at = None
    while True:
        waiting = (await _query(db_url, "SELECT COUNT(*) FROM inbound_message WHERE status = 'received'"))[0][0]
        if waiting == 0 and processed_at is None:
            processed_at = time.time()
        due = (
            await _query(
                db_url, f"SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= {now_sql}"
            )
        )[0][0]
        if (waiting == 0 and due == 0) or time.time() - t0 > give_up_after:
            break
        await asyncio.sleep(0.5)
    done = time.time()
    total = (await _query(db_url, "SELECT COUNT(*) FROM inbound_message"))[0][0]
    sent = (await _query(db_url, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'"))[0][0]
    modes = await _query(db_url, "SELECT reply_mode, COUNT(*) FROM inbound_message GROUP BY 1")
    pushes = await _query(db_url, "SELECT status, COUNT(*) FROM outbox GROUP BY 1")
    processed_in = (processed_at or done) - since
    return {
        "left_unprocessed": waiting,
        "left_due_pushes": due,
        "processed_after_load_s": round((processed_at or done) - t0, 1),
        "delivered_after_load_s": round(done - t0, 1),
        "processed_per_second": round((total - waiting) / processed_in, 1),
        "pushes_sent_per_second": round(sent / (done - since), 1),
        "reply_modes": {str(k): v for k, v in modes},
        "pushes": {str(k): v for k, v in pushes},
    }


async def _query(db_url: str, sql: str) -> list[Any]:
    """A read beside the running servers. SQLite: a plain reader (WAL lets it read while they
    write; the app's engine would BEGIN IMMEDIATE and queue for the write lock)."""
    if db_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(db_url.split("///", 1)[1])) as conn:
            return conn.execute(sql).fetchall()
    from sqlalchemy import text

    from storage.db import create_engine

    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


def reset_pg(url: str) -> None:
    """An empty scratch database: created on first use, emptied on every other."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from storage.db import create_engine, drop_schema

    async def reset() -> None:
        name = make_url(url).database
        server = create_engine(
            make_url(url).set(database="postgres").render_as_string(hide_password=False), isolation_level="AUTOCOMMIT"
        )
        try:
            async with server.connect() as conn:
                if not (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})).first():
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await server.dispose()
        await drop_schema(url)

    asyncio.run(reset())


# ---------------------------------------------------------------------------------------------
# The run


def run_config(
    args: argparse.Namespace, db: str, workers: int, tmp: Path, processing: str = "inline"
) -> dict[str, Any]:
    work = tmp / f"{db}-{workers}-{processing}"
    work.mkdir(parents=True, exist_ok=True)
    if db == "sqlite":
        url: str | None = f"sqlite+aiosqlite:///{work}/load.sqlite3"
    elif db == "pg":
        url = args.pg_url
        reset_pg(url)
    else:
        url = None
    stack = Stack(work, url, workers, processing)
    acked = work / "acked.txt"
    phases: list[PhaseResult] = []
    soak: list[tuple[float, list[float]]] = []
    stack.start()
    t_start = time.time()
    drain: dict[str, Any] = {}
    spies = []
    if args.py_spy and url is not None:  # sample the servers for the whole run (collapsed stacks)
        py_spy = Path(sys.executable).with_name("py-spy")
        for n, proc in enumerate(stack.servers):
            out = f"{args.py_spy}-{db}-{workers}-{n}.txt"
            argv = [
                str(py_spy),
                "record",
                "--pid",
                str(proc.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "-o",
                out,
            ]
            spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        label = "bare" if url is None else f"{db} ×{workers}" + (" +process" if processing == "separate" else "")
        if args.soak:
            t0 = time.monotonic()
            soak.append((0.0, [round(rss_mib(p.pid), 1) for p in stack.servers]))
            done = threading.Event()

            def sample() -> None:
                while not done.wait(60):
                    soak.append((time.monotonic() - t0, [round(rss_mib(p.pid), 1) for p in stack.servers]))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            res = run_phase(stack, f"soak{workers}", acked, rate=args.soak_rate, duration=args.soak)
            done.set()
            soak.append((time.monotonic() - t0, [round(rss_mib(p.pid), 1) for p in stack.servers]))
            phases.append(res)
            print(f"{label} soak {args.soak_rate}/s {args.soak:g}s: {fmt(res)}", flush=True)
        else:
            if url is not None and args.warmup:
                # A running service, not one started a moment ago: a few seconds of light traffic,
                # processed, before the phases (their answers are checked for durability, not timed).
                # --warmup 0 measures the first seconds after a start instead.
                res = run_phase(stack, f"w{workers}", acked, rate=WARMUP_RATE, duration=args.warmup)
                asyncio.run(_drain(url, t_start, 60))
                print(f"{label} warm-up {WARMUP_RATE:g}/s {args.warmup:g}s: {fmt(res)}", flush=True)
            for n, rate in enumerate(args.rates if url is not None or args.bare_rates else []):
                res = run_phase(stack, f"r{n}w{workers}", acked, rate=rate, duration=args.duration)
                phases.append(res)
                print(f"{label} {res.target}: {fmt(res)}", flush=True)
            for concurrency in args.concurrency:
                res = run_phase(
                    stack, f"c{workers}-{concurrency}", acked, duration=args.duration, concurrency=concurrency,
                    max_messages=args.max_messages,
                )  # fmt: skip
                phases.append(res)
                print(f"{label} {res.target}: {fmt(res)}", flush=True)
        if url is not None:
            drain = asyncio.run(_drain(url, t_start, args.drain_timeout))
            print(f"{label} processing: {drain}", flush=True)
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait()
        stack.stop()
    keys = {k for k in acked.read_text().splitlines() if k} if acked.exists() else set()
    checks = asyncio.run(_check(url, keys)) if url is not None else {}
    if checks:
        print(f"{label} durability: {checks}", flush=True)
    return {
        "db": db,
        "workers": workers,
        "mode": processing,
        "phases": [asdict(p) for p in phases],
        "soak_rss": soak,
        "checks": checks,
        "processing": drain,
    }


def fmt(r: PhaseResult) -> str:
    return (
        f"{r.rate:.0f} msg/s ({r.ok}/{r.sent} ok, {r.errors} errors {r.statuses or ''}, {r.timeouts} timeouts), "
        f"p50 {r.p50:.1f} ms, p99 {r.p99:.1f} ms, max {r.max:.1f} ms, peak RSS {r.rss_mib} MiB, cores {r.cpu}, "
        f"slower than {SLOW * 1000:.0f} ms by second {r.slow}"
    )


def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gridbot-load-"))
    results = []
    try:
        if not args.soak and not args.no_bare:
            results.append(run_config(args, "bare", 1, tmp))
        for db in args.db:
            for processing in args.processing:
                for workers in args.workers:
                    results.append(run_config(args, db, workers, tmp, processing))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    bare_max = next((max(p["rate"] for p in r["phases"]) for r in results if r["db"] == "bare"), None)
    print()
    print("| database | processing | workers | load | msg/s | ok/sent | p50 ms | p99 ms | max ms | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for p in r["phases"]:
            print(
                f"| {r['db']} | {r['mode']} | {r['workers']} | {p['target']} | {p['rate']:.0f} | "
                f"{p['ok']}/{p['sent']} | "
                f"{p['p50']:.1f} | {p['p99']:.1f} | {p['max']:.1f} | {' + '.join(map(str, p['rss_mib']))} |"
            )
    if bare_max:
        print()
        for r in results:
            for p in r["phases"] if r["db"] != "bare" else []:
                if p["name"] == "closed":
                    ours = p["rate"]
                    print(
                        f"{r['db']} {r['mode']} ×{r['workers']} {p['target']}: {ours:.0f} msg/s = "
                        f"{ours / bare_max:.1%} of bare "
                        f"({bare_max:.0f})"
                    )
    for r in results:
        if r["processing"]:
            print(f"{r['db']} {r['mode']} ×{r['workers']} processing: {r['processing']}")
    for r in results:
        if r["soak_rss"]:
            print(f"{r['db']} ×{r['workers']} soak RSS (s, MiB per process): {r['soak_rss']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def parse_args(argv: list[str]) -> argparse.Namespace:
    if argv and argv[0] in ("_generate", "_bare", "_fakes"):
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("--url")
        p.add_argument("--fake")
        p.add_argument("--tag")
        p.add_argument("--rate", type=float, default=0)
        p.add_argument("--duration", type=float, default=10)
        p.add_argument("--concurrency", type=int, default=32)
        p.add_argument("--max-messages", type=int, default=0)
        p.add_argument("--acked")
        p.add_argument("--watch", default="", help="PIDs whose CPU the phase reports, comma-separated")
        p.add_argument("--port", type=int)
        p.add_argument("--wecom-port", type=int)
        return p.parse_args(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", default="sqlite,pg", type=lambda s: s.split(","), help="sqlite,pg")
    p.add_argument(
        "--processing",
        default="inline",
        type=lambda s: s.split(","),
        help="inline,separate: who processes (separate: `gridbot process` beside the servers)",
    )
    p.add_argument("--workers", default="1,2", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--rates", default="50,100,200,500,1000", type=lambda s: [float(x) for x in s.split(",")])
    p.add_argument("--duration", type=float, default=10, help="seconds per phase")
    p.add_argument(
        "--concurrency",
        default="32,256",
        type=lambda s: [int(x) for x in s.split(",") if x],
        help="requests in flight in each closed-loop phase: 32 is answered in full while processing keeps up "
        "within the reply budget; 256 is past it (stored and answered 已收到, the reply follows)",
    )
    p.add_argument("--max-messages", type=int, default=30000, help="messages prepared for the closed-loop phase")
    p.add_argument("--bare-rates", action="store_true", help="also run the fixed rates against the bare handler")
    p.add_argument("--no-bare", action="store_true")
    p.add_argument("--soak", type=float, default=0, help="seconds of fixed-rate load instead of the phases")
    p.add_argument("--soak-rate", type=float, default=100)
    p.add_argument(
        "--pg-url",
        default=os.environ.get("GRIDBOT_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test_load"),
        help="a SCRATCH database: its public schema is dropped",
    )
    p.add_argument("--drain-timeout", type=float, default=600, help="seconds to wait for processing to catch up")
    p.add_argument(
        "--warmup",
        type=float,
        default=3,
        help="seconds of light traffic (20/s), processed, before the measured phases; 0: measure right after the start",
    )
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--py-spy", help="py-spy the servers: collapsed stacks to PREFIX-<db>-<workers>-<n>.txt")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, SQLite file)")
    return p.parse_args(argv)


if __name__ == "__main__":
    ns = parse_args(sys.argv[1:])
    mode = getattr(ns, "mode", None)
    if mode == "_generate":
        generate(ns)
    elif mode == "_bare":
        bare(ns)
    elif mode == "_fakes":
        fakes(ns)
    else:
        main(ns)
