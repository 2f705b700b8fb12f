"""Stored before answered; answered in time; a crash or a slow handler loses nothing."""

from __future__ import annotations

import asyncio
import collections
import gc
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import ANY

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

import bot.app
import bot.heap
import bot.receive
from bot.app import FACTORY, RECEIVER, create_app
from bot.config import Settings
from handlers.types import Inbound
from storage import inbound
from storage.db import transaction
from storage.models import InboundMessage
from tests.conftest import LEADER_HP01, RESIDENT, FakeClock, WeChat

REPORT = "幸福里小区3号楼东侧路灯坏了"


@pytest.fixture
async def slow(
    aiohttp_client: Any,
    settings: Settings,
    clock: FakeClock,
    fake_wechat: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[WeChat, asyncio.Event]]:
    """Processing is held back until the test releases it; the reply budget is 0.1 s.

    (Held before its transaction: on SQLite a transaction holds the one write lock.)"""
    release = asyncio.Event()
    real = bot.receive.Receiver._process

    async def held(self: Any, *args: Any, **kw: Any) -> Any:
        await release.wait()
        return await real(self, *args, **kw)

    monkeypatch.setattr(bot.receive.Receiver, "_process", held)
    quick = settings.model_copy(update={"reply_budget_seconds": 0.1})
    client = await aiohttp_client(create_app(quick, clock=clock, background=False))
    yield WeChat(client, clock, fake_wechat, ""), release
    release.set()  # a test that failed before releasing it: the app's shutdown waits for processing


async def test_slow_answer_becomes_received_then_a_customer_service_message(
    slow: tuple[WeChat, asyncio.Event],
) -> None:
    wechat, release = slow
    xml = wechat.xml(RESIDENT, "text", {"Content": REPORT})
    status, body = await wechat.post(xml)
    assert status == 200 and wechat.sim.read_reply(body) == bot.receive.RECEIVED  # never "该公众号暂时无法提供服务"
    status, body = await wechat.post(xml)  # WeChat's retry while we are still busy
    assert status == 200 and body == "success"
    release.set()
    await wechat.deliver()
    [case] = await wechat.cases()  # one case, not two
    [receipt] = wechat.pushes_to(RESIDENT)
    assert "已受理" in receipt and case.number in receipt
    assert len(wechat.pushes_to(LEADER_HP01)) == 1
    status, body = await wechat.post(xml)  # a late retry: still no second case, no second receipt
    assert body == "success"
    await wechat.deliver()
    assert len(await wechat.cases()) == 1 and len(wechat.pushes_to(RESIDENT)) == 1


async def test_message_acknowledged_before_a_crash_is_processed_on_recovery(wechat: WeChat) -> None:
    """Simulates a process killed right after storing (and acknowledging) a message."""
    msg = Inbound(channel="wechat", sender=RESIDENT, kind="text", created_at=wechat.clock.now(), msg_id=7, text=REPORT)
    async with transaction(wechat.app[FACTORY]) as session:
        row = inbound.new_row(
            dedupe_key=f"{RESIDENT}:7",
            channel="wechat",
            sender=RESIDENT,
            msg_type="text",
            payload=msg.to_payload(),
            now=wechat.clock.now(),
        )
        assert await inbound.store_in(session, [row], waking=set(), now=wechat.clock.now()) == {f"{RESIDENT}:7": ANY}
    assert await wechat.app[RECEIVER].recover() == 0  # too fresh: its own process may still be at it
    wechat.clock.advance(minutes=1)
    assert await wechat.app[RECEIVER].recover() == 1
    await wechat.deliver()
    [case] = await wechat.cases()
    assert any(case.number in p for p in wechat.pushes_to(RESIDENT))
    assert len(wechat.pushes_to(LEADER_HP01)) == 1
    assert await wechat.app[RECEIVER].recover() == 0  # processed once, never again


async def test_handler_crash_is_an_apology_and_the_message_is_kept(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(bot.receive, "handle", broken)
    reply = await wechat.text(RESIDENT, REPORT)
    assert reply is not None and "已保存" in reply
    async with transaction(wechat.app[FACTORY]) as session:
        [row] = (await session.exec(select(InboundMessage))).all()
    assert row.status == "failed" and row.payload["text"] == REPORT


async def test_concurrent_duplicates_make_one_case(wechat: WeChat) -> None:
    xml = wechat.xml(RESIDENT, "text", {"Content": REPORT})
    results = await asyncio.gather(*(wechat.post(xml) for _ in range(3)))
    assert all(status == 200 for status, _ in results)
    assert len(await wechat.cases()) == 1
    # The first delivery got the receipt; a retry gets it too if processing finished by the time it
    # looked (WeChat shows the answer to the last attempt it waited for), else "success".
    replies = [wechat.sim.read_reply(body) for _, body in results]
    receipts = [r for r in replies if r and "已受理" in r]
    assert receipts and len(receipts) + replies.count(None) == 3 and len(set(receipts)) == 1


async def test_messages_arriving_together_are_stored_by_one_commit(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = inbound.store_durably

    async def counted(factory: Any, rows: list[dict[str, Any]], **kw: Any) -> dict[str, int]:
        batches.append(len(rows))
        return await real(factory, rows, **kw)

    monkeypatch.setattr(inbound, "store_durably", counted)
    residents = [f"o_batch_resident_{n:02d}" for n in range(12)]
    results = await asyncio.gather(*(wechat.post(wechat.xml(r, "text", {"Content": REPORT})) for r in residents))
    assert [status for status, _ in results] == [200] * 12
    assert sum(batches) == 12 and len(batches) < 12  # some shared a commit (the first goes alone)
    async with transaction(wechat.app[FACTORY]) as session:
        rows = (await session.exec(select(InboundMessage))).all()
    assert sorted(r.sender for r in rows) == residents
    # As many as processing takes at once were processed in time, the case number in the passive
    # reply (a receipt, or the note that it joined a neighbour's case about the same lamp); the rest
    # heard 已收到.
    replies = [wechat.sim.read_reply(body) or "" for _, body in results]
    passive = [r for r in replies if "编号 G" in r]
    assert 0 < len(passive) <= bot.receive.WAITED_AT_ONCE
    assert replies.count(bot.receive.RECEIVED) == 12 - len(passive), replies


async def test_a_store_that_fails_is_not_acknowledged_and_the_next_one_works(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = inbound.store_durably

    async def broken(factory: Any, rows: list[dict[str, Any]], **kw: Any) -> dict[str, int]:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(inbound, "store_durably", broken)
    results = await asyncio.gather(*(wechat.post(wechat.xml(RESIDENT, "text", {"Content": REPORT})) for _ in range(2)))
    assert [status for status, _ in results] == [503, 503]  # not stored: WeChat will try again
    monkeypatch.setattr(inbound, "store_durably", real)
    assert "已受理" in (await wechat.text(RESIDENT, REPORT) or "")


async def test_under_a_flood_the_sender_hears_at_once_and_the_reply_follows(wechat: WeChat) -> None:
    """Processing busy (every slot taken when this one is stored): the webhook does not wait for
    it. The sender gets 已收到 now; the receipt with the case number comes as a customer-service
    message once it is processed."""
    receiver = wechat.app[RECEIVER]
    receiver.backlog = receiver.at_once  # every processing slot taken
    assert await wechat.text(RESIDENT, REPORT) == bot.receive.RECEIVED
    receiver.backlog = 0
    await receiver.wait_idle()
    await wechat.deliver()
    [case] = await wechat.cases()
    [receipt] = wechat.pushes_to(RESIDENT)
    assert "已受理" in receipt and case.number in receipt
    async with transaction(wechat.app[FACTORY]) as session:
        [row] = (await session.exec(select(InboundMessage))).all()
    assert row.reply_mode == bot.receive.CUSTOMER_SERVICE


async def test_the_sender_waits_only_when_few_messages_are_in_processing(wechat: WeChat) -> None:
    """Waiting is judged by the queue ahead, not by a guess at how fast it will go: a flood's first
    messages used to wait most of the budget before a measured rate caught up. A message that
    would queue for processing is not waited for at all: under load even one round ahead made the
    wait longer than a resident should be kept (and the webhook request held). Nor are more than
    WAITED_AT_ONCE at a time, free processing slots or not: a flood's first 8 on PostgreSQL were
    processed side by side with the flood and held the event loop for a second."""
    receiver = wechat.app[RECEIVER]
    assert bot.receive.WAITED_AT_ONCE <= receiver.at_once
    assert receiver._can_wait()  # idle: it starts at once
    receiver.backlog = bot.receive.WAITED_AT_ONCE - 1  # room for one more: it starts at once
    assert receiver._can_wait()
    receiver.backlog = bot.receive.WAITED_AT_ONCE  # do not wait (on PostgreSQL slots are still free)
    assert not receiver._can_wait()
    receiver.backlog = 0


async def test_a_burst_is_answered_in_full_as_far_as_the_free_slots_reach(wechat: WeChat) -> None:
    """Messages from many people at once: as many as processing takes at once get their receipts
    passively (the webhook waited), the rest 已收到 at once and the receipt by customer service.
    None is lost."""
    receiver = wechat.app[RECEIVER]
    people = [f"o_burst_{n:03d}" for n in range(4 * receiver.at_once)]
    replies = await asyncio.gather(*(wechat.text(who, REPORT) for who in people))
    passive = [r for r in replies if r and "编号 G" in r]  # a receipt, or joined a neighbour's case
    assert 0 < len(passive) <= bot.receive.WAITED_AT_ONCE
    assert replies.count(bot.receive.RECEIVED) == len(people) - len(passive)
    await receiver.wait_idle()
    await wechat.deliver()
    async with transaction(wechat.app[FACTORY]) as session:
        rows = (await session.exec(select(InboundMessage))).all()
    assert sorted(r.sender for r in rows) == people and all(r.status == "processed" for r in rows)
    for who, reply in zip(people, replies, strict=True):
        if reply == bot.receive.RECEIVED:
            [receipt] = wechat.pushes_to(who)
            assert "编号 G" in receipt
        else:
            assert wechat.pushes_to(who) == []


async def test_one_persons_messages_are_processed_one_at_a_time_in_order(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new resident's report, photo and pin arriving together: on PostgreSQL, processed side by
    side, two of them created the same resident (a unique violation, the message marked failed)."""
    order: list[str] = []
    real = bot.receive.Receiver._process_one

    async def watched(self: Any, row_id: int, msg: Inbound, handoff: Any) -> None:
        order.append(f"start {msg.kind}")
        await asyncio.sleep(0.01)  # room for another message of theirs to start, if it could
        await real(self, row_id, msg, handoff)
        order.append(f"end {msg.kind}")

    monkeypatch.setattr(bot.receive.Receiver, "_process_one", watched)
    newcomer = "o_newcomer_resident"
    xmls = [
        wechat.xml(newcomer, "text", {"Content": REPORT}),
        wechat.xml(newcomer, "image", {"PicUrl": "http://example.invalid/p.jpg", "MediaId": "m1"}),
        wechat.xml(newcomer, "location", {"Location_X": 39.9, "Location_Y": 116.4, "Scale": 16, "Label": "x"}),
    ]
    results = await asyncio.gather(*(wechat.post(x) for x in xmls))
    assert [status for status, _ in results] == [200, 200, 200]
    await wechat.app[RECEIVER].wait_idle()  # the last may not have been waited for (a slot was free)
    assert order == [f"{edge} {kind}" for kind in ("text", "image", "location") for edge in ("start", "end")]
    async with transaction(wechat.app[FACTORY]) as session:
        rows = (await session.exec(select(InboundMessage))).all()
    assert sorted(r.status for r in rows) == ["processed"] * 3
    assert wechat.app[RECEIVER]._senders == {}  # nobody left in line


def _watch_starts(
    monkeypatch: pytest.MonkeyPatch, *, took: float = 0.0
) -> tuple[list[tuple[str, float]], asyncio.Event]:
    """Record when each message's processing starts (sender, monotonic); the event is set at the
    third. Each then takes `took` seconds more than it would."""
    started: list[tuple[str, float]] = []
    three = asyncio.Event()
    real = bot.receive.Receiver._process_one

    async def watched(self: Any, row_id: int, msg: Inbound, handoff: Any) -> None:
        started.append((msg.sender, time.monotonic()))
        if len(started) == 3:
            three.set()
        await asyncio.sleep(took)
        await real(self, row_id, msg, handoff)

    monkeypatch.setattr(bot.receive.Receiver, "_process_one", watched)
    return started, three


async def test_while_the_webhook_is_slow_processing_waits_and_waited_for_ones_go_first(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answering comes first: while storing a message takes long (a flood), processing steps aside
    (one message goes ahead per PATIENCE unless the webhook catches up); a message the webhook is
    waiting on goes straight ahead; once the flood is over, the rest go at once."""
    receiver = wechat.app[RECEIVER]
    patience = 0.5
    monkeypatch.setattr(bot.receive, "PATIENCE", patience)
    monkeypatch.setattr(bot.receive, "HOLD", 60.0)  # behind until the test says otherwise
    started, three = _watch_starts(monkeypatch)
    receiver._stored(1.0)  # storing a message just took a second
    assert receiver.behind()
    monkeypatch.setattr(receiver, "_can_wait", lambda: False)  # a flood: nobody is waited for
    flood = [f"o_flood_{n}" for n in range(5)]
    assert await asyncio.gather(*(wechat.text(who, REPORT) for who in flood)) == [bot.receive.RECEIVED] * 5
    monkeypatch.setattr(receiver, "_can_wait", lambda: True)
    assert await wechat.text("o_waited_for", REPORT) != bot.receive.RECEIVED  # answered in full
    assert started[0][0] == "o_waited_for"
    await three.wait()  # two of the flood went ahead, PATIENCE apart
    assert started[2][1] - started[1][1] >= patience * 0.9
    receiver._behind_until = time.monotonic()  # the flood is over: HOLD went by, and then
    receiver._stored(0.001)  # a message is stored quickly
    await receiver.wait_idle()
    assert sorted(who for who, _ in started[1:]) == flood
    assert started[-1][1] - started[2][1] < patience  # the rest did not wait PATIENCE each (2 × 0.5 s)


async def test_in_a_flood_processing_takes_only_its_share(wechat: WeChat, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 500 msg/s the webhook's stores stayed quick enough that processing never stepped aside, and
    it took the rest of the event loop: answers waited behind it. In a flood, processing goes one
    message at a time, each followed by a rest of (1 - SHARE) / SHARE of its own time; a message the
    webhook waits on goes straight ahead; once the flood is over, the rest go at once."""
    receiver = wechat.app[RECEIVER]
    receiver.processing = asyncio.Semaphore(10)  # what this is about, not SQLite's 2 at once
    took = 0.1
    rest = took * (1 - bot.receive.SHARE) / bot.receive.SHARE
    started, three = _watch_starts(monkeypatch, took=took)  # each takes `took` (on the loop, as on SQLite)
    flood = True
    monkeypatch.setattr(receiver, "flooding", lambda: flood)
    monkeypatch.setattr(receiver, "_can_wait", lambda: False)  # a flood: nobody is waited for
    senders = [f"o_flood_{n}" for n in range(6)]
    assert await asyncio.gather(*(wechat.text(who, REPORT) for who in senders)) == [bot.receive.RECEIVED] * 6
    monkeypatch.setattr(receiver, "_can_wait", lambda: True)
    assert await wechat.text("o_waited_for", REPORT) != bot.receive.RECEIVED  # answered in full, at once
    await three.wait()
    assert started[0][0] == "o_waited_for" or started[1][0] == "o_waited_for"
    flooded = [at for who, at in started if who != "o_waited_for"]
    assert flooded[1] - flooded[0] >= (took + rest) * 0.9  # one at a time, and then the rest
    flood = False  # it is over
    await receiver.wait_idle()
    assert sorted(who for who, _ in started if who != "o_waited_for") == senders
    gaps = [b - a for a, b in itertools.pairwise(at for who, at in started[3:] if who != "o_waited_for")]
    assert all(gap < rest for gap in gaps), gaps  # side by side, no rest between them


async def test_a_message_waiting_for_a_processing_slot_when_a_flood_begins_is_paced_too(
    wechat: WeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the flood is seen, the first of its messages pass the pacing (nothing to pace yet) and
    wait for a processing slot: a PostgreSQL processing process took 64 of them at once and ran them
    all at full speed, the first half-second of every flood. Given a slot, a message looks again."""
    receiver = wechat.app[RECEIVER]
    flood = False
    monkeypatch.setattr(receiver, "flooding", lambda: flood)
    monkeypatch.setattr(receiver, "_can_wait", lambda: False)
    for _ in range(receiver.at_once):  # every processing slot busy
        await receiver.processing.acquire()
    assert await wechat.text(RESIDENT, REPORT) == bot.receive.RECEIVED  # passed the pacing: no flood yet
    await asyncio.sleep(0.05)
    assert receiver._rest_until == 0.0 and receiver.backlog == 1
    flood = True  # the flood is seen
    for _ in range(receiver.at_once):
        receiver.processing.release()
    await receiver.wait_idle()
    assert receiver._rest_until > time.monotonic()  # it went through the pacing lane: a rest follows it
    assert len(await wechat.cases()) == 1


async def test_a_flood_is_told_by_the_messages_of_the_last_second(wechat: WeChat) -> None:
    """Below FLOOD_RATE a second processing keeps up at full speed (and must: paced, a steady 30 a
    second would pile up for ever); from it on, it could not keep up anyway, and answering comes
    first. Counted from the webhook's own arrivals (and, in the processing process, from the ids
    stored since its last look)."""
    receiver = wechat.app[RECEIVER]
    assert not receiver.flooding()
    receiver.arrived(bot.receive.FLOOD_RATE - 1)
    assert not receiver.flooding()
    assert await wechat.text(RESIDENT, REPORT) != bot.receive.RECEIVED  # one more, through the webhook
    assert receiver.flooding()
    receiver._recent = collections.deque((at - 1.0, n) for at, n in receiver._recent)  # a second later
    assert not receiver.flooding()


async def test_the_webhook_is_behind_for_a_while_after_a_slow_store_then_caught_up(wechat: WeChat) -> None:
    """Judged by the webhook's own store times: after a flood, processing (which makes the event loop
    late by itself) must not keep holding itself back."""
    receiver = wechat.app[RECEIVER]
    assert not receiver.behind()
    receiver._stored(1.0)
    assert receiver.behind() and not receiver._caught_up.is_set()
    receiver._stored(0.001)  # one quick store within HOLD does not end it
    assert receiver.behind()
    receiver._behind_until = time.monotonic() - 0.001  # HOLD went by without another slow one
    assert not receiver.behind()
    receiver._stored(0.001)
    assert receiver._caught_up.is_set()


async def test_the_heap_built_at_startup_is_frozen_and_full_collections_wait(wechat: WeChat) -> None:
    """Full garbage collections walked every long-lived object (100–200 ms pauses under load), and
    under a flood the automatic ones walked the flood's backlog (35–140 ms): startup's heap is
    frozen, and full collections run only when the webhook is quiet (bot/heap.py)."""
    assert bot.app._heap in wechat.app.cleanup_ctx
    assert gc.get_threshold()[2] == bot.heap.NEVER  # while the app runs
    gc.unfreeze()  # the freeze is the process's: other tests' apps froze it already
    assert gc.get_freeze_count() == 0
    bot.heap.freeze()  # a second app in the process
    assert gc.get_freeze_count() > 10_000
    bot.heap.thaw()
    assert gc.get_threshold()[2] == bot.heap.NEVER  # the first app still runs


def test_a_full_collection_waits_for_a_quiet_second_or_for_too_long() -> None:
    arrived, now = 0, 1000.0
    collector = bot.heap.QuietCollector(arrivals=lambda: arrived, clock=lambda: now)
    now += bot.heap.FULL_EVERY - 1
    assert not collector.due()  # too soon after the last one
    now += 1
    arrived += bot.heap.QUIET_RATE  # a busy second
    assert not collector.due()
    now += 1
    arrived += bot.heap.QUIET_RATE - 1  # a quiet one
    assert collector.due()
    collector.collect()
    assert collector.last_full == now
    for _ in range(int(bot.heap.FULL_AT_LEAST) - 1):  # a flood that never ends
        now += 1
        arrived += 500
        assert not collector.due()
    now += 1
    arrived += 500
    assert collector.due()
