"""The app factory: typed keys, cleanup contexts for the database, HTTP client and background work."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from bot import heap
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.delivery import CustomerService, Fallback
from bot.open311 import Discovery, Open311API
from bot.open311 import add_routes as add_open311_routes
from bot.outbox import MEDIA_FETCH, WECOM_MEDIA_FETCH, DeliveryPolicy, MediaFetcher, OutboxWorker, Sender
from bot.receive import Receiver
from bot.tokens import SharedTokens
from bot.wechat import Parsed, ProtocolError, WeChatTransport
from bot.wechat_api import WeChatAPI
from bot.wecom import WeComTransport
from bot.wecom_api import WeComAPI, WeComRobot
from handlers.classify import Classifier, KeywordTable, Model
from handlers.context import Services
from handlers.digest import send_scheduled
from handlers.followup import FollowUp
from handlers.groups import post_daily_summaries
from handlers.holds import wake_suspended
from handlers.intake import dispatch_unplaced
from handlers.places import GridIndex
from handlers.policy import Policy
from handlers.understand import understand
from storage import grids
from storage.db import SessionFactory, create_engine, session_factory, transaction

log = logging.getLogger("gridbot.webhook")

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)  # type: ignore[type-abstract]
FACTORY = web.AppKey("factory", SessionFactory)
SERVICES = web.AppKey("services", Services)
TRANSPORT = web.AppKey("transport", WeChatTransport)
WECOM_TRANSPORT = web.AppKey("wecom_transport", WeComTransport)
RECEIVER = web.AppKey("receiver", Receiver)
WORKER = web.AppKey("worker", OutboxWorker)
FOLLOW_UP = web.AppKey("follow_up", FollowUp)
OPEN311 = web.AppKey("open311", Open311API)
# Who processes the messages: "inline" (this process, the default), "web" (GRIDBOT_PROCESSING=
# separate: this process only stores and answers), or "processor" (`gridbot process`).
ROLE = web.AppKey("role", str)


async def load_services(factory: SessionFactory, settings: Settings) -> Services:
    """Import the configured grid file (if any) and build the in-memory indexes."""
    office = "网格服务号"
    async with transaction(factory) as session:
        if settings.grid_file is not None:
            grid = grids.read_grid_file(settings.grid_file)
            await grids.import_grid(session, grid)
            office = grid.office.get("name", office)
        nodes = await grids.all_nodes(session)
    if nodes and settings.grid_file is None:
        office = next((n.name for n in nodes if n.parent_id is None), office)
    classifier = Classifier(
        _keyword_table(settings.categories_file, settings.categories_file.stat().st_mtime_ns),
        Model.load(settings.model_file) if settings.model_file else None,
    )
    services = Services(
        classifier=classifier,
        confirm_below=settings.confirm_below,
        grids=GridIndex(nodes),
        zone=settings.zone,
        policy=Policy.load(settings.policy_file, settings.zone),
        office_name=office,
        place_window_minutes=settings.place_window_minutes,
        max_per_minute=settings.resident_max_per_minute,
        max_per_hour=settings.resident_max_per_hour,
        max_cases_per_hour=settings.resident_max_cases_per_hour,
        wecom_app=settings.wecom_enabled,
    )
    # Built lazily, the keyword matcher and rjieba's dictionaries would stall the event loop for a
    # second or two on the first message: read one now, before the port is open.
    understand("幸福里小区3号楼东侧路灯坏了", classifier=services.classifier, grids=services.grids)
    return services


@functools.lru_cache(maxsize=8)
def _keyword_table(path: Path, _mtime_ns: int) -> KeywordTable:
    """One table, and so one keyword matcher to build, per file (as it is now) per process."""
    return KeywordTable.load(path)


def create_app(
    settings: Settings, *, clock: Clock | None = None, background: bool = True, processor: bool = False
) -> web.Application:
    """background=False leaves outbox delivery and the scheduler to the caller (tests drive them).
    processor: the app of `gridbot process` (processing, outbox, scheduler; it serves no requests).
    Otherwise, with GRIDBOT_PROCESSING=separate, the web app only stores and answers: outbox
    delivery and the scheduler run in the processing process."""
    app = web.Application(client_max_size=settings.max_body_bytes + 1024)
    app[SETTINGS] = settings
    app[ROLE] = "processor" if processor else "web" if settings.processing == "separate" else "inline"
    if app[ROLE] == "web":
        background = False
    app[CLOCK] = clock or SystemClock()
    app[TRANSPORT] = WeChatTransport(
        token=settings.wechat_token,
        appid=settings.wechat_appid,
        aes_key=settings.wechat_aes_key,
        replay_window=settings.replay_window_seconds,
        max_body=settings.max_body_bytes,
    )
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_outbound)
    if background:
        app.cleanup_ctx.append(_background)
    app.router.add_get("/wechat", wechat_verify)
    app.router.add_post("/wechat", wechat_message)
    if settings.wecom_enabled:  # without a WeCom app, /wecom does not exist (404)
        app[WECOM_TRANSPORT] = WeComTransport(
            token=settings.wecom_token,
            corp_id=settings.wecom_corp_id,
            aes_key=settings.wecom_aes_key,
            agent_id=settings.wecom_agent_id,
            replay_window=settings.replay_window_seconds,
            max_body=settings.max_body_bytes,
        )
        app.router.add_get("/wecom", wecom_verify)
        app.router.add_post("/wecom", wecom_message)
    add_open311_routes(app.router, lambda request: request.app[OPEN311])
    app.router.add_get("/healthz", healthz)
    # Imported here: the console's modules read this module's app keys.
    from bot.console.web import console_app

    app.add_subapp("/console/", console_app())
    app.cleanup_ctx.append(_heap)  # last: what the others built is frozen
    return app


async def _heap(app: web.Application) -> AsyncIterator[None]:
    """The heap startup built frozen, full collections only in quiet moments (bot/heap.py)."""
    heap.freeze()
    collector = heap.QuietCollector(arrivals=lambda: app[RECEIVER].arrivals if RECEIVER in app else 0)
    task = asyncio.create_task(heap.collect_when_quiet(collector), name="quiet-gc")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    heap.thaw()


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    app[FACTORY] = session_factory(engine)
    app[SERVICES] = await load_services(app[FACTORY], app[SETTINGS])
    app[FOLLOW_UP] = FollowUp(app[FACTORY], app[SERVICES])
    yield
    await engine.dispose()


async def _outbound(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Access tokens live in the database, shared with every other process; a refresh may take as
    # long as one HTTP call, plus the database writes around it.
    tokens = SharedTokens(app[FACTORY], app[CLOCK], lease=settings.outbound_timeout_seconds + 5)
    async with aiohttp.ClientSession() as http:
        api = WeChatAPI(
            http,
            base=settings.wechat_api_base,
            appid=settings.wechat_appid,
            secret=settings.wechat_secret,
            tokens=tokens,
            timeout=settings.outbound_timeout_seconds,
        )
        senders: dict[str, Sender] = {"wechat_cs": api.send_custom, MEDIA_FETCH: MediaFetcher(api, settings.media_dir)}
        senders.update(_wecom_senders(http, settings, tokens))
        app[WORKER] = OutboxWorker(
            app[FACTORY],
            senders,
            app[CLOCK],
            policies=customer_service(api, app),
            lease=timedelta(seconds=settings.outbox_lease_seconds),
        )
        app[RECEIVER] = Receiver(
            app[FACTORY],
            app[SERVICES],
            app[CLOCK],
            budget=settings.reply_budget_seconds,
            on_outbox=app[WORKER].kick,
            fetch_media=settings.media_dir is not None,
            elsewhere=app[ROLE] == "web",
            # Past the budget, and the abandon's commit, no webhook still waits for a passive reply.
            passive_within=settings.reply_budget_seconds + 1.0 if app[ROLE] == "processor" else None,
        )
        app[OPEN311] = Open311API(
            app[FACTORY],
            app[SERVICES],
            app[CLOCK],
            api_keys=settings.open311_keys,
            public_reads=settings.open311_public_reads,
            on_commit=app[WORKER].kick,
            discovery=Discovery(
                contact=settings.open311_contact,
                key_service=settings.open311_key_service,
                url=settings.open311_url,
                production=not settings.open311_test_endpoint,
            ),
        )
        await app[RECEIVER].warm_up(processing=app[ROLE] != "web")
        watcher = asyncio.create_task(app[RECEIVER].watch_pending()) if app[ROLE] == "web" else None
        yield
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await app[RECEIVER].wait_idle()


def _wecom_senders(http: aiohttp.ClientSession, settings: Settings, tokens: SharedTokens) -> dict[str, Sender]:
    """Group robots need no app, so they always work; app messages and staff photos need the app."""
    timeout = settings.outbound_timeout_seconds
    senders: dict[str, Sender] = {"wecom_robot": WeComRobot(http, base=settings.wecom_api_base, timeout=timeout).send}
    if settings.wecom_enabled:
        api = WeComAPI(
            http,
            base=settings.wecom_api_base,
            corp_id=settings.wecom_corp_id,
            secret=settings.wecom_secret,
            agent_id=settings.wecom_agent_id,
            tokens=tokens,
            timeout=timeout,
        )
        senders["wecom_app"] = api.send_app
        senders[WECOM_MEDIA_FETCH] = MediaFetcher(api, settings.media_dir)
    return senders


def customer_service(api: WeChatAPI, app: web.Application) -> dict[str, DeliveryPolicy]:
    """WeChat's customer-service rules (48 h window, quota, fallback) for channel wechat_cs."""
    settings = app[SETTINGS]
    fallback = (
        Fallback(settings.wechat_fallback, settings.wechat_template_id, settings.template_fields)
        if settings.wechat_template_id
        else None
    )
    policy = CustomerService(
        api,
        app[FACTORY],
        app[CLOCK],
        window_hours=settings.cs_window_hours,
        quota=settings.cs_quota_per_message,
        fallback=fallback,
        zone=settings.zone,
    )
    return {"wechat_cs": policy}


async def _background(app: web.Application) -> AsyncIterator[None]:
    worker, receiver = app[WORKER], app[RECEIVER]
    delivery = asyncio.create_task(worker.run_forever(), name="outbox")
    scheduler = AsyncIOScheduler(timezone=app[SETTINGS].timezone)
    processing = None
    if app[ROLE] == "processor":  # every stored message, whoever stored it, as soon as it is stored
        processing = asyncio.create_task(receiver.process_stored(), name="processing")
    else:
        # Messages acknowledged by a process that then died: pick them up (also once, right at start).
        scheduler.add_job(
            receiver.recover,
            "interval",
            kwargs={"older_than_seconds": app[SETTINGS].recover_after_seconds},
            seconds=app[SETTINGS].recover_every_seconds,
            id="recover",
            max_instances=1,
            coalesce=True,
            next_run_time=app[CLOCK].now(),
        )
    # Jobs whose due work lives in the database: claimed row by row, so a second process (or a
    # restart) never repeats one.
    scheduler.add_job(
        _run_job, "interval", args=[app, dispatch_unplaced], seconds=60, id="unplaced", max_instances=1, coalesce=True
    )
    scheduler.add_job(
        _run_job, "interval", args=[app, wake_suspended], seconds=60, id="wake", max_instances=1, coalesce=True
    )
    # Reminders, escalation and 未评价 closes: what is due lives in cases.next_ping_at.
    scheduler.add_job(_follow_up, "interval", args=[app], seconds=30, id="followup", max_instances=1, coalesce=True)
    # The daily digest to staff and the weekly summary: looked for every minute, sent once (job_run).
    scheduler.add_job(
        _run_job, "interval", args=[app, send_scheduled], seconds=60, id="digests", max_instances=1, coalesce=True
    )
    hour, minute = (int(p) for p in app[SETTINGS].group_summary_at.split(":"))
    scheduler.add_job(
        _run_job,
        "cron",
        args=[app, post_daily_summaries],
        hour=hour,
        minute=minute,
        id="group_summary",
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    yield
    scheduler.shutdown(wait=False)
    for task in (processing, delivery):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


Job = Callable[..., Awaitable[int]]


async def _follow_up(app: web.Application) -> None:
    if await app[FOLLOW_UP].tick(app[CLOCK].now()):
        app[WORKER].kick()


async def _run_job(app: web.Application, job: Job) -> None:
    """One scheduled pass of a job (session, *, services, now) -> how many things it did."""
    async with transaction(app[FACTORY]) as session:
        done = await job(session, services=app[SERVICES], now=app[CLOCK].now())
    if done:
        app[WORKER].kick()


async def run_processor(settings: Settings) -> None:
    """`gridbot process`: the app's databases, clients, processing, outbox and scheduler, without a
    web server, until SIGINT or SIGTERM."""
    if settings.process_nice:
        os.nice(settings.process_nice)
    app = create_app(settings, processor=True)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # startup: the cleanup contexts, then the heap freeze
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("processing", extra={"database": app[FACTORY].kw["bind"].dialect.name, "nice": os.nice(0)})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def wechat_verify(request: web.Request) -> web.Response:
    app = request.app
    try:
        echostr = app[TRANSPORT].verify_url(dict(request.query), app[CLOCK].now())
    except ProtocolError as exc:
        return web.Response(status=exc.status, text=exc.reason)
    return web.Response(text=echostr)


async def wechat_message(request: web.Request) -> web.Response:
    return await _receive(request, request.app[TRANSPORT])


async def wecom_verify(request: web.Request) -> web.Response:
    app = request.app
    try:
        echo = app[WECOM_TRANSPORT].verify_url(dict(request.query), app[CLOCK].now())
    except ProtocolError as exc:
        return web.Response(status=exc.status, text=exc.reason)
    return web.Response(text=echo)  # bare: no quotes, no newline


async def wecom_message(request: web.Request) -> web.Response:
    return await _receive(request, request.app[WECOM_TRANSPORT])


class Transport(Protocol):
    def parse(self, query: dict[str, str], body: bytes, now: datetime) -> Parsed: ...

    def render(self, parsed: Parsed, text: str | None, now: datetime) -> str: ...


async def _receive(request: web.Request, transport: Transport) -> web.Response:
    """One callback POST, the same for the Official Account and WeCom: checked, stored, answered."""
    app = request.app
    body = await read_body(request, app[SETTINGS].max_body_bytes)
    if body is None:
        log.info("webhook refused", extra={"path": request.path, "status": 413, "reason": "body too large"})
        return web.Response(status=413, text="body too large")
    try:
        parsed = transport.parse(dict(request.query), body, app[CLOCK].now())
    except ProtocolError as exc:
        log.info("webhook refused", extra={"path": request.path, "status": exc.status, "reason": exc.reason})
        return web.Response(status=exc.status, text=exc.reason)
    try:
        reply = await app[RECEIVER].receive(parsed.msg, parsed.dedupe_key)
    except (SQLAlchemyError, OSError):
        # Not stored, so not acknowledged: WeChat (or WeCom) will retry.
        log.exception("cannot store inbound message")
        return web.Response(status=503, text="storage unavailable")
    text = transport.render(parsed, reply, app[CLOCK].now())
    return web.Response(text=text, content_type="application/xml" if reply else "text/plain")


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` bytes (read no further). One read() returns
    only what has arrived so far: a body that comes in several pieces must be read to its end."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


WEBHOOKS = frozenset({"/wechat", "/wecom"})
SUMMARY_EVERY = 10.0  # seconds: one line for the webhook callbacks answered in that time


class AccessLogger(AbstractAccessLogger):
    """Method, path, status, time: no query string, which carries the resident's openid. The
    webhooks' answered callbacks (POST, 200) are summed up instead, a line every SUMMARY_EVERY
    seconds (`webhook answered n=… p50_ms=… p99_ms=… max_ms=…`): at 500 msg/s a line each was a
    twentieth of the server's CPU, and five hundred lines a second tell an operator less than one.
    Everything else, refusals and 503s included, gets its line."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.method == "POST" and response.status == 200 and request.path in WEBHOOKS:
            _ANSWERED.add(time, self.logger)
            return
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


class _Answered:
    """The webhook callbacks answered since the last summary line (one for the process: aiohttp
    makes an access logger per connection)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.since = 0.0

    def add(self, took: float, logger: logging.Logger) -> None:
        now = time.monotonic()
        if not self.times:
            self.since = now
        self.times.append(took)
        if now - self.since >= SUMMARY_EVERY:
            self.flush(logger)

    def flush(self, logger: logging.Logger) -> None:
        if not self.times:
            return
        times, self.times = sorted(self.times), []
        n = len(times)
        logger.info(
            "webhook answered",
            extra={
                "n": n,
                "p50_ms": round(times[n // 2] * 1000, 1),
                "p99_ms": round(times[min(n - 1, n * 99 // 100)] * 1000, 1),
                "max_ms": round(times[-1] * 1000, 1),
            },
        )


_ANSWERED = _Answered()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})
