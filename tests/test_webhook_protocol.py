"""The Official Account protocol, as WeChat's servers speak it (messages signed with wechatpy)."""

from __future__ import annotations

import pytest

from tests.conftest import AES_KEY, RESIDENT, RESIDENT_2, WeChat

REPORT = "幸福里小区3号楼东侧路灯坏了好几天了"


async def test_url_verification_echoes_echostr(wechat: WeChat) -> None:
    query = wechat.sim.verification_query("1234567890abc", timestamp=int(wechat.clock.now().timestamp()))
    resp = await wechat.client.get("/wechat", params=query)
    assert resp.status == 200 and await resp.text() == "1234567890abc"


async def test_url_verification_with_bad_signature_is_forbidden(wechat: WeChat) -> None:
    query = wechat.sim.verification_query("abc", timestamp=int(wechat.clock.now().timestamp()))
    query["signature"] = "0" * 40
    resp = await wechat.client.get("/wechat", params=query)
    assert resp.status == 403 and await resp.text() != "abc"


async def test_plaintext_mode_creates_a_case_and_replies_in_xml(wechat: WeChat) -> None:
    status, body = await wechat.post(wechat.xml(RESIDENT, "text", {"Content": REPORT}), mode="plain")
    assert status == 200 and body.startswith("<xml>") and "<Encrypt>" not in body
    assert "<ToUserName><![CDATA[o_resident_wang]]></ToUserName>" in body
    assert "<FromUserName><![CDATA[gh_test]]></FromUserName>" in body
    assert len(await wechat.cases()) == 1


class TestEncryptedModes:
    @pytest.fixture
    def aes_key(self) -> str:
        return AES_KEY

    async def test_safe_mode_decrypts_and_encrypts_the_reply(self, wechat: WeChat) -> None:
        status, body = await wechat.post(wechat.xml(RESIDENT, "text", {"Content": REPORT}), mode="safe")
        assert status == 200 and "<Encrypt>" in body and "路灯" not in body
        reply = wechat.sim.read_reply(body)
        assert reply is not None and "已受理：道路设施" in reply
        assert len(await wechat.cases()) == 1

    async def test_compatible_mode_is_answered_encrypted(self, wechat: WeChat) -> None:
        status, body = await wechat.post(wechat.xml(RESIDENT, "text", {"Content": REPORT}), mode="compatible")
        assert status == 200 and "<Encrypt>" in body
        assert "已受理" in (wechat.sim.read_reply(body) or "")

    async def test_plaintext_still_accepted_when_the_account_is_switched_to_plain(self, wechat: WeChat) -> None:
        status, body = await wechat.post(wechat.xml(RESIDENT, "text", {"Content": REPORT}), mode="plain")
        assert status == 200 and "已受理" in body

    async def test_bad_msg_signature_is_forbidden(self, wechat: WeChat) -> None:
        query, body = wechat.sim.sign(
            wechat.xml(RESIDENT, "text", {"Content": REPORT}),
            timestamp=int(wechat.clock.now().timestamp()),
            mode="safe",
        )
        query["msg_signature"] = "f" * 40
        resp = await wechat.client.post("/wechat", params=query, data=body)
        assert resp.status == 403
        assert await wechat.cases() == []

    async def test_ciphertext_for_another_appid_is_refused(self, wechat: WeChat) -> None:
        from bot.wechat import WeChatSimulator
        from tests.conftest import TOKEN

        other = WeChatSimulator(token=TOKEN, appid="wxotherappid000000", aes_key=AES_KEY)
        xml = other.xml(RESIDENT, "text", {"Content": REPORT}, create_time=int(wechat.clock.now().timestamp()))
        query, body = other.sign(xml, timestamp=int(wechat.clock.now().timestamp()), mode="safe")
        resp = await wechat.client.post("/wechat", params=query, data=body)
        assert resp.status == 400
        assert await wechat.cases() == []


async def test_compatible_mode_without_our_aes_key_uses_the_plain_fields(wechat: WeChat) -> None:
    from bot.wechat import WeChatSimulator
    from tests.conftest import APPID, TOKEN

    sim = WeChatSimulator(token=TOKEN, appid=APPID, aes_key=AES_KEY, account="gh_test")
    xml = sim.xml(RESIDENT, "text", {"Content": REPORT}, create_time=int(wechat.clock.now().timestamp()))
    query, body = sim.sign(xml, timestamp=int(wechat.clock.now().timestamp()), mode="compatible")
    resp = await wechat.client.post("/wechat", params=query, data=body)
    assert resp.status == 200 and "已受理" in await resp.text()


async def test_bad_signature_is_forbidden_and_nothing_is_stored(wechat: WeChat) -> None:
    query, body = wechat.sim.sign(
        wechat.xml(RESIDENT, "text", {"Content": REPORT}), timestamp=int(wechat.clock.now().timestamp())
    )
    query["signature"] = "0" * 40
    resp = await wechat.client.post("/wechat", params=query, data=body)
    assert resp.status == 403
    assert await wechat.cases() == []


async def test_forged_sender_needs_a_valid_signature(wechat: WeChat) -> None:
    """A body naming a leader's openid is worthless without the token: signed wrong, refused."""
    from bot.wechat import WeChatSimulator

    forger = WeChatSimulator(token="guessed-token", appid="x")
    xml = forger.xml(
        "o_demo_zhangwei_hp01",
        "text",
        {"Content": "我的工单"},
        create_time=int(wechat.clock.now().timestamp()),
    )
    query, body = forger.sign(xml, timestamp=int(wechat.clock.now().timestamp()))
    resp = await wechat.client.post("/wechat", params=query, data=body)
    assert resp.status == 403


async def test_replayed_old_timestamp_is_refused(wechat: WeChat) -> None:
    xml = wechat.xml(RESIDENT, "text", {"Content": REPORT})
    query, body = wechat.sim.sign(xml, timestamp=int(wechat.clock.now().timestamp()) - 301)
    resp = await wechat.client.post("/wechat", params=query, data=body)
    assert resp.status == 403
    assert await wechat.cases() == []


async def test_timestamp_within_five_minutes_is_accepted(wechat: WeChat) -> None:
    xml = wechat.xml(RESIDENT, "text", {"Content": REPORT})
    query, body = wechat.sim.sign(xml, timestamp=int(wechat.clock.now().timestamp()) - 290)
    resp = await wechat.client.post("/wechat", params=query, data=body)
    assert resp.status == 200


async def test_body_over_64_kib_is_refused(wechat: WeChat) -> None:
    status, _ = await wechat.post(wechat.xml(RESIDENT, "text", {"Content": "路" * 30000}))
    assert status == 413
    assert await wechat.cases() == []


async def test_xml_bomb_is_rejected_without_expansion(wechat: WeChat) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
        + "]><xml><ToUserName>gh</ToUserName><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>text</MsgType><Content>&lol9;</Content><MsgId>1</MsgId></xml>"
    )
    status, _ = await wechat.post(bomb, mode="plain")
    assert status == 400
    assert await wechat.cases() == []


async def test_external_entity_is_rejected(wechat: WeChat) -> None:
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<xml><ToUserName>gh</ToUserName><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>text</MsgType><Content>&e;</Content><MsgId>1</MsgId></xml>"
    )
    status, _ = await wechat.post(xxe, mode="plain")
    assert status == 400


@pytest.mark.parametrize("body", ["not xml at all", "<xml>abc</xml>", "<xml><MsgType>text</MsgType></xml>", ""])
async def test_malformed_bodies_get_400_not_500(wechat: WeChat, body: str) -> None:
    status, _ = await wechat.post(body, mode="plain")
    assert status == 400


async def test_retried_msgid_creates_one_case_and_gets_the_same_reply(wechat: WeChat) -> None:
    xml = wechat.xml(RESIDENT, "text", {"Content": REPORT}, msg_id=6_000_000_001)
    first = await wechat.send(xml)
    second = await wechat.send(xml)
    third = await wechat.send(xml)
    assert first is not None and first == second == third
    assert len(await wechat.cases()) == 1


async def test_same_msgid_from_two_users_is_two_messages(wechat: WeChat) -> None:
    await wechat.send(wechat.xml(RESIDENT, "text", {"Content": REPORT}, msg_id=42))
    await wechat.send(wechat.xml(RESIDENT_2, "text", {"Content": REPORT}, msg_id=42))
    assert len(await wechat.cases()) == 2


async def test_subscribe_gets_the_welcome_once(wechat: WeChat) -> None:
    xml = wechat.xml(RESIDENT, "event", {"Event": "subscribe", "EventKey": ""})
    reply = await wechat.send(xml)
    assert reply is not None and "欢迎关注幸福街道" in reply and "工单编号" in reply
    assert await wechat.send(xml) == reply  # an event retry is recognised by sender+CreateTime+Event


async def test_qrscene_subscribe_is_welcomed_too(wechat: WeChat) -> None:
    reply = await wechat.send(wechat.xml(RESIDENT, "event", {"Event": "subscribe", "EventKey": "qrscene_7"}))
    assert reply is not None and "欢迎关注" in reply


async def test_unsubscribe_is_answered_with_success(wechat: WeChat) -> None:
    status, body = await wechat.post(wechat.xml(RESIDENT, "event", {"Event": "unsubscribe", "EventKey": ""}))
    assert status == 200 and body == "success"


async def test_unknown_kind_gets_a_polite_reply(wechat: WeChat) -> None:
    reply = await wechat.send(wechat.xml(RESIDENT, "shortvideo", {"MediaId": "v", "ThumbMediaId": "t"}))
    assert reply is not None and "暂不支持" in reply
    reply = await wechat.send(wechat.xml(RESIDENT, "miniprogrampage_unknown", {"Title": "x"}))
    assert reply is not None and "暂不支持" in reply


async def test_link_gets_a_polite_reply(wechat: WeChat) -> None:
    reply = await wechat.send(wechat.xml(RESIDENT, "link", {"Title": "t", "Description": "d", "Url": "http://x"}))
    assert reply is not None and "暂不支持链接" in reply


async def test_every_message_is_logged_once(wechat: WeChat) -> None:
    from sqlmodel import select

    from bot.app import FACTORY
    from storage.db import transaction
    from storage.models import InboundMessage

    xml = wechat.xml(RESIDENT, "text", {"Content": REPORT})
    await wechat.send(xml)
    await wechat.send(xml)
    async with transaction(wechat.app[FACTORY]) as session:
        rows = (await session.exec(select(InboundMessage))).all()
    assert [(r.sender, r.status, r.reply_mode) for r in rows] == [(RESIDENT, "processed", "passive")]


def test_answered_callbacks_are_summed_up_and_everything_else_gets_its_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access log: at 500 msg/s a line per answered callback cost a twentieth of the server's
    CPU. Those are one line every SUMMARY_EVERY seconds; refusals, 503s and other paths a line
    each; never a query string (it carries the resident's openid)."""
    import logging

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    import bot.app

    now = [1000.0]
    monkeypatch.setattr(bot.app.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(bot.app, "_ANSWERED", bot.app._Answered())
    access = bot.app.AccessLogger(logging.getLogger("test.access"), "")
    caplog.set_level(logging.INFO, logger="test.access")

    def log(method: str, path: str, status: int, ms: float) -> None:
        request = make_mocked_request(method, f"{path}?openid=o_resident_wang&signature=x")
        access.log(request, web.Response(status=status), ms / 1000)

    for n in range(100):
        log("POST", "/wechat", 200, 10 + n)  # 10 … 109 ms
        now[0] += 0.05
    log("POST", "/wechat", 503, 3)
    log("POST", "/wecom", 403, 1)
    log("GET", "/wechat", 200, 1)  # the URL check in the console
    assert [r.getMessage() for r in caplog.records] == ["POST /wechat 503 3.0ms", "POST /wecom 403 1.0ms",
                                                        "GET /wechat 200 1.0ms"]  # fmt: skip
    now[0] += bot.app.SUMMARY_EVERY
    log("POST", "/wecom", 200, 200)  # ten seconds after the first: the summary, this one in it
    summary = caplog.records[-1]
    assert summary.getMessage() == "webhook answered"
    assert (summary.n, summary.p50_ms, summary.p99_ms, summary.max_ms) == (101, 60.0, 109.0, 200.0)  # type: ignore[attr-defined]
    assert all("o_resident_wang" not in r.getMessage() for r in caplog.records)
