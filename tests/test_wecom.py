"""Staff on WeCom (企业微信 self-built app): the callback as WeCom's servers speak it (encrypted and
signed with wechatpy's enterprise crypto), leaders working cases there, and what goes out to WeCom
(app messages, group robot posts, media fetches) through the fake WeCom API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bot.app import FACTORY
from bot.fake_wecom import FakeWeCom
from bot.tokens import SharedTokens
from bot.wechat_api import Verdict
from bot.wecom import WeComSimulator
from bot.wecom_api import WeComAPI, WeComRobot, classify
from handlers import messages as m
from handlers.pushes import WECHAT_CS, WECOM_APP, staff_address
from storage.db import SessionFactory, transaction
from storage.models import InboundMessage, Resident, Staff
from tests.conftest import (
    RESIDENT,
    RESIDENT_2,
    WECOM_AES_KEY,
    WECOM_AGENT_ID,
    WECOM_CORP_ID,
    WECOM_SECRET,
    WECOM_TOKEN,
    FakeClock,
    WeChat,
    WeCom,
)

REPORT_CH02 = "锦绣花园6号楼门口路灯坏了好几天了"  # 春晖第二网格: 吴刚, who works on WeCom
WUGANG = "wugang"
WUGANG_OPENID = "o_demo_wugang_ch02"


@pytest.fixture
def wecom_on() -> bool:
    return True


async def residents(wecom: WeCom) -> list[Resident]:
    async with transaction(wecom.app[FACTORY]) as session:
        return list((await session.exec(select(Resident))).all())


async def inbound_keys(wecom: WeCom) -> list[str]:
    async with transaction(wecom.app[FACTORY]) as session:
        return [r.dedupe_key for r in (await session.exec(select(InboundMessage))).all()]


# --- the callback protocol ---------------------------------------------------------------------


async def test_url_verification_answers_the_decrypted_echostr(wecom: WeCom) -> None:
    query = wecom.sim.verification_query("5927782489442352469", timestamp=wecom.now())
    assert query["echostr"] != "5927782489442352469"
    resp = await wecom.client.get("/wecom", params=query)
    assert resp.status == 200 and await resp.text() == "5927782489442352469"  # bare: no quotes, no newline


async def test_url_verification_with_a_bad_signature_is_forbidden(wecom: WeCom) -> None:
    query = wecom.sim.verification_query("5927782489442352469", timestamp=wecom.now())
    query["msg_signature"] = "0" * 40
    resp = await wecom.client.get("/wecom", params=query)
    assert resp.status == 403 and "5927782489442352469" not in await resp.text()


async def test_url_verification_for_another_corp_is_refused(wecom: WeCom) -> None:
    other = WeComSimulator(token=WECOM_TOKEN, corp_id="wwothercorp0000000", aes_key=WECOM_AES_KEY, agent_id=1)
    resp = await wecom.client.get("/wecom", params=other.verification_query("hello", timestamp=wecom.now()))
    assert resp.status == 400 and await resp.text() != "hello"


async def test_message_in_and_reply_out_are_encrypted(wecom: WeCom) -> None:
    status, body = await wecom.post(wecom.xml(WUGANG, "text", {"Content": "我的工单"}))
    assert status == 200 and "<Encrypt>" in body and "工单" not in body
    assert wecom.sim.read_reply(body) == m.MY_CASES_EMPTY
    [key] = await inbound_keys(wecom)
    assert key.startswith("wecom:wugang:")


async def test_nothing_to_say_is_an_empty_body(wecom: WeCom) -> None:
    status, body = await wecom.post(wecom.xml(WUGANG, "event", {"Event": "enter_agent", "EventKey": ""}))
    assert status == 200 and body == ""


@pytest.mark.parametrize(
    "tamper",
    ["bad_signature", "stale", "wrong_agent", "other_corp", "not_xml", "dtd", "no_encrypt", "garbage_cipher"],
)
async def test_requests_wecom_did_not_send_are_refused_and_not_stored(wecom: WeCom, tamper: str) -> None:
    xml = wecom.xml(WUGANG, "text", {"Content": "我的工单"})
    query, body = wecom.sim.sign(xml, timestamp=wecom.now())
    expected = 400
    if tamper == "bad_signature":
        query["msg_signature"] = "f" * 40
        expected = 403
    elif tamper == "stale":
        query, body = wecom.sim.sign(xml, timestamp=wecom.now() - 3600)
        expected = 403
    elif tamper == "wrong_agent":
        query, body = wecom.sim.sign(
            wecom.xml(WUGANG, "text", {"Content": "我的工单"}, agent_id=999), timestamp=wecom.now()
        )
        expected = 403
    elif tamper == "other_corp":
        other = WeComSimulator(token=WECOM_TOKEN, corp_id="wwothercorp0000000", aes_key=WECOM_AES_KEY, agent_id=1)
        query, body = other.sign(xml, timestamp=wecom.now())
    elif tamper == "not_xml":
        body = b"{not xml"
    elif tamper == "dtd":
        body = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>'
    elif tamper == "no_encrypt":
        body = b"<xml><ToUserName>ww</ToUserName></xml>"
    elif tamper == "garbage_cipher":
        from bot.wechat import sha1_signature

        query["msg_signature"] = sha1_signature(WECOM_TOKEN, query["timestamp"], query["nonce"], "bm90IGEgY2lwaGVy")
        body = b"<xml><Encrypt><![CDATA[bm90IGEgY2lwaGVy]]></Encrypt></xml>"
    resp = await wecom.client.post("/wecom", params=query, data=body)
    assert resp.status == expected, await resp.text()
    assert await inbound_keys(wecom) == []


async def test_a_retried_message_is_processed_once_and_gets_the_same_reply(wecom: WeCom) -> None:
    await wecom.wechat.text(RESIDENT, REPORT_CH02)
    [case] = await wecom.wechat.cases()
    query, body = wecom.sim.sign(wecom.xml(WUGANG, "text", {"Content": "接单"}), timestamp=wecom.now())
    first = await wecom.client.post("/wecom", params=query, data=body)
    again = await wecom.client.post("/wecom", params=query, data=body)
    replies = [wecom.sim.read_reply(await r.text()) for r in (first, again)]
    assert replies[0] == replies[1] and f"已接单 {case.number}" in (replies[0] or "")
    assert len(await inbound_keys(wecom)) == 2  # the resident's report and one 接单


async def test_dedupe_keys_of_wecom_and_the_official_account_cannot_collide(wecom: WeCom) -> None:
    await wecom.wechat.send(wecom.wechat.xml("wugang", "text", {"Content": "你好"}, msg_id=42))
    await wecom.send(wecom.xml("wugang", "text", {"Content": "我的工单"}, msg_id=42))
    assert sorted(await inbound_keys(wecom)) == ["wecom:wugang:42", "wugang:42"]


async def test_a_userid_not_on_the_staff_list_is_refused_and_no_resident_is_made(wecom: WeCom) -> None:
    assert await wecom.text("zhangsan", "锦绣花园路灯坏了") == m.WECOM_NOT_STAFF
    assert await wecom.wechat.cases() == [] and await residents(wecom) == []


async def test_staff_pins_and_app_events_never_make_residents_or_cases(wecom: WeCom) -> None:
    pin = {"Location_X": 39.92, "Location_Y": 116.42, "Scale": 15, "Label": "锦绣花园"}
    assert await wecom.send(wecom.xml(WUGANG, "location", pin)) == m.STAFF_LOCATION_UNUSED
    assert await wecom.send(wecom.xml(WUGANG, "event", {"Event": "enter_agent", "EventKey": ""})) is None
    assert await wecom.send(wecom.xml(WUGANG, "event", {"Event": "subscribe"})) == m.STAFF_HELP
    located = {"Event": "LOCATION", "Latitude": 39.92, "Longitude": 116.42, "Precision": 30}
    assert await wecom.send(wecom.xml(WUGANG, "event", located)) is None
    stray = await wecom.image(WUGANG, "stray_photo")  # no 办结 just before: not a proof, not a report
    assert stray is not None and "没有附到任何工单" in stray
    voice = await wecom.send(wecom.xml(WUGANG, "voice", {"MediaId": "v1", "Format": "amr"}))
    assert voice == m.STAFF_HELP
    assert await residents(wecom) == [] and await wecom.wechat.cases() == []


# --- a leader working a case on WeCom ------------------------------------------------------------


async def test_a_wecom_leader_works_a_case_end_to_end(wecom: WeCom, tmp_path: Path) -> None:
    wechat = wecom.wechat
    await wechat.text(RESIDENT, REPORT_CH02 + "，电话13812345678")
    [case] = await wechat.cases()
    await wecom.deliver()
    [card] = wecom.fake.app_messages(WUGANG)
    assert card["agentid"] == WECOM_AGENT_ID and card["msgtype"] == "text"
    assert card["text"]["content"].startswith("【新工单】") and case.number in card["text"]["content"]
    assert "138****5678" in card["text"]["content"] and "13812345678" not in card["text"]["content"]
    assert wechat.pushes_to(WUGANG_OPENID) == []  # he prefers WeCom: nothing on the Official Account

    assert f"已接单 {case.number}" in (await wecom.text(WUGANG, "接单") or "")
    assert "已记录" in (await wecom.text(WUGANG, "进展 已联系供电所，明天上午维修") or "")
    assert f"已办结 {case.number}" in (await wecom.text(WUGANG, "办结 已更换灯泡") or "")
    wecom.clock.advance(minutes=1)
    assert f"照片已附到工单 {case.number}" in (await wecom.image(WUGANG, "wecom_proof_1") or "")
    mine = await wecom.text(WUGANG, "我的工单")
    assert mine is not None and (case.number in mine or mine == m.MY_CASES_EMPTY)
    await wecom.deliver()

    told = wechat.pushes_to(RESIDENT)
    assert any("春晖第二网格 吴刚接单" in t for t in told)
    assert any("有新进展：已联系供电所" in t for t in told)
    assert any("已办结：已更换灯泡" in t for t in told)
    # The photo came from WeCom: fetched with the WeCom app's token, never the Official Account's.
    assert wecom.fake.media_fetches == ["wecom_proof_1"] and wechat.fake.media_fetches == []
    saved = tmp_path / "media" / "wecom_proof_1.jpg"
    assert b"FAKEWECOMJPEG:wecom_proof_1" in saved.read_bytes()
    assert all(r.status == "sent" for r in await wechat.outbox())


async def test_a_late_reply_to_a_wecom_leader_goes_out_as_an_app_message(wecom: WeCom) -> None:
    from bot.app import RECEIVER

    await wecom.wechat.text(RESIDENT, REPORT_CH02)
    await wecom.deliver()
    wecom.app[RECEIVER].budget = 0.0  # the webhook gives up at once: the reply goes through the outbox
    status, body = await wecom.post(wecom.xml(WUGANG, "text", {"Content": "我的工单"}))
    assert status == 200
    await wecom.deliver()
    late = [t for t in wecom.pushes_to(WUGANG) if "您的未办结工单" in t]
    # Either answered in time (passive) or, past the budget, as an app message: never both, never neither.
    assert (body == "") == (len(late) == 1)
    assert body == "" or "您的未办结工单" in (wecom.sim.read_reply(body) or "")


async def test_urgent_case_reaches_the_group_robot_with_the_wecom_leader_mentioned(wecom: WeCom) -> None:
    await wecom.wechat.text(RESIDENT, "锦绣花园6号楼着火了，冒烟")
    await wecom.deliver()
    [post] = wecom.fake.robot_posts("demo-robot-ch")
    assert post["msgtype"] == "text" and post["text"]["mentioned_list"] == [WUGANG]
    assert post["text"]["content"].startswith("【紧急工单】")


# --- outbound: tokens, errors, limits ------------------------------------------------------------


@pytest.fixture
async def api(fake_wecom_url: str, process_db: Callable[[], SessionFactory], clock: FakeClock) -> Any:
    async with aiohttp.ClientSession() as http:
        yield WeComAPI(
            http,
            base=fake_wecom_url,
            corp_id=WECOM_CORP_ID,
            secret=WECOM_SECRET,
            agent_id=WECOM_AGENT_ID,
            tokens=SharedTokens(process_db(), clock, lease=10),
            timeout=5,
        )


@pytest.fixture
async def robot(fake_wecom_url: str) -> Any:
    async with aiohttp.ClientSession() as http:
        yield WeComRobot(http, base=fake_wecom_url, timeout=5)


def text(content: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content}}


async def test_the_token_is_cached_and_refreshed_when_wecom_says_it_expired(
    api: WeComAPI, fake_wecom: FakeWeCom
) -> None:
    assert (await api.send_app(WUGANG, text("一"))).verdict is Verdict.SENT
    assert (await api.send_app(WUGANG, text("二"))).verdict is Verdict.SENT
    assert fake_wecom.token_fetches == 1
    fake_wecom.expire_tokens()  # 42001 on the next send: refresh once and send again
    assert (await api.send_app(WUGANG, text("三"))).verdict is Verdict.SENT
    assert fake_wecom.token_fetches == 2 and fake_wecom.texts_to(WUGANG) == ["一", "二", "三"]


@pytest.mark.parametrize(
    ("errcode", "status", "verdict"),
    [
        (45009, 200, Verdict.BACK_OFF),
        (45033, 200, Verdict.BACK_OFF),
        (60111, 200, Verdict.PARK),
        (81013, 200, Verdict.PARK),
        (-1, 200, Verdict.RETRY),
        (40014, 200, Verdict.RETRY),  # stale twice in a row: try again later
        (0, 502, Verdict.RETRY),
    ],
)
async def test_app_message_errors_have_a_meaning(
    api: WeComAPI, fake_wecom: FakeWeCom, errcode: int, status: int, verdict: Verdict
) -> None:
    await api.access_token()
    fake_wecom.fail_next(2, status=status, errcode=errcode)
    assert (await api.send_app(WUGANG, text("x"))).verdict is verdict


def test_classification_table() -> None:
    assert classify(0).verdict is Verdict.SENT
    assert classify(42001).verdict is Verdict.REFRESH_TOKEN and classify(40001).verdict is Verdict.REFRESH_TOKEN
    assert classify(93000).verdict is Verdict.PARK and "robot key" in classify(93000).detail
    assert classify(40056, "invalid agentid").verdict is Verdict.PARK


async def test_a_recipient_wecom_lists_as_invalid_is_parked(api: WeComAPI, fake_wecom: FakeWeCom) -> None:
    fake_wecom.members = {"someone_else"}
    result = await api.send_app(WUGANG, text("x"))
    assert result.verdict is Verdict.PARK and "invalid user" in result.detail


async def test_long_text_goes_out_in_pieces_wecom_accepts_in_order(api: WeComAPI, fake_wecom: FakeWeCom) -> None:
    lines = [f"第{i}行：锦绣花园6号楼门口路灯坏了，已派遣春晖第二网格吴刚处理。" for i in range(60)]
    assert (await api.send_app(WUGANG, text("\n".join(lines)))).verdict is Verdict.SENT
    pieces = fake_wecom.texts_to(WUGANG)
    assert len(pieces) > 1 and all(len(p.encode()) <= 2048 for p in pieces)
    assert "\n".join(pieces).splitlines() == lines


async def test_a_retry_after_a_failed_piece_does_not_repeat_the_pieces_sent(
    api: WeComAPI, fake_wecom: FakeWeCom, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = api._call_with_token, []

    async def flaky(path: str, body: dict[str, Any]) -> Any:
        calls.append(body)
        if len(calls) == 2:  # the second piece fails once
            from bot.wechat_api import Result

            return Result(Verdict.RETRY, "503")
        return await real(path, body)

    monkeypatch.setattr(api, "_call_with_token", flaky)
    payload = text("\n".join(f"第{i}行：" + "路灯坏了" * 20 for i in range(40)))
    assert (await api.send_app(WUGANG, payload)).verdict is Verdict.RETRY
    assert (await api.send_app(WUGANG, payload)).verdict is Verdict.SENT  # the outbox's retry
    pieces = fake_wecom.texts_to(WUGANG)
    assert len(pieces) == len(set(pieces)) and "\n".join(pieces) == payload["text"]["content"]


async def test_robot_posts_and_their_errors(robot: WeComRobot, fake_wecom: FakeWeCom) -> None:
    payload = {"msgtype": "text", "text": {"content": "紧急", "mentioned_list": [WUGANG]}}
    assert (await robot.send("demo-robot-ch", payload)).verdict is Verdict.SENT
    assert fake_wecom.robot_posts("demo-robot-ch")[0]["text"]["mentioned_list"] == [WUGANG]
    bad = await robot.send("invalid-key-123", payload)
    assert bad.verdict is Verdict.PARK and "invalid-key-123" not in bad.detail
    fake_wecom.rate_limited = True
    assert (await robot.send("demo-robot-ch", payload)).verdict is Verdict.BACK_OFF
    fake_wecom.rate_limited = False
    too_long = await robot.send("demo-robot-ch", {"msgtype": "text", "text": {"content": "字" * 700}})
    assert too_long.verdict is Verdict.PARK and len(fake_wecom.robot_posts()) == 1  # never sent to be refused


async def test_credentials_never_reach_the_stored_error(wecom: WeCom) -> None:
    await wecom.wechat.text(RESIDENT, "锦绣花园6号楼着火了，冒烟")  # a card for 吴刚 and a robot post
    wecom.fake.fail_next(2, status=500)
    await wecom.deliver()
    failed = [r for r in await wecom.wechat.outbox() if r.channel in (WECOM_APP, "wecom_robot") and r.last_error]
    assert {r.channel for r in failed} == {WECOM_APP, "wecom_robot"}
    for row in failed:
        assert "FAKE_WECOM_TOKEN" not in (row.last_error or "") and "demo-robot-ch" not in (row.last_error or "")
        assert row.status == "pending"  # 5xx: tried again later


# --- where staff pushes go ----------------------------------------------------------------------


def test_staff_address_prefers_wecom_only_when_the_server_has_a_wecom_app() -> None:
    both = Staff(name="吴刚", role="leader", channel="wecom", wecom_userid=WUGANG, wechat_openid=WUGANG_OPENID)
    only_wecom = Staff(name="刘志强", role="leader", channel="wecom", wecom_userid="liuzhiqiang")
    on_wechat = Staff(name="张伟", role="leader", wecom_userid="zhangwei", wechat_openid="o_zw")
    assert staff_address(both, wecom_app=True) == (WECOM_APP, WUGANG)
    assert staff_address(both, wecom_app=False) == (WECHAT_CS, WUGANG_OPENID)
    # Nowhere else to reach him: the push is kept on WeCom, parked there with the reason, not dropped.
    assert staff_address(only_wecom, wecom_app=False) == (WECOM_APP, "liuzhiqiang")
    assert staff_address(on_wechat, wecom_app=True) == (WECHAT_CS, "o_zw")


class TestWithoutAWeComApp:
    @pytest.fixture
    def wecom_on(self) -> bool:
        return False

    async def test_the_callback_does_not_exist(self, wechat: WeChat) -> None:
        sim = WeComSimulator(token=WECOM_TOKEN, corp_id=WECOM_CORP_ID, aes_key=WECOM_AES_KEY, agent_id=WECOM_AGENT_ID)
        now = int(wechat.clock.now().timestamp())
        assert (await wechat.client.get("/wecom", params=sim.verification_query("x", timestamp=now))).status == 404
        query, body = sim.sign(sim.xml(WUGANG, "text", {"Content": "我的工单"}, create_time=now), timestamp=now)
        assert (await wechat.client.post("/wecom", params=query, data=body)).status == 404

    async def test_a_leader_who_prefers_wecom_gets_cards_on_the_official_account(
        self, wechat: WeChat, fake_wecom: FakeWeCom
    ) -> None:
        await wechat.text(RESIDENT_2, REPORT_CH02)
        await wechat.deliver()
        assert any(t.startswith("【新工单】") for t in wechat.pushes_to(WUGANG_OPENID))
        assert fake_wecom.app_messages() == []
        assert not [r for r in await wechat.outbox() if r.status == "parked"]

    async def test_group_robots_still_post(self, wechat: WeChat, fake_wecom: FakeWeCom) -> None:
        await wechat.text(RESIDENT, "锦绣花园6号楼着火了，冒烟")
        await wechat.deliver()
        assert len(fake_wecom.robot_posts("demo-robot-ch")) == 1


def test_create_time_is_read_as_utc() -> None:
    sim = WeComSimulator(token=WECOM_TOKEN, corp_id=WECOM_CORP_ID, aes_key=WECOM_AES_KEY, agent_id=WECOM_AGENT_ID)
    from bot.wecom import WeComTransport

    transport = WeComTransport(
        token=WECOM_TOKEN,
        corp_id=WECOM_CORP_ID,
        aes_key=WECOM_AES_KEY,
        agent_id=WECOM_AGENT_ID,
        replay_window=300,
        max_body=65536,
    )
    ts = 1_795_000_000
    query, body = sim.sign(sim.xml(WUGANG, "text", {"Content": "接单"}, create_time=ts, msg_id=7), timestamp=ts)
    parsed = transport.parse(query, body, datetime.fromtimestamp(ts, UTC))
    assert parsed.msg.channel == "wecom" and parsed.msg.sender == WUGANG and parsed.msg.text == "接单"
    assert parsed.msg.created_at == datetime.fromtimestamp(ts, UTC) and parsed.dedupe_key == "wecom:wugang:7"


async def test_a_burst_of_urgent_cases_reaches_the_group_at_most_20_posts_a_minute(wecom: WeCom) -> None:
    """24 fires reported at once in 春晖第二网格 (pins 210 m apart, so none repeats another): every
    post reaches the robot, in order, 20 in the first minute and the rest in the next, none dropped."""
    pins = [(39.9155 + 0.0019 * row, 116.4155 + 0.0025 * col) for row in range(4) for col in range(6)]
    for n, (lat, lon) in enumerate(pins):
        resident = f"o_fire_{n:02d}"
        await wecom.wechat.location(resident, lat, lon)
        await wecom.wechat.text(resident, f"这里着火了，冒烟很大（{n}）")
    cases = await wecom.wechat.cases()
    assert len(cases) == 24 and all(c.urgent for c in cases)
    await wecom.deliver()
    assert len(wecom.fake.robot_posts("demo-robot-ch")) == 20
    wecom.clock.advance(seconds=60)
    await wecom.deliver()
    posts = wecom.fake.robot_posts("demo-robot-ch")
    assert [c.number in p["text"]["content"] for p, c in zip(posts, cases, strict=True)] == [True] * 24
