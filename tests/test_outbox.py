"""Pushes go through the outbox: retried with backoff when WeChat fails, delivered once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from bot.clock import SystemClock
from bot.config import Settings
from bot.fake_wechat import FakeWeChat
from bot.outbox import MAX_DELAY, backoff
from bot.tokens import SharedTokens
from bot.wechat_api import Verdict, WeChatAPI
from storage.db import SessionFactory
from tests.conftest import APPID, LEADER_HP01, RESIDENT, SECRET, FakeClock, WeChat

REPORT = "幸福里小区3号楼东侧路灯坏了"


async def test_api_failure_then_recovery_delivers_exactly_once(wechat: WeChat) -> None:
    wechat.fake.fail_next(3, status=502)
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01) == []
    [row] = await wechat.outbox()
    assert row.status == "pending" and row.attempts == 1 and "502" in (row.last_error or "")
    assert "FAKE_TOKEN" not in (row.last_error or "")  # aiohttp's error names the URL, token and all

    for _ in range(5):  # the clock moves on; each due retry runs once
        wechat.clock.advance(seconds=MAX_DELAY)
        await wechat.deliver()
    [card] = wechat.pushes_to(LEADER_HP01)
    assert "路灯坏了" in card
    [row] = await wechat.outbox()
    assert row.status == "sent" and row.attempts == 4


async def test_retry_waits_for_its_backoff(wechat: WeChat) -> None:
    wechat.fake.fail_next(1, errcode=-1)  # "system busy"
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    [row] = await wechat.outbox()
    assert row.next_attempt_at > wechat.clock.now()
    await wechat.deliver()  # not due yet: nothing happens
    assert wechat.pushes_to(LEADER_HP01) == []
    wechat.clock.advance(seconds=(row.next_attempt_at - wechat.clock.now()).total_seconds())
    await wechat.deliver()
    assert len(wechat.pushes_to(LEADER_HP01)) == 1


async def test_expired_token_is_refreshed_and_the_push_goes_out_at_once(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    assert wechat.fake.token_fetches == 1
    wechat.fake.expire_tokens()  # WeChat answers 40001 to the cached token
    await wechat.text(LEADER_HP01, "接单")
    await wechat.deliver()
    assert len(wechat.pushes_to(RESIDENT)) == 1 and wechat.fake.token_fetches == 2


async def test_token_is_cached_across_pushes(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, REPORT)
    await wechat.text(LEADER_HP01, "接单")
    await wechat.deliver()
    assert len(wechat.fake.sent) == 2 and wechat.fake.token_fetches == 1


@pytest.mark.parametrize(("status", "verdict"), [(400, "parked"), (404, "parked"), (429, "pending"), (408, "pending")])
async def test_an_http_4xx_is_parked_but_too_many_requests_and_timeouts_are_retried(
    wechat: WeChat, status: int, verdict: str
) -> None:
    wechat.fake.fail_next(1, status=status)
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    [row] = await wechat.outbox()
    assert row.status == verdict and str(status) in (row.last_error or "")
    assert "FAKE_TOKEN" not in (row.last_error or "")


async def test_push_that_can_never_succeed_is_parked_with_the_reason(wechat: WeChat) -> None:
    wechat.fake.fail_next(1, errcode=40003)  # invalid openid
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    [row] = await wechat.outbox()
    assert row.status == "parked" and (row.last_error or "").startswith("40003")
    wechat.clock.advance(hours=1)
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01) == []


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_outside_window_or_over_quota_without_fallback_holds_the_push(wechat: WeChat, errcode: int) -> None:
    wechat.fake.fail_next(1, errcode=errcode)  # the leader has not written for 48 h / used the quota
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    [row] = await wechat.outbox()
    assert row.status == "held" and str(errcode) in (row.last_error or "")
    wechat.clock.advance(hours=1)
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP01) == []
    await wechat.text(LEADER_HP01, "我的工单")  # the leader writes: the card goes out
    await wechat.deliver()
    assert "路灯坏了" in wechat.pushes_to(LEADER_HP01)[-1]


async def test_minute_quota_errors_back_off_for_long(wechat: WeChat) -> None:
    wechat.fake.fail_next(1, errcode=45011)
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    [row] = await wechat.outbox()
    assert row.status == "pending" and (row.next_attempt_at - wechat.clock.now()).total_seconds() >= 900


async def test_one_persons_pushes_keep_their_order_through_failures(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()
    wechat.fake.fail_next(1, status=500)
    await wechat.text(LEADER_HP01, "接单")
    [case] = await wechat.cases()
    await wechat.text(LEADER_HP01, f"办结 {case.number} 已修好")
    await wechat.deliver()
    assert wechat.pushes_to(RESIDENT) == []  # the 办结 notice waits behind the failed 接单 notice
    wechat.clock.advance(seconds=MAX_DELAY)
    await wechat.deliver()
    first, second = wechat.pushes_to(RESIDENT)
    assert "接单" in first and "已办结" in second


async def test_unreachable_api_is_retried(
    wechat: WeChat, settings: Settings, clock: FakeClock, aiohttp_client: Any
) -> None:
    dead = settings.model_copy(update={"wechat_api_base": "http://127.0.0.1:9"})
    client = await aiohttp_client(create_app(dead, clock=clock, background=False))
    other = WeChat(client, clock, wechat.fake, "")
    await other.text(RESIDENT, REPORT)
    await other.deliver()
    [row] = await other.outbox()
    assert row.status == "pending" and row.attempts == 1 and row.last_error


def test_backoff_grows_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff(n, rng) for n in range(12)]
    assert delays[0] <= 2 and delays[3] > delays[0] and max(delays) <= MAX_DELAY


@pytest.fixture
async def live(aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: FakeWeChat) -> WeChat:
    client = await aiohttp_client(create_app(settings, clock=clock, background=True))
    return WeChat(client, clock, fake_wechat, "")


async def test_background_worker_delivers_without_being_asked(live: WeChat) -> None:
    await live.text(RESIDENT, REPORT)
    for _ in range(200):  # bounded: the worker is kicked on commit, so this is quick
        if live.pushes_to(LEADER_HP01):
            break
        await asyncio.sleep(0.01)
    assert len(live.pushes_to(LEADER_HP01)) == 1


async def test_a_failing_token_fetch_never_puts_the_secret_in_the_error(
    aiohttp_server: Any, process_db: Callable[[], SessionFactory]
) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", broken)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        tokens = SharedTokens(process_db(), SystemClock(), lease=10)
        base = str(server.make_url("")).rstrip("/")
        api = WeChatAPI(http, base=base, appid=APPID, secret=SECRET, tokens=tokens, timeout=5)
        result = await api.send_custom(RESIDENT, {"msgtype": "text", "text": {"content": "x"}})
    assert result.verdict is Verdict.RETRY and "500" in result.detail
    assert SECRET not in result.detail and "secret=***" in result.detail
