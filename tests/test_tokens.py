"""One access token shared by every process, refreshed by one of them at a time.

A "process" here is an API client with its own SharedTokens and its own engine (connection pool) on
the one test database: nothing in memory is shared between two of them, only the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy.exc import OperationalError

from bot.app import create_app
from bot.config import Settings
from bot.fake_wechat import FakeWeChat
from bot.fake_wecom import FakeWeCom
from bot.tokens import EARLY, SharedTokens
from bot.wechat_api import Verdict, WeChatAPI
from bot.wecom_api import WeComAPI
from storage import tokens as stored
from storage.db import SessionFactory, transaction
from tests.conftest import (
    APPID,
    LEADER_HP01,
    RESIDENT,
    SECRET,
    WECOM_AGENT_ID,
    WECOM_CORP_ID,
    WECOM_SECRET,
    FakeClock,
    WeChat,
)

LEASE = 10.0
WECHAT_KEY = f"wechat:{APPID}"
WECOM_KEY = f"wecom:{WECOM_CORP_ID}:{WECOM_AGENT_ID}"
REPORT = "幸福里小区3号楼东侧路灯坏了"


def text(content: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content}}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def wechat_process(
    http: aiohttp.ClientSession, fake_wechat_url: str, process_db: Callable[[], SessionFactory], clock: FakeClock
) -> Callable[..., WeChatAPI]:
    """A new process's WeChat client: own engine, own token cache."""

    def start(*, secret: str = SECRET, wait: float | None = None) -> WeChatAPI:
        tokens = SharedTokens(process_db(), clock, lease=LEASE, wait=wait)
        return WeChatAPI(http, base=fake_wechat_url, appid=APPID, secret=secret, tokens=tokens, timeout=5)

    return start


@pytest.fixture
def wecom_process(
    http: aiohttp.ClientSession, fake_wecom_url: str, process_db: Callable[[], SessionFactory], clock: FakeClock
) -> Callable[[], WeComAPI]:
    def start() -> WeComAPI:
        return WeComAPI(
            http,
            base=fake_wecom_url,
            corp_id=WECOM_CORP_ID,
            secret=WECOM_SECRET,
            agent_id=WECOM_AGENT_ID,
            tokens=SharedTokens(process_db(), clock, lease=LEASE),
            timeout=5,
        )

    return start


async def test_a_second_process_uses_the_token_the_first_fetched(
    wechat_process: Callable[..., WeChatAPI], fake_wechat: FakeWeChat
) -> None:
    first, second = wechat_process(), wechat_process()
    assert (await first.send_custom(RESIDENT, text("一"))).verdict is Verdict.SENT
    assert (await second.send_custom(RESIDENT, text("二"))).verdict is Verdict.SENT
    assert fake_wechat.token_fetches == 1 and fake_wechat.texts_to(RESIDENT) == ["一", "二"]


async def test_processes_starting_at_once_fetch_one_token_between_them(
    wechat_process: Callable[..., WeChatAPI], fake_wechat: FakeWeChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    processes = [wechat_process() for _ in range(4)]
    results = await asyncio.gather(
        *(api.send_custom(RESIDENT, text(f"{i}-{j}")) for i, api in enumerate(processes) for j in range(3))
    )
    assert all(r.verdict is Verdict.SENT for r in results) and len(fake_wechat.sent) == 12
    assert fake_wechat.token_fetches == 1
    ours = [r for r in caplog.records if r.name.startswith("gridbot")]
    assert any(r.getMessage() == "access token refreshed" for r in ours)
    assert not any("FAKE_TOKEN" in str(r.__dict__) for r in ours)  # the token is a credential


@pytest.mark.parametrize("at_once", [False, True])
async def test_a_refused_token_is_fetched_again_once_across_processes(
    wechat_process: Callable[..., WeChatAPI], fake_wechat: FakeWeChat, at_once: bool
) -> None:
    first, second = wechat_process(), wechat_process()
    for api in (first, second):  # both hold FAKE_TOKEN_1 in memory now
        assert (await api.send_custom(RESIDENT, text("早"))).verdict is Verdict.SENT
    fake_wechat.expire_tokens()  # WeChat answers 40001 to it from now on

    sends = [api.send_custom(RESIDENT, text("晚")) for api in (first, second)]
    results = await asyncio.gather(*sends) if at_once else [await send for send in sends]

    assert all(r.verdict is Verdict.SENT for r in results)
    # The second to hear 40001 finds the stored token is no longer the one refused: no fetch of its own.
    assert fake_wechat.token_fetches == 2 and fake_wechat.texts_to(RESIDENT) == ["早", "早", "晚", "晚"]


async def test_a_token_near_its_expiry_is_replaced_by_one_process(
    wechat_process: Callable[..., WeChatAPI], fake_wechat: FakeWeChat, clock: FakeClock
) -> None:
    first, second = wechat_process(), wechat_process()
    await first.send_custom(RESIDENT, text("一"))
    clock.advance(seconds=7200 - EARLY.total_seconds() + 1)
    results = await asyncio.gather(*(api.send_custom(RESIDENT, text("二")) for api in (first, second)))
    assert all(r.verdict is Verdict.SENT for r in results) and fake_wechat.token_fetches == 2


async def test_a_crashed_refreshers_lease_is_taken_over_once_it_expires(
    wechat_process: Callable[..., WeChatAPI],
    fake_wechat: FakeWeChat,
    process_db: Callable[[], SessionFactory],
    clock: FakeClock,
) -> None:
    async with transaction(process_db()) as session:  # a process took the lease, then died
        now = clock.now()
        until = now + timedelta(seconds=LEASE)
        assert await stored.take_lease(session, key=WECHAT_KEY, seen=None, now=now, until=until, owner="crashed")

    api = wechat_process(wait=0.2)
    waited = await api.send_custom(RESIDENT, text("一"))
    assert waited.verdict is Verdict.RETRY and "another process" in waited.detail
    assert fake_wechat.token_fetches == 0  # nobody fetched behind the lease holder's back

    clock.advance(seconds=LEASE + 1)
    assert (await api.send_custom(RESIDENT, text("二"))).verdict is Verdict.SENT
    assert fake_wechat.token_fetches == 1 and fake_wechat.texts_to(RESIDENT) == ["二"]


async def test_a_failed_fetch_lets_go_of_the_lease_at_once(
    wechat_process: Callable[..., WeChatAPI], fake_wechat: FakeWeChat
) -> None:
    broken = wechat_process(secret="wrong-secret")
    failed = await broken.send_custom(RESIDENT, text("一"))
    assert failed.verdict is Verdict.RETRY and failed.detail.startswith("token: 40001")
    healthy = wechat_process(wait=0)  # would give up at once if the lease were still held
    assert (await healthy.send_custom(RESIDENT, text("二"))).verdict is Verdict.SENT
    assert fake_wechat.token_fetches == 1


async def test_a_refresher_overtaken_after_its_lease_ran_out_cannot_overwrite_the_token(
    process_db: Callable[[], SessionFactory], clock: FakeClock
) -> None:
    factory = process_db()
    now = clock.now()
    lease = timedelta(seconds=LEASE)
    later = now + lease + timedelta(seconds=1)
    expires = now + timedelta(hours=2)
    async with transaction(factory) as session:
        assert await stored.take_lease(session, key=WECHAT_KEY, seen=None, now=now, until=now + lease, owner="slow")
    async with transaction(factory) as session:
        assert await stored.take_lease(session, key=WECHAT_KEY, seen=None, now=later, until=later + lease, owner="next")
        fetches = await stored.store(
            session, key=WECHAT_KEY, owner="next", token="NEW", expires_at=expires, now=later, day="20261122"
        )
        assert fetches == 1
    async with transaction(factory) as session:
        late = await stored.store(
            session, key=WECHAT_KEY, owner="slow", token="OLD", expires_at=expires, now=later, day="20261122"
        )
        row = await stored.read(session, key=WECHAT_KEY)
    assert late is None and row is not None and row.token == "NEW" and row.refreshing_until is None


async def test_fetches_are_counted_per_day(
    wechat_process: Callable[..., WeChatAPI],
    fake_wechat: FakeWeChat,
    process_db: Callable[[], SessionFactory],
    clock: FakeClock,
) -> None:
    api = wechat_process()
    await api.send_custom(RESIDENT, text("一"))
    fake_wechat.expire_tokens()
    await api.send_custom(RESIDENT, text("二"))
    async with transaction(process_db()) as session:
        row = await stored.read(session, key=WECHAT_KEY)
    assert row is not None and (row.fetch_day, row.day_fetches) == ("20261122", 2)
    clock.advance(days=1)
    await api.send_custom(RESIDENT, text("三"))
    async with transaction(process_db()) as session:
        row = await stored.read(session, key=WECHAT_KEY)
    assert row is not None and (row.fetch_day, row.day_fetches) == ("20261123", 1)


# --- WeCom: the same cache, its own key ------------------------------------------------------------


async def test_wecom_processes_share_one_token_and_refetch_it_once(
    wecom_process: Callable[[], WeComAPI], fake_wecom: FakeWeCom
) -> None:
    first, second = wecom_process(), wecom_process()
    results = await asyncio.gather(*(api.send_app("wugang", text(f"早{i}")) for i, api in enumerate((first, second))))
    assert all(r.verdict is Verdict.SENT for r in results) and fake_wecom.token_fetches == 1

    fake_wecom.expire_tokens()  # 42001 from now on
    results = await asyncio.gather(*(api.send_app("wugang", text(f"晚{i}")) for i, api in enumerate((first, second))))
    assert all(r.verdict is Verdict.SENT for r in results) and fake_wecom.token_fetches == 2
    assert sorted(fake_wecom.texts_to("wugang")) == ["早0", "早1", "晚0", "晚1"]


async def test_wechat_and_wecom_tokens_are_kept_apart(
    wechat_process: Callable[..., WeChatAPI],
    wecom_process: Callable[[], WeComAPI],
    fake_wechat: FakeWeChat,
    fake_wecom: FakeWeCom,
    process_db: Callable[[], SessionFactory],
) -> None:
    await wechat_process().send_custom(RESIDENT, text("一"))
    await wecom_process().send_app("wugang", text("二"))
    async with transaction(process_db()) as session:
        wechat_row = await stored.read(session, key=WECHAT_KEY)
        wecom_row = await stored.read(session, key=WECOM_KEY)
    assert wechat_row is not None and wechat_row.token == "FAKE_TOKEN_1"
    assert wecom_row is not None and wecom_row.token == "FAKE_WECOM_TOKEN_1"
    assert fake_wechat.token_fetches == 1 and fake_wecom.token_fetches == 1


# --- two whole apps on one database --------------------------------------------------------------


async def test_two_app_processes_deliver_with_one_token(
    wechat: WeChat, settings: Settings, clock: FakeClock, aiohttp_client: Any
) -> None:
    other = WeChat(await aiohttp_client(create_app(settings, clock=clock, background=False)), clock, wechat.fake, "")
    await wechat.text(RESIDENT, REPORT)
    await wechat.deliver()  # the card to the leader: the first process fetches the token
    await other.text(LEADER_HP01, "接单")
    await other.deliver()  # the notice to the resident: the second process uses it
    assert "路灯坏了" in wechat.pushes_to(LEADER_HP01)[0] and len(wechat.pushes_to(RESIDENT)) == 1
    assert wechat.fake.token_fetches == 1


async def test_a_database_failure_is_a_retry_not_a_crash(
    wechat_process: Callable[..., WeChatAPI], fake_wechat: FakeWeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: Any, **kw: Any) -> None:
        raise OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(stored, "read", down)
    result = await wechat_process().send_custom(RESIDENT, text("一"))
    assert result.verdict is Verdict.RETRY and "token store unavailable" in result.detail
    assert fake_wechat.token_fetches == 0
