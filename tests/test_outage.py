"""The WeChat API down for an hour (502s, "system busy", timeouts, the frequency limit, the token
lost), then back: every push is delivered exactly once, and each person
gets a case's pushes in the order they were written — while cases keep moving and the follow-up engine
keeps chasing them. Fake clock: the hour passes in 30-second scheduler steps, in well under a second
of real time per simulated minute."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.app import FOLLOW_UP
from bot.config import Settings
from bot.fake_wechat import Failure
from handlers.pushes import WECHAT_CS
from tests.conftest import LEADER_CH01, LEADER_HP01, RESIDENT, RESIDENT_2, WeChat

ZONE = ZoneInfo("Asia/Shanghai")
RESIDENT_3 = "o_resident_zhao"
LAMP = "幸福里小区3号楼东侧路灯坏了"
GAS = "幸福里小区5号楼燃气泄漏，味道很大"
CLUTTER = "春晖园8号楼楼道堆满杂物，影响通行"
STEP = timedelta(seconds=30)  # the follow-up job's interval; the outbox worker runs as often


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Calls time out after 0.2 s here (5 s in production): the outage's timeouts in real time."""
    return settings.model_copy(update={"outbound_timeout_seconds": 0.2})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


async def run_until(wechat: WeChat, until: datetime) -> None:
    """The scheduler and the outbox worker, every 30 s of fake time, up to `until`."""
    while wechat.clock.now() < until:
        wechat.clock.advance(seconds=STEP.total_seconds())
        await wechat.app[FOLLOW_UP].tick(wechat.clock.now())
        await wechat.deliver()


async def test_an_hour_long_outage_loses_nothing_sends_nothing_twice_and_keeps_each_cases_order(
    wechat: WeChat,
) -> None:
    fake = wechat.fake
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(RESIDENT_2, GAS)  # urgent: accept within 30 min, so the engine pings mid-outage
    await wechat.text(RESIDENT_3, CLUTTER)
    await wechat.deliver()
    lamp, gas, clutter = await wechat.cases()
    before = len(fake.sent)
    assert before >= 3  # the three cards reached their leaders while the API was up

    # 10:00: WeChat goes down — every call fails, token fetches included, and the token is lost.
    fake.expire_tokens()
    fake.outage = Failure(1, status=502)
    await run_until(wechat, at("2026-11-22 10:05"))
    await wechat.text(LEADER_HP01, f"接单 {lamp.number}")
    await run_until(wechat, at("2026-11-22 10:10"))
    await wechat.text(LEADER_HP01, f"进展 {lamp.number} 已联系电工，明天上午更换")
    await run_until(wechat, at("2026-11-22 10:20"))
    await wechat.text(LEADER_CH01, f"接单 {clutter.number}")
    await wechat.text(LEADER_CH01, f"办结 {clutter.number} 已清理楼道")
    fake.outage = Failure(1, errcode=-1)  # "system busy"
    await run_until(wechat, at("2026-11-22 10:30"))
    fake.outage = Failure(1, status=504, hang=1.0)  # no answer at all: every call times out
    await run_until(wechat, at("2026-11-22 10:40"))
    assert any("TimeoutError" in (r.last_error or "") for r in await wechat.outbox())
    fake.outage = Failure(1, errcode=45009)  # the API's frequency limit
    await run_until(wechat, at("2026-11-22 11:00"))
    assert len(fake.sent) == before  # nothing got through in the hour
    rows = await wechat.outbox()
    waiting = [r for r in rows if r.channel == WECHAT_CS and r.status == "pending"]
    # Two updates to each of two residents (the second waits behind the first) and the urgent ping.
    assert len(waiting) == 5 and sum(r.attempts == 0 for r in waiting) == 2

    # 11:00: WeChat is back. Within the longest backoff everything goes out.
    fake.outage = None
    await run_until(wechat, at("2026-11-22 11:20"))

    rows = await wechat.outbox()
    wechat_rows = [r for r in rows if r.channel.startswith("wechat")]
    assert {r.status for r in wechat_rows} <= {"sent", "cancelled"}, [(r.id, r.status) for r in wechat_rows]
    sent = [r for r in wechat_rows if r.status == "sent"]
    assert all(r.channel == WECHAT_CS for r in sent)  # within the 48 h window: no template fallback
    # Exactly once: what WeChat received is what the outbox says it sent, message for message.
    received = Counter((m["touser"], m["text"]["content"]) for m in fake.sent)
    assert received == Counter((r.recipient, r.payload["text"]["content"]) for r in sent)
    assert max(received.values()) == 1
    # Cancelled pings (the case moved on before they could go) never reached anyone.
    for r in wechat_rows:
        if r.status == "cancelled":
            assert (r.recipient, r.payload["text"]["content"]) not in received
    # In order: each person got each case's pushes in the order they were written.
    arrival = {(m["touser"], m["text"]["content"]): m["seq"] for m in fake.sent}
    per_case: dict[tuple[int | None, str], list[int]] = defaultdict(list)
    for r in sorted(sent, key=lambda r: r.id or 0):
        per_case[(r.case_id, r.recipient)].append(arrival[(r.recipient, r.payload["text"]["content"])])
    assert all(seqs == sorted(seqs) for seqs in per_case.values()), per_case

    # And the content is what each person should have heard, in that order.
    to_r1 = wechat.pushes_to(RESIDENT)
    accepted = next(i for i, t in enumerate(to_r1) if "已由和平里第一网格" in t)
    progressed = next(i for i, t in enumerate(to_r1) if "已联系电工" in t)
    assert accepted < progressed
    to_r3 = wechat.pushes_to(RESIDENT_3)
    assert any("已清理楼道" in t and "请您评价" in t for t in to_r3)
    # The urgent case went unaccepted through the outage: its 10:30 ping arrived once, late.
    gas_pings = [t for t in wechat.pushes_to(LEADER_HP01) if gas.number in t and t.startswith("【超时未接单】")]
    assert len(gas_pings) == 1
