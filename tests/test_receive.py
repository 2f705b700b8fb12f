"""Stored before answered; answered in time; a crash or a slow handler loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import ANY

import pytest
from sqlmodel import select

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
) -> tuple[WeChat, asyncio.Event]:
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
    return WeChat(client, clock, fake_wechat, ""), release


async def test_slow_answer_becomes_success_then_a_customer_service_message(
    slow: tuple[WeChat, asyncio.Event],
) -> None:
    wechat, release = slow
    xml = wechat.xml(RESIDENT, "text", {"Content": REPORT})
    status, body = await wechat.post(xml)
    assert status == 200 and body == "success"  # never "该公众号暂时无法提供服务"
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
        assert await inbound.store_many(session, [row]) == {f"{RESIDENT}:7": ANY}
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
