"""Processing in a process of its own (GRIDBOT_PROCESSING=separate, `gridbot process`): the web
process stores and answers, the processing process processes; the passive reply still reaches the
resident when there is time for it, and never gets lost between the two when there is not."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlmodel import select

import bot.receive
from bot.app import FACTORY, RECEIVER, ROLE, WORKER, create_app
from bot.config import Settings
from handlers.types import Inbound
from storage import inbound
from storage.db import transaction
from storage.models import Case, InboundMessage, OutboxMessage, Resident
from tests.conftest import LEADER_HP01, RESIDENT, FakeClock, WeChat
from tests.test_cli import _run

REPORT = "幸福里小区3号楼东侧路灯坏了"
CASE_NUMBER = re.compile(r"G\d{8}-\d{4}")


class Processor:
    """The app of `gridbot process`, on the test's database and clock; started by the test."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.app[RECEIVER].process_stored())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.app[RECEIVER].wait_idle()

    async def until_processed(self) -> None:
        for _ in range(500):
            async with transaction(self.app[FACTORY]) as session:
                left = await inbound.count_pending(session, limit=1)
            if not left:
                break
            await asyncio.sleep(0.01)
        await self.app[RECEIVER].wait_idle()
        await self.app[WORKER].drain()


@pytest.fixture
def separate(settings: Settings) -> Settings:
    return settings.model_copy(update={"processing": "separate"})


@pytest.fixture
async def processor(separate: Settings, clock: FakeClock) -> AsyncIterator[Processor]:
    app = create_app(separate, clock=clock, background=False, processor=True)
    runner = web.AppRunner(app)
    await runner.setup()
    proc = Processor(app)
    yield proc
    await proc.stop()
    await runner.cleanup()


async def _web(aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: Any) -> WeChat:
    client = await aiohttp_client(create_app(settings, clock=clock))
    return WeChat(client, clock, fake_wechat, "")


@pytest.fixture
async def web_only(aiohttp_client: Any, separate: Settings, clock: FakeClock, fake_wechat: Any) -> WeChat:
    return await _web(aiohttp_client, separate, clock, fake_wechat)


async def _stored(wechat: WeChat, msg: Inbound, key: str, *, reply_mode: str | None = None) -> None:
    """A message in the inbound log as a server stores it, received when the message was sent."""
    async with transaction(wechat.app[FACTORY]) as session:
        row = inbound.new_row(
            dedupe_key=key,
            channel=msg.channel,
            sender=msg.sender,
            msg_type=msg.kind,
            payload=msg.to_payload(),
            now=msg.created_at,
            reply_mode=reply_mode,
        )
        await inbound.store_in(session, [row], waking=set(), now=msg.created_at)


async def _rows(wechat: WeChat) -> list[InboundMessage]:
    async with transaction(wechat.app[FACTORY]) as session:
        return list((await session.exec(select(InboundMessage).order_by(InboundMessage.id))).all())


async def test_the_web_process_only_stores_and_answers(web_only: WeChat) -> None:
    app = web_only.app
    assert app[ROLE] == "web" and app[RECEIVER].elsewhere
    assert not any(t.get_name() == "outbox" for t in asyncio.all_tasks())  # no delivery, no scheduler here


async def test_a_report_is_answered_passively_by_the_processing_process(web_only: WeChat, processor: Processor) -> None:
    processor.start()
    reply = await web_only.text(RESIDENT, REPORT)
    [case] = await web_only.cases()
    assert reply is not None and "已受理" in reply and case.number in reply
    await processor.until_processed()
    assert web_only.pushes_to(RESIDENT) == []  # the receipt came in the answer, not a second time
    assert len(web_only.pushes_to(LEADER_HP01)) == 1  # the leader's card, from the processing process
    [row] = await _rows(web_only)
    assert row.reply_mode == bot.receive.PASSIVE
    # WeChat's retry of the same message gets the same answer, and no second case.
    again = await web_only.send(web_only.xml(RESIDENT, "text", {"Content": REPORT}, msg_id=row.payload["msg_id"]))
    assert again == reply and len(await web_only.cases()) == 1


async def test_without_processing_in_time_the_answer_is_received_and_the_receipt_follows(
    aiohttp_client: Any, separate: Settings, clock: FakeClock, fake_wechat: Any, processor: Processor
) -> None:
    quick = separate.model_copy(update={"reply_budget_seconds": 0.1})
    wechat = await _web(aiohttp_client, quick, clock, fake_wechat)
    assert await wechat.text(RESIDENT, REPORT) == bot.receive.RECEIVED  # nothing processed it within 0.1 s
    [row] = await _rows(wechat)
    assert row.status == "received" and row.reply_mode == bot.receive.CUSTOMER_SERVICE  # abandoned
    processor.start()
    await processor.until_processed()
    [case] = await wechat.cases()
    [receipt] = wechat.pushes_to(RESIDENT)
    assert "已受理" in receipt and case.number in receipt


async def test_abandoning_waits_for_processing_that_claimed_the_message_and_finds_its_reply(
    web_only: WeChat,
) -> None:
    """The race at the end of the budget: processing has claimed the row and is committing its
    passive reply when the webhook gives up. The webhook's mark waits for processing's commit, then
    finds the reply there (so it answers with it), and processing never sends it again."""
    factory = web_only.app[FACTORY]
    now = web_only.clock.now()
    async with transaction(factory) as session:
        row = inbound.new_row(dedupe_key="k1", channel="wechat", sender=RESIDENT, msg_type="text", payload={}, now=now)
        ids = await inbound.store_in(session, [row], waking=set(), now=now)
    row_id = ids["k1"]
    claimed, release = asyncio.Event(), asyncio.Event()

    async def processing() -> None:
        async with transaction(factory) as session:
            got = await inbound.claim(session, row_id=row_id, now=now)
            assert got is not None and got.reply_mode is None  # waited for
            await inbound.finish(session, row_id=row_id, reply="您的工单已受理", mode="passive", case_id=None)
            claimed.set()
            await release.wait()

    async def abandon() -> bool:
        async with transaction(factory) as session:
            return await inbound.abandon(session, row_id=row_id)

    first = asyncio.create_task(processing())
    await claimed.wait()
    second = asyncio.create_task(abandon())
    await asyncio.sleep(0.2)
    assert not second.done()  # waits for processing's row (lock), not past it
    release.set()
    await first
    assert await second is False
    async with transaction(factory) as session:
        assert await inbound.outcome(session, row_id=row_id) == ("processed", "passive", "您的工单已受理")


async def test_a_flood_is_answered_at_once_and_nobody_waits_for_the_processing_process(
    web_only: WeChat, processor: Processor
) -> None:
    """Messages waiting for processing already (as many as are waited for at once): the next sender
    hears 已收到 at once, stored as not waited for, and the receipt follows through customer service."""
    receiver = web_only.app[RECEIVER]
    senders = [f"o_flood_{i}" for i in range(bot.receive.WAITED_AT_ONCE)]
    for n, sender in enumerate(senders):
        msg = Inbound(channel="wechat", sender=sender, kind="text", created_at=web_only.clock.now(), text=REPORT)
        await _stored(web_only, msg, f"flood:{n}", reply_mode=bot.receive.CUSTOMER_SERVICE)
    await receiver.count_pending()
    assert await web_only.text(RESIDENT, REPORT) == bot.receive.RECEIVED
    mine = [r for r in await _rows(web_only) if r.sender == RESIDENT]
    assert [r.reply_mode for r in mine] == [bot.receive.CUSTOMER_SERVICE]  # marked when stored: no wait
    processor.start()
    await processor.until_processed()
    [receipt] = web_only.pushes_to(RESIDENT)  # (the same lamp: merged into the first report's case)
    assert CASE_NUMBER.search(receipt)
    assert all(len(web_only.pushes_to(s)) == 1 for s in senders)
    await receiver.count_pending()  # processed: the next one waits for its answer again
    receiver._behind_until = 0.0  # (a store slower than STORE_BEHIND on a busy machine is not a flood)
    reply = await web_only.text("o_after_flood", "春晖园小区2号楼门口垃圾堆好几天没人清")
    assert reply is not None and "已受理" in reply


async def test_a_message_whose_webhook_is_gone_is_answered_through_customer_service(
    web_only: WeChat, processor: Processor
) -> None:
    """Stored as waited for, but older than any webhook waits (its web process died before it
    could mark the row): the processing process sends the receipt as a customer-service message."""
    stored = web_only.clock.now() - timedelta(seconds=10)
    msg = Inbound(channel="wechat", sender=RESIDENT, kind="text", created_at=stored, msg_id=9, text=REPORT)
    await _stored(web_only, msg, f"{RESIDENT}:9")
    processor.start()
    await processor.until_processed()
    [case] = await web_only.cases()
    [receipt] = web_only.pushes_to(RESIDENT)
    assert case.number in receipt
    [row_after] = await _rows(web_only)
    assert row_after.reply_mode == bot.receive.CUSTOMER_SERVICE


async def test_one_persons_messages_from_two_web_processes_are_processed_in_order(
    aiohttp_client: Any, separate: Settings, clock: FakeClock, fake_wechat: Any, processor: Processor
) -> None:
    """Two web processes store; the one processing process takes each person's messages in the
    order they were stored (a pin, then the report that needs the place)."""
    first = await _web(aiohttp_client, separate, clock, fake_wechat)
    second = await _web(aiohttp_client, separate, clock, fake_wechat)
    await first.location(RESIDENT, 39.9042, 116.4074, "幸福里小区")  # waits: nothing processes yet
    await second.text(RESIDENT, "路灯坏了")
    processor.start()
    await processor.until_processed()
    rows = await _rows(first)
    assert [r.msg_type for r in rows] == ["location", "text"]
    assert rows[0].processed_at is not None and rows[1].processed_at is not None
    assert len(await first.cases()) == 1


def test_process_command_needs_separate_processing(tmp_path: Path) -> None:
    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.sqlite3"}
    result = _run(["process"], env, cwd=tmp_path)
    assert result.returncode == 2 and "GRIDBOT_PROCESSING=separate" in result.stderr


async def test_warm_up_at_start_runs_a_message_through_and_keeps_nothing(
    separate: Settings, clock: FakeClock, aiohttp_client: Any, fake_wechat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the port opens each process runs the statements of a message once (the processing
    process the handlers too: a report that makes a case), in transactions rolled back."""
    handled: list[str] = []
    real_handle = bot.receive.handle

    async def counted(session: Any, msg: Inbound, *args: Any) -> Any:
        result = await real_handle(session, msg, *args)
        handled.append(msg.sender)
        assert result[1].case_id is not None  # the whole intake path ran: a case, then rolled back
        return result

    monkeypatch.setattr(bot.receive, "handle", counted)
    web_only = await _web(aiohttp_client, separate, clock, fake_wechat)
    assert handled == []  # the web process stores and reads, it does not process
    app = create_app(separate, clock=clock, background=False, processor=True)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert handled and all(s.startswith("warm-up-") for s in handled)
        async with transaction(app[FACTORY]) as session:
            for model in (InboundMessage, Case, Resident, OutboxMessage):
                assert (await session.exec(select(model))).all() == [], model
    finally:
        await runner.cleanup()
    assert await web_only.text(RESIDENT, REPORT)  # and the server answers as usual after it


async def test_the_processing_process_tells_a_flood_and_still_answers_a_waiting_webhook_first(
    web_only: WeChat, processor: Processor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It sees no requests: it counts the messages stored since its last look (any server's). In a
    flood it takes its share (Receiver._slot), except for a message whose webhook waits for the
    passive reply: that one goes straight ahead of the flood's backlog."""
    receiver = processor.app[RECEIVER]
    took = 0.2
    real = bot.receive.Receiver._process_one
    started: list[str] = []

    async def slow(self: Any, row_id: int, msg: Inbound, handoff: Any) -> None:
        started.append(msg.sender)
        await asyncio.sleep(took)  # each message takes its time: the rest after it is three times that
        await real(self, row_id, msg, handoff)

    monkeypatch.setattr(bot.receive.Receiver, "_process_one", slow)
    monkeypatch.setattr(bot.receive, "FLOOD_RATE", 3)
    processor.start()
    await asyncio.sleep(0.05)  # its first look: nothing stored yet
    async with transaction(web_only.app[FACTORY]) as session:  # a flood from other servers, stored at once
        rows = [
            inbound.new_row(
                dedupe_key=f"backlog:{n}", channel="wechat", sender=f"o_backlog_{n}", msg_type="text",
                payload=Inbound(channel="wechat", sender=f"o_backlog_{n}", kind="text",
                                created_at=web_only.clock.now(), text=REPORT).to_payload(),
                now=web_only.clock.now(), reply_mode=bot.receive.CUSTOMER_SERVICE,  # nobody waits for these
            )
            for n in range(4)
        ]  # fmt: skip
        await inbound.store_in(session, rows, waking=set(), now=web_only.clock.now())
    for _ in range(100):
        if receiver.flooding() and started:
            break
        await asyncio.sleep(0.01)
    assert receiver.flooding()  # four stored since its last look, against a FLOOD_RATE of three

    async def nothing_queued() -> None:  # this server stored none of the flood: it waits for its own
        web_only.app[RECEIVER]._pending = web_only.app[RECEIVER]._handed_over = 0

    monkeypatch.setattr(web_only.app[RECEIVER], "count_pending", nothing_queued)
    await nothing_queued()
    reply = await web_only.text(RESIDENT, REPORT)  # a resident, now, with a webhook waiting
    assert reply is not None and CASE_NUMBER.search(reply)  # passively, within the budget
    assert started[:2] == ["o_backlog_0", RESIDENT]  # ahead of the backlog's rest, which is paced
    await processor.until_processed()


async def test_of_a_burst_stored_together_at_most_two_are_waited_for(web_only: WeChat, processor: Processor) -> None:
    """The messages of one group commit all decide whether to wait before any of them is stored: the
    count of those waited for must include the ones still being stored, or a flood's first tens
    all wait (and most run past the budget)."""
    processor.start()
    people = [f"o_burst_{n}" for n in range(6)]
    replies = await asyncio.gather(*(web_only.text(who, REPORT) for who in people))
    await processor.until_processed()
    modes = [r.reply_mode for r in await _rows(web_only)]
    assert 1 <= modes.count(bot.receive.PASSIVE) <= bot.receive.WAITED_AT_ONCE, modes
    assert replies.count(bot.receive.RECEIVED) == len(people) - modes.count(bot.receive.PASSIVE)
