"""Pushes within WeChat's and WeCom's sending rules, never dropping one: the 48-hour customer-service
window and its quota, the template / subscription fallback with merged updates, holding until the
person writes again, and WeCom's per-recipient rate limits shared by every worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bot.app import create_app
from bot.config import Settings
from bot.delivery import SUBSCRIBE_CHANNEL, TEMPLATE_CHANNEL
from bot.fake_wechat import FakeWeChat
from bot.outbox import OutboxWorker, RateLimit, Sender
from bot.wechat_api import Result, Verdict
from handlers.pushes import text_push
from storage import outbox
from storage.db import SessionFactory, create_engine, session_factory, transaction
from storage.models import Case
from tests.conftest import LEADER_HP01, RESIDENT, FakeClock, WeChat

REPORT = "幸福里小区3号楼东侧路灯坏了"
TEMPLATE = "TPL_case_update"
FIELDS = "number=character_string1,status=phrase2,summary=thing3,time=time4"


async def with_settings(
    aiohttp_client: Any, settings: Settings, clock: FakeClock, fake: FakeWeChat, **kw: Any
) -> WeChat:
    client = await aiohttp_client(create_app(settings.model_copy(update=kw), clock=clock, background=False))
    return WeChat(client, clock, fake, "")


@pytest.fixture
async def templated(aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: FakeWeChat) -> WeChat:
    """The account has a template message configured for the fallback."""
    return await with_settings(aiohttp_client, settings, clock, fake_wechat, wechat_template_id=TEMPLATE)


async def reported(wechat: WeChat) -> Case:
    await wechat.text(RESIDENT, REPORT)
    await wechat.text(LEADER_HP01, "接单")
    await wechat.deliver()
    return (await wechat.cases())[-1]


async def test_inside_the_window_updates_go_as_customer_service_messages(templated: WeChat) -> None:
    case = await reported(templated)
    [accepted] = templated.pushes_to(RESIDENT)
    assert case.number in accepted and "接单" in accepted
    assert templated.fake.templates_to(RESIDENT) == []


async def test_resident_silent_for_49_hours_gets_one_template_with_the_merged_updates(templated: WeChat) -> None:
    case = await reported(templated)
    templated.clock.advance(hours=49)
    await templated.text(LEADER_HP01, f"进展 {case.number} 配件已订购")
    await templated.text(LEADER_HP01, f"进展 {case.number} 明天上午更换")
    await templated.deliver()
    assert len(templated.pushes_to(RESIDENT)) == 1  # only the acceptance, 49 hours ago
    [notice] = templated.fake.templates_to(RESIDENT)
    assert notice["character_string1"] == case.number and notice["phrase2"] == "处理中"
    assert notice["thing3"] == "共2条进展，回复“查询”看详情" and len(notice["thing3"]) <= 20
    rows = [r for r in await templated.outbox() if r.recipient == RESIDENT and r.id and r.id > 1]
    carrier, merged = rows[-2:]
    assert carrier.status == "sent" and carrier.channel == TEMPLATE_CHANNEL
    assert merged.status == "merged" and merged.merged_into_id == carrier.id and merged.sent_at is not None
    assert "配件已订购" in carrier.payload["text"]["content"] and "明天上午" in merged.payload["text"]["content"]


async def test_sixth_update_after_one_resident_message_is_over_quota_and_falls_back(templated: WeChat) -> None:
    case = await reported(templated)  # one resident message; the acceptance is update 1
    for n in range(2, 7):
        await templated.text(LEADER_HP01, f"进展 {case.number} 第{n}次进展")
        await templated.deliver()
    texts = templated.pushes_to(RESIDENT)
    assert len(texts) == 5 and "第5次进展" in texts[-1]
    [notice] = templated.fake.templates_to(RESIDENT)
    assert "第6次进展" in notice["thing3"]
    # The resident writes again: a fresh quota, customer-service messages once more.
    templated.clock.advance(minutes=5)
    await templated.text(RESIDENT, "查询")
    await templated.text(LEADER_HP01, f"进展 {case.number} 第7次进展")
    await templated.deliver()
    assert "第7次进展" in templated.pushes_to(RESIDENT)[-1]


@pytest.mark.parametrize("toggle", ["outside_window", "over_quota"])
async def test_wechat_refusing_the_customer_service_message_falls_back(templated: WeChat, toggle: str) -> None:
    setattr(templated.fake, toggle, True)  # 45015 / 45047: WeChat knows better than our count
    case = await reported(templated)
    assert templated.pushes_to(RESIDENT) == []
    [notice] = templated.fake.templates_to(RESIDENT)
    assert notice["character_string1"] == case.number and "接单" in notice["thing3"]


async def test_without_a_fallback_updates_are_held_then_sent_merged_when_the_resident_writes(wechat: WeChat) -> None:
    case = await reported(wechat)
    wechat.clock.advance(hours=49)
    await wechat.text(LEADER_HP01, f"进展 {case.number} 配件已订购")
    await wechat.text(LEADER_HP01, f"办结 {case.number} 已更换灯泡")
    await wechat.deliver()
    assert len(wechat.pushes_to(RESIDENT)) == 1
    waiting = [r for r in await wechat.outbox() if r.recipient == RESIDENT and r.status in ("held", "merged")]
    assert len(waiting) >= 2 and sum(r.status == "held" for r in waiting) == 1
    wechat.clock.advance(hours=30)
    await wechat.deliver()  # still silent: still held
    assert len(wechat.pushes_to(RESIDENT)) == 1

    await wechat.text(RESIDENT, "查询")  # through the signed webhook: the window opens again
    await wechat.deliver()
    merged = wechat.pushes_to(RESIDENT)[-1]
    assert merged.startswith(f"您有{len(waiting)}条工单进展：\n1. ")
    assert merged.index("配件已订购") < merged.index("已更换灯泡")
    assert len(wechat.pushes_to(RESIDENT)) == 2
    assert all(r.status in ("sent", "merged") for r in await wechat.outbox() if r.recipient == RESIDENT)


async def test_events_such_as_template_receipts_do_not_open_the_window(wechat: WeChat) -> None:
    case = await reported(wechat)
    wechat.clock.advance(hours=49)
    await wechat.text(LEADER_HP01, f"进展 {case.number} 配件已订购")
    await wechat.deliver()
    event = {"Event": "TEMPLATESENDJOBFINISH", "MsgID": 200163836, "Status": "success"}
    await wechat.send(wechat.xml(RESIDENT, "event", event))
    await wechat.deliver()
    assert len(wechat.pushes_to(RESIDENT)) == 1  # still held: WeChat sent that event, not the resident
    assert (await wechat.outbox())[-1].status == "held"


async def test_staff_on_the_official_account_have_the_48_hour_window_too(templated: WeChat) -> None:
    await reported(templated)
    templated.clock.advance(hours=49)  # the leader has not written since
    await templated.text(RESIDENT, "幸福里小区5号楼门口垃圾没人清运")
    await templated.deliver()
    cards = templated.fake.templates_to(LEADER_HP01)
    assert len(cards) == 1 and cards[0]["character_string1"] == (await templated.cases())[-1].number
    assert len(templated.pushes_to(LEADER_HP01)) == 1  # the first card only


async def test_subscription_fallback_and_refused_subscription_holds(
    aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: FakeWeChat
) -> None:
    wechat = await with_settings(
        aiohttp_client, settings, clock, fake_wechat, wechat_template_id=TEMPLATE, wechat_fallback="subscribe"
    )
    case = await reported(wechat)
    wechat.clock.advance(hours=49)
    await wechat.text(LEADER_HP01, f"进展 {case.number} 配件已订购")
    await wechat.deliver()
    [notice] = wechat.fake.subscriptions_to(RESIDENT)
    assert "配件已订购" in notice["thing3"]
    assert (await wechat.outbox())[-1].channel == SUBSCRIBE_CHANNEL

    wechat.fake.subscription_refused = True  # no one-time subscription left: wait for the resident
    await wechat.text(LEADER_HP01, f"进展 {case.number} 明天更换")
    await wechat.deliver()
    assert (await wechat.outbox())[-1].status == "held"
    await wechat.text(RESIDENT, "查询")
    await wechat.deliver()
    assert "明天更换" in wechat.pushes_to(RESIDENT)[-1]


# WeCom rate limits: recording senders stand in for the WeCom senders (built elsewhere).


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[datetime, str, str]] = []

    async def __call__(self, recipient: str, payload: dict[str, Any]) -> Result:
        await asyncio.sleep(0)  # let another worker interleave
        self.sent.append((self.clock.now(), recipient, payload["text"]["content"]))
        return Result(Verdict.SENT)

    def most_in_any(self, window: timedelta) -> int:
        times = sorted(t for t, _, _ in self.sent)
        return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[SessionFactory]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def enqueue(factory: SessionFactory, clock: FakeClock, channel: str, recipient: str, count: int) -> None:
    async with transaction(factory) as session:
        for n in range(count):
            outbox.enqueue(session, channel=channel, recipient=recipient, payload=text_push(str(n)), now=clock.now())


async def run_minutes(workers: list[OutboxWorker], clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        await asyncio.gather(*(w.drain() for w in workers))
        clock.advance(seconds=60)


async def test_wecom_app_35_pushes_to_one_member_30_in_the_first_minute(
    factory: SessionFactory, clock: FakeClock
) -> None:
    sender = Recorder(clock)
    worker = OutboxWorker(factory, {"wecom_app": sender}, clock)
    await enqueue(factory, clock, "wecom_app", "zhangwei", 35)
    await worker.drain()
    assert len(sender.sent) == 30
    clock.advance(seconds=59)
    await worker.drain()
    assert len(sender.sent) == 30  # the window frees a minute after the first send, not before
    clock.advance(seconds=1)
    await worker.drain()
    assert [text for _, _, text in sender.sent] == [str(n) for n in range(35)]  # all, in order


async def test_hourly_limit_holds_back_the_rest_of_the_hour(factory: SessionFactory, clock: FakeClock) -> None:
    sender = Recorder(clock)
    limits = {"wecom_app": (RateLimit(3, 60), RateLimit(5, 3600))}
    worker = OutboxWorker(factory, {"wecom_app": sender}, clock, rate_limits=limits)
    await enqueue(factory, clock, "wecom_app", "zhangwei", 7)
    await run_minutes([worker], clock, 5)
    assert len(sender.sent) == 5
    clock.advance(minutes=55)
    await run_minutes([worker], clock, 1)
    assert len(sender.sent) == 7 and sender.most_in_any(timedelta(hours=1)) <= 5


async def test_other_members_are_not_held_up_by_one_members_limit(factory: SessionFactory, clock: FakeClock) -> None:
    sender = Recorder(clock)
    worker = OutboxWorker(factory, {"wecom_app": sender}, clock)
    await enqueue(factory, clock, "wecom_app", "zhangwei", 32)
    await enqueue(factory, clock, "wecom_app", "zhouting", 2)
    await worker.drain()
    assert sum(r == "zhouting" for _, r, _ in sender.sent) == 2


async def test_group_robot_queues_25_urgent_posts_at_most_20_a_minute(
    factory: SessionFactory, clock: FakeClock
) -> None:
    sender = Recorder(clock)
    worker = OutboxWorker(factory, {"wecom_robot": sender}, clock)
    await enqueue(factory, clock, "wecom_robot", "robot-key-hp01", 25)
    await run_minutes([worker], clock, 3)
    assert [text for _, _, text in sender.sent] == [str(n) for n in range(25)]
    assert sender.most_in_any(timedelta(minutes=1)) == 20


async def test_two_workers_sharing_one_database_keep_the_robot_limit(
    database_url: str, factory: SessionFactory, clock: FakeClock
) -> None:
    other_engine = create_engine(database_url)  # a second process: its own connections
    try:
        sender = Recorder(clock)
        senders: dict[str, Sender] = {"wecom_robot": sender}
        workers = [OutboxWorker(factory, senders, clock), OutboxWorker(session_factory(other_engine), senders, clock)]
        await enqueue(factory, clock, "wecom_robot", "robot-key-hp01", 45)
        await run_minutes(workers, clock, 4)
    finally:
        await other_engine.dispose()
    assert [text for _, _, text in sender.sent] == [str(n) for n in range(45)]  # each once, in order
    assert sender.most_in_any(timedelta(minutes=1)) == 20


async def test_fake_lists_template_messages_with_the_pushes_for_gridbot_chat(
    templated: WeChat, fake_wechat_url: str
) -> None:
    templated.fake.outside_window = True
    await reported(templated)
    async with aiohttp.ClientSession() as http, http.get(f"{fake_wechat_url}/_fake/messages") as resp:
        shown = await resp.json()
    [notice] = [m for m in shown if m["touser"] == RESIDENT]
    assert notice["msgtype"] == "template" and notice["text"]["content"].startswith("【模板消息】")


def test_template_values_fit_the_lengths_wechat_allows() -> None:
    from bot.delivery import template_data
    from storage.models import OutboxMessage

    long_note = text_push("您反映的问题（G20261122-0001）有新进展：" + "施工队已经到场并开始更换老化的电缆" * 2)
    row = OutboxMessage(id=1, recipient=RESIDENT, payload=long_note, case_id=7)
    case = Case(id=7, number="G20261122-0001", status="处理中")
    fields = {"number": "character_string1", "status": "phrase2", "summary": "thing3", "time": "time4"}
    data = template_data([row], {7: case}, fields, datetime(2026, 11, 22, 10, 0))
    assert data["thing3"].startswith("有新进展：施工队") and len(data["thing3"]) == 20 and data["thing3"][-1] == "…"
    assert data["character_string1"] == "G20261122-0001" and data["phrase2"] == "处理中"
    assert data["time4"] == "2026年11月22日 10:00"
    unknown = template_data(
        [OutboxMessage(id=2, recipient=RESIDENT, payload=text_push("好"))], {}, fields, datetime(2026, 11, 22)
    )
    assert unknown["character_string1"] == "-" and unknown["phrase2"] == "通知" and unknown["thing3"] == "好"


async def test_a_slow_api_never_lets_a_second_worker_send_a_push_twice(
    database_url: str, factory: SessionFactory, clock: FakeClock
) -> None:
    """Each call takes 10 s (an API answering at its timeout): a batch leased for 60 s outlasts its
    lease; the other process, polling meanwhile, must not take over a row the first still sends."""

    class Slow(Recorder):
        async def __call__(self, recipient: str, payload: dict[str, Any]) -> Result:
            # Calls in flight together (the worker sends to several people at once) share the 10 s.
            answered = self.clock.now() + timedelta(seconds=10)
            await asyncio.sleep(0)
            if self.clock.now() < answered:
                self.clock.advance(seconds=(answered - self.clock.now()).total_seconds())
            return await super().__call__(recipient, payload)

    other_engine = create_engine(database_url)  # a second process: its own connections
    try:
        sender = Slow(clock)
        first, second = (
            OutboxWorker(f, {"wecom_app": sender}, clock, lease=timedelta(seconds=60))
            for f in (factory, session_factory(other_engine))
        )
        for n in range(20):
            await enqueue(factory, clock, "wecom_app", f"member{n:02d}", 1)
        done = asyncio.Event()

        async def first_drains() -> None:
            await first.drain()
            done.set()

        async def second_polls() -> None:
            while not done.is_set():
                await second.run_once()
                await asyncio.sleep(0)

        await asyncio.gather(first_drains(), second_polls())
        await second.drain()
    finally:
        await other_engine.dispose()
    recipients = [r for _, r, _ in sender.sent]
    assert sorted(recipients) == [f"member{n:02d}" for n in range(20)]  # every one, each once
