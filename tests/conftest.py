"""The fakes for the outside world, one each: clock, WeChat and WeCom API servers, WeChat and WeCom
(message makers)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck
from hypothesis import settings as settings_profile
from sqlalchemy import text
from sqlmodel import select

from bot.app import FACTORY, RECEIVER, WORKER, create_app
from bot.config import DEMO_GRID_FILE, Settings
from bot.fake_wechat import FakeWeChat
from bot.fake_wecom import FakeWeCom
from bot.wechat import WeChatSimulator
from bot.wecom import WeComSimulator
from storage.db import SessionFactory, create_engine, drop_schema, session_factory, transaction, upgrade_sync
from storage.models import ALL_TABLES, Case, OutboxMessage

# Hypothesis: "ci" (the default) is small and derandomized, so a run is fast and repeatable;
# HYPOTHESIS_PROFILE=long explores (see benchmarks/README.md, "Hostile input"). The app fixtures are
# function-scoped on purpose: every example of a test shares one app and database, which is what
# the tests assert about (nothing grows, nothing breaks, whatever came before).
_SHARED = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
settings_profile.register_profile("ci", max_examples=25, derandomize=True, database=None, **_SHARED)
settings_profile.register_profile("long", max_examples=1000, **_SHARED)
settings_profile.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOKEN = "gridbot-test-token"
APPID = "wx1234567890abcdef"
SECRET = "test-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

RESIDENT = "o_resident_wang"
RESIDENT_2 = "o_resident_li"
LEADER_HP01 = "o_demo_zhangwei_hp01"  # 张伟, 和平里第一网格 (幸福里小区)
LEADER_CH01 = "o_demo_zhouting_ch01"  # 周婷, 春晖第一网格
LEADER_HP = "o_demo_zhangxiuying_hp"  # 张秀英, 和平里社区
LEADER_ZL = "o_demo_chenjing_zl"  # 陈静, 枣林社区 (枣林第二网格 has no leader of its own)
WECOM_CORP_ID = "ww1234567890abcdef"
WECOM_AGENT_ID = 1000005
WECOM_SECRET = "test-wecom-secret"
WECOM_TOKEN = "gridbot-wecom-test-token"
WECOM_AES_KEY = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
INSIDE_HP01 = (39.92625, 116.40375)
INSIDE_ZL02 = (39.90750, 116.42250)


def free_port() -> int:
    """A loopback port nothing listens on now (for servers the tests start as processes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    """Wall time stands still until a test moves it; elapsed time (monotonic) is real."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, **kw: float) -> None:
        self._now += timedelta(**kw)


PG_URL = os.environ.get("GRIDBOT_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgresql")


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrations run once per session: a SQLite file to copy, or the PostgreSQL schema."""
    if ON_POSTGRES:
        import asyncio

        asyncio.run(drop_schema(PG_URL))
        upgrade_sync(PG_URL)
        return PG_URL
    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return str(path)


@pytest.fixture
async def database_url(migrated_template: str, tmp_path: Path) -> AsyncIterator[str]:
    if ON_POSTGRES:
        engine = create_engine(PG_URL)
        names = ", ".join(f'"{t.__tablename__}"' for t in ALL_TABLES)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        await engine.dispose()
        yield PG_URL
        return
    target = tmp_path / "gridbot.sqlite3"
    shutil.copy(migrated_template, target)
    yield f"sqlite+aiosqlite:///{target}"


@pytest.fixture
async def process_db(database_url: str) -> AsyncIterator[Callable[[], SessionFactory]]:
    """Makes session factories on the test database, each with its own engine (connection pool), as
    separate processes would have."""
    engines = []

    def new() -> SessionFactory:
        engines.append(create_engine(database_url))
        return session_factory(engines[-1])

    yield new
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 22, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai


@pytest.fixture
def fake_wechat() -> FakeWeChat:
    return FakeWeChat(APPID, SECRET)


@pytest.fixture
async def fake_wechat_url(fake_wechat: FakeWeChat) -> AsyncIterator[str]:
    server = TestServer(fake_wechat.app())
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def fake_wecom() -> FakeWeCom:
    return FakeWeCom(WECOM_CORP_ID, WECOM_SECRET, WECOM_AGENT_ID)


@pytest.fixture
async def fake_wecom_url(fake_wecom: FakeWeCom) -> AsyncIterator[str]:
    server = TestServer(fake_wecom.app())
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def wecom_on() -> bool:
    """False: no WeCom app (group robots still post, to the fake). WeCom tests override this."""
    return False


@pytest.fixture
def aes_key() -> str:
    """Empty: plaintext mode. Tests of safe mode override this fixture."""
    return ""


@pytest.fixture
def settings(
    database_url: str, fake_wechat_url: str, fake_wecom_url: str, aes_key: str, wecom_on: bool, tmp_path: Path
) -> Settings:
    wecom: dict[str, Any] = {}
    if wecom_on:
        wecom = {
            "wecom_corp_id": WECOM_CORP_ID,
            "wecom_agent_id": WECOM_AGENT_ID,
            "wecom_secret": WECOM_SECRET,
            "wecom_token": WECOM_TOKEN,
            "wecom_aes_key": WECOM_AES_KEY,
            "media_dir": tmp_path / "media",
        }
    return Settings(
        database_url=database_url,
        wechat_token=TOKEN,
        wechat_appid=APPID,
        wechat_secret=SECRET,
        wechat_aes_key=aes_key,
        wechat_api_base=fake_wechat_url,
        wecom_api_base=fake_wecom_url,  # group robots post even without a WeCom app: never to the real host
        grid_file=DEMO_GRID_FILE,
        # The longest WeChat allows: tests read the passive replies, and a busy CI machine must not
        # turn them into 已收到 (the budget's own behaviour is tested in test_receive with its own).
        reply_budget_seconds=4.5,
        _env_file=None,
        **wecom,
    )  # type: ignore[call-arg]


class WeChat:
    """Plays the WeChat server against the app under test, as a resident's or leader's phone would."""

    def __init__(self, client: TestClient, clock: FakeClock, fake: FakeWeChat, aes_key: str) -> None:
        self.client = client
        self.clock = clock
        self.fake = fake
        self.sim = WeChatSimulator(token=TOKEN, appid=APPID, aes_key=aes_key, account="gh_test")
        self.last_status = 0

    @property
    def app(self) -> Any:
        return self.client.server.app

    def xml(self, sender: str, msg_type: str, fields: dict[str, Any], msg_id: int | None = None) -> str:
        return self.sim.xml(sender, msg_type, fields, create_time=int(self.clock.now().timestamp()), msg_id=msg_id)

    async def post(self, xml: str, *, mode: str = "auto") -> tuple[int, str]:
        query, body = self.sim.sign(xml, timestamp=int(self.clock.now().timestamp()), mode=mode)
        resp = await self.client.post("/wechat", params=query, data=body)
        self.last_status = resp.status
        return resp.status, await resp.text()

    async def send(self, xml: str, *, mode: str = "auto") -> str | None:
        status, body = await self.post(xml, mode=mode)
        assert status == 200, body
        return self.sim.read_reply(body)

    async def text(self, sender: str, content: str, **kw: Any) -> str | None:
        return await self.send(self.xml(sender, "text", {"Content": content}), **kw)

    async def location(self, sender: str, lat: float, lon: float, label: str = "") -> str | None:
        return await self.send(
            self.xml(sender, "location", {"Location_X": lat, "Location_Y": lon, "Scale": 16, "Label": label})
        )

    async def deliver(self) -> None:
        """Let processing finish and the outbox deliver what is due now."""
        await self.app[RECEIVER].wait_idle()
        await self.app[WORKER].drain()

    def pushes_to(self, openid: str) -> list[str]:
        return self.fake.texts_to(openid)

    async def cases(self) -> list[Case]:
        async with transaction(self.app[FACTORY]) as session:
            return list((await session.exec(select(Case).order_by(Case.id))).all())

    async def outbox(self) -> list[OutboxMessage]:
        async with transaction(self.app[FACTORY]) as session:
            return list((await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all())


@pytest.fixture
async def wechat(
    aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: FakeWeChat, aes_key: str
) -> AsyncIterator[WeChat]:
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    yield WeChat(client, clock, fake_wechat, aes_key)


@pytest.fixture
async def with_media(
    aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: FakeWeChat, tmp_path: Path
) -> WeChat:
    """The app with a media directory: photos are fetched from (fake) WeChat and kept."""
    configured = settings.model_copy(update={"media_dir": tmp_path / "media"})
    client = await aiohttp_client(create_app(configured, clock=clock, background=False))
    return WeChat(client, clock, fake_wechat, "")


class WeCom:
    """Plays the WeCom server against the app under test, as a staff member's WeCom app would."""

    def __init__(self, wechat: WeChat, fake: FakeWeCom) -> None:
        self.wechat = wechat  # the same app, reached through the Official Account (residents)
        self.client = wechat.client
        self.clock = wechat.clock
        self.fake = fake
        self.sim = WeComSimulator(
            token=WECOM_TOKEN, corp_id=WECOM_CORP_ID, aes_key=WECOM_AES_KEY, agent_id=WECOM_AGENT_ID
        )
        self.last_status = 0

    @property
    def app(self) -> Any:
        return self.client.server.app

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def xml(self, sender: str, msg_type: str, fields: dict[str, Any], **kw: Any) -> str:
        return self.sim.xml(sender, msg_type, fields, create_time=self.now(), **kw)

    async def post(self, xml: str) -> tuple[int, str]:
        query, body = self.sim.sign(xml, timestamp=self.now())
        resp = await self.client.post("/wecom", params=query, data=body)
        self.last_status = resp.status
        return resp.status, await resp.text()

    async def send(self, xml: str) -> str | None:
        status, body = await self.post(xml)
        assert status == 200, body
        return self.sim.read_reply(body)

    async def text(self, userid: str, content: str) -> str | None:
        return await self.send(self.xml(userid, "text", {"Content": content}))

    async def image(self, userid: str, media_id: str) -> str | None:
        return await self.send(
            self.xml(userid, "image", {"PicUrl": f"https://wework.example/{media_id}.jpg", "MediaId": media_id})
        )

    async def deliver(self) -> None:
        await self.wechat.deliver()

    def pushes_to(self, userid: str) -> list[str]:
        return self.fake.texts_to(userid)


@pytest.fixture
async def wecom(wechat: WeChat, fake_wecom: FakeWeCom) -> WeCom:
    """Needs `wecom_on` overridden to True in the test module."""
    return WeCom(wechat, fake_wecom)
