"""Hostile input at the edge: what reaches the webhooks and the command parser from people who are
not WeChat, or from WeChat carrying what a resident typed.

Three layers, as elsewhere: the transports' parse() called directly (fast, many examples), the
command parser called directly, and the whole app through the aiohttp client. The promises checked:
a refused request is a 4xx (never a 500, never a traceback) and leaves no row behind; what is
accepted reaches the handlers only as typed fields; nothing a resident types is ever executed or
evaluated, by the database or by a template.

Hypothesis profiles live in tests/conftest.py ("ci" by default; HYPOTHESIS_PROFILE=long explores).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import select

from bot.app import FACTORY, RECEIVER
from bot.receive import PROCESSING_FAILED
from bot.wechat import (
    Parsed,
    ProtocolError,
    WeChatSimulator,
    WeChatTransport,
    sha1_signature,
)
from bot.wecom import WeComSimulator, WeComTransport
from handlers.commands import ALIASES, VERBS, DateError, find_case_number, parse_command, parse_until, split_target
from storage.db import transaction
from storage.models import ALL_TABLES, InboundMessage
from tests.conftest import (
    AES_KEY,
    APPID,
    LEADER_CH01,
    LEADER_HP01,
    RESIDENT,
    TOKEN,
    WECOM_AES_KEY,
    WECOM_AGENT_ID,
    WECOM_CORP_ID,
    WECOM_TOKEN,
    WeChat,
    WeCom,
)

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
REFUSALS = {400, 403, 413}
MAX_SENDER, MAX_DEDUPE_KEY = 64, 200  # the inbound log's columns
INJECTIONS = (
    "'; DROP TABLE cases;--",
    '" OR 1=1 --',
    "1; DELETE FROM inbound_message",
    "{{7*7}}",
    "{% for x in range(10**9) %}{% endfor %}",
    "${7*7}",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "%s%s%s%n",
    "{0.__class__}",
    "\u202e\u200b\ufeff",
    "]]><x>",
)

# --- strategies -------------------------------------------------------------------------------------

FIELDS = (
    "Content", "MediaId", "PicUrl", "Format", "Recognition", "Location_X", "Location_Y", "Scale", "Label",
    "Title", "Description", "Url", "Event", "EventKey", "Ticket", "Latitude", "Longitude", "Precision", "AgentID",
)  # fmt: skip
KINDS = ("text", "image", "voice", "video", "shortvideo", "location", "link", "event", "file", "miniprogrampage")
EVENTS = ("subscribe", "unsubscribe", "SCAN", "LOCATION", "CLICK", "VIEW", "qrscene_1", "enter_agent")

# Any unicode, lone surrogates included (encoded with surrogatepass below: invalid UTF-8 on the wire).
any_text = st.one_of(st.text(max_size=60), st.sampled_from(INJECTIONS))
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " 7 ", "１２", "0x10", "1e400", "-0"]),
)
fragments = st.sampled_from(["<a>1</a>", "<a/><a/>", "<Content>x</Content>", "<![CDATA[x]]>", "&amp;", "&#0;"])


@st.composite
def value(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["cdata", "raw", "number", "fragment"]))
    if kind == "cdata":
        return f"<![CDATA[{draw(any_text).replace(']]>', '')}]]>"
    if kind == "raw":
        return draw(any_text).replace("&", "&amp;").replace("<", "&lt;")
    if kind == "number":
        return draw(numbers)
    return draw(fragments)


@st.composite
def message_body(draw: st.DrawFn, *, sender: str = RESIDENT, to: str = "gh_test") -> bytes:
    """A WeChat-like message with hostile field values, sometimes mangled afterwards."""
    kind = draw(st.one_of(st.sampled_from(KINDS), any_text))
    fields = [
        ("ToUserName", draw(st.one_of(st.just(f"<![CDATA[{to}]]>"), value()))),
        ("FromUserName", draw(st.one_of(st.just(f"<![CDATA[{sender}]]>"), value()))),
        ("CreateTime", draw(st.one_of(st.just(str(TS)), numbers))),
        ("MsgType", f"<![CDATA[{kind}]]>"),
    ]
    if kind == "event":
        fields.append(("Event", draw(st.one_of(st.sampled_from(EVENTS), value()))))
    fields += draw(st.lists(st.tuples(st.sampled_from(FIELDS), value()), max_size=6))
    if draw(st.booleans()):
        fields.append(("MsgId", draw(st.one_of(st.integers(0, 2**63).map(str), numbers))))
    xml = "<xml>" + "".join(f"<{name}>{v}</{name}>" for name, v in fields) + "</xml>"
    body = xml.encode("utf-8", "surrogatepass")
    mangle = draw(st.sampled_from(["none", "none", "truncate", "flip", "prolog", "duplicate"]))
    if mangle == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif mangle == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
    elif mangle == "prolog":
        body = draw(st.sampled_from(PROLOGS)) + body
    elif mangle == "duplicate":
        body = body.replace(b"</xml>", b"<FromUserName>o_demo_zhangwei_hp01</FromUserName></xml>")
    return body


PROLOGS = (
    b'<?xml version="1.0" encoding="ISO-8859-1"?>',
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    b'<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd">',
    b'<?xml-stylesheet href="file:///etc/passwd"?>',
    b"\xef\xbb\xbf",
)

hostile_bodies = st.one_of(
    message_body(),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 3000).map(lambda depth: b"<xml>" + b"<a>" * depth + b"</a>" * depth + b"</xml>"),
)


def nonce_for(body: bytes) -> str:
    """One nonce per body: a plaintext query that came with another body is refused (a replay)."""
    return hashlib.sha1(body).hexdigest()[:10]


def plain_query(timestamp: int = TS, nonce: str = "n0nce") -> dict[str, str]:
    return {"timestamp": str(timestamp), "nonce": nonce, "signature": sha1_signature(TOKEN, str(timestamp), nonce)}


def check_parsed(parsed: Parsed) -> None:
    """What the handlers trust about a message, whatever the XML said."""
    msg = parsed.msg
    assert isinstance(msg.sender, str) and 0 < len(msg.sender) <= MAX_SENDER
    assert isinstance(parsed.dedupe_key, str) and len(parsed.dedupe_key) <= MAX_DEDUPE_KEY
    assert isinstance(parsed.account, str)
    assert msg.created_at.tzinfo is not None
    assert msg.msg_id is None or 0 < msg.msg_id < 2**64
    for text in (msg.text, msg.event, msg.label, msg.media_id, msg.url, msg.title):
        assert text is None or isinstance(text, str)
    for coord in (msg.lat, msg.lon):
        assert coord is None or (isinstance(coord, float) and math.isfinite(coord))


def parse_or_refuse(parse: Callable[[], Parsed]) -> Parsed | None:
    """parse() either gives typed fields or refuses with a 4xx; anything else escapes and fails."""
    try:
        parsed = parse()
    except ProtocolError as exc:
        assert exc.status in REFUSALS
        return None
    check_parsed(parsed)
    return parsed


# --- the transports, called directly ------------------------------------------------------------------

PLAIN = WeChatTransport(token=TOKEN, appid=APPID, aes_key="", replay_window=300, max_body=64 * 1024)
SAFE = WeChatTransport(token=TOKEN, appid=APPID, aes_key=AES_KEY, replay_window=300, max_body=64 * 1024)
SAFE_SIM = WeChatSimulator(token=TOKEN, appid=APPID, aes_key=AES_KEY, account="gh_test")
WECOM = WeComTransport(
    token=WECOM_TOKEN,
    corp_id=WECOM_CORP_ID,
    aes_key=WECOM_AES_KEY,
    agent_id=WECOM_AGENT_ID,
    replay_window=300,
    max_body=64 * 1024,
)
WECOM_SIM = WeComSimulator(token=WECOM_TOKEN, corp_id=WECOM_CORP_ID, aes_key=WECOM_AES_KEY, agent_id=WECOM_AGENT_ID)


@given(hostile_bodies)
def test_plain_mode_parses_any_body_or_refuses_it_with_a_4xx(body: bytes) -> None:
    query = plain_query(nonce=nonce_for(body))
    parse_or_refuse(lambda: PLAIN.parse(query, body, NOW))
    parse_or_refuse(lambda: SAFE.parse(query, body, NOW))  # an AES server, sent plaintext


def encrypted_query(encrypt: str, timestamp: int = TS, nonce: str = "n0nce") -> dict[str, str]:
    return {
        **plain_query(timestamp, nonce),
        "encrypt_type": "aes",
        "msg_signature": sha1_signature(TOKEN, str(timestamp), nonce, encrypt),
    }


def _encrypt(sim_crypto: Any, inner: bytes, receive_id: str) -> str:
    from wechatpy.crypto import PrpCrypto

    return PrpCrypto(sim_crypto.key).encrypt(inner, receive_id).decode()


ciphertexts = st.one_of(
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=120),
)


@given(st.one_of(message_body().map(lambda b: ("inner", b)), ciphertexts.map(lambda c: ("raw", c))))
def test_safe_mode_decrypts_any_signed_ciphertext_or_refuses_it(case: tuple[str, Any]) -> None:
    """Correctly signed, so every request gets past the signature to the decryption and the inner
    XML: random ciphertexts, and hostile messages encrypted as WeChat would."""
    kind, data = case
    encrypt = _encrypt(SAFE.crypto, data, APPID) if kind == "inner" else data
    body = f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    parse_or_refuse(lambda: SAFE.parse(encrypted_query(encrypt), body.encode(), NOW))


@given(st.one_of(message_body(to=WECOM_CORP_ID).map(lambda b: ("inner", b)), ciphertexts.map(lambda c: ("raw", c))))
def test_wecom_decrypts_any_signed_ciphertext_or_refuses_it(case: tuple[str, Any]) -> None:
    kind, data = case
    encrypt = _encrypt(WECOM.crypto, data, WECOM_CORP_ID) if kind == "inner" else data
    body = f"<xml><ToUserName><![CDATA[{WECOM_CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    query = {
        "timestamp": str(TS),
        "nonce": "n0nce",
        "msg_signature": sha1_signature(WECOM_TOKEN, str(TS), "n0nce", encrypt),
    }
    parse_or_refuse(lambda: WECOM.parse(query, body.encode(), NOW))


@given(hostile_bodies)
def test_wecom_parses_any_envelope_or_refuses_it(body: bytes) -> None:
    parse_or_refuse(lambda: WECOM.parse({"timestamp": str(TS), "nonce": "n", "msg_signature": "x"}, body, NOW))


H = "<ToUserName>gh_test</ToUserName><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime>"


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0" encoding="ISO-8859-1"?><xml>' + H.encode() + b"<MsgType>text</MsgType>"
        b"<Content>\xff</Content><MsgId>1</MsgId></xml>",
        f"<xml>{H}<MsgType>text</MsgType><Content>x</Content></xml>".encode("utf-16"),
        f"<xml>{H.replace('>1<', '>abc<')}<MsgType>text</MsgType><Content>x</Content></xml>".encode(),
        f"<xml>{H.replace('>1<', '>99999999999999999<')}<MsgType>text</MsgType><Content>x</Content></xml>".encode(),
        f"<xml>{H}<MsgType>text</MsgType><Content>x</Content><MsgId>{2**80}</MsgId></xml>".encode(),
        f"<xml>{H}<MsgType>text</MsgType><Content><a>1</a></Content><MsgId>1</MsgId></xml>".encode(),
        f"<xml>{H}<FromUserName>o_demo_zhangwei_hp01</FromUserName><MsgType>text</MsgType><MsgId>1</MsgId></xml>".encode(),
        f"<xml>{H.replace('o_x', 'o' * 65)}<MsgType>text</MsgType><Content>x</Content></xml>".encode(),
        f"<xml>{H}<MsgType>location</MsgType><Location_X>nan</Location_X><Location_Y>inf</Location_Y></xml>".encode(),
        f"<xml>{H}<MsgType>location</MsgType><Location_X>91</Location_X><Location_Y>1</Location_Y></xml>".encode(),
        f"<xml>{H}<MsgType>event</MsgType><Event>LOCATION</Event><Latitude>x</Latitude><Longitude>1</Longitude></xml>".encode(),
        f"<xml>{H}<MsgType>image</MsgType><MediaId>{'m' * 201}</MediaId><MsgId>1</MsgId></xml>".encode(),
    ],
    ids=[
        "latin-1",
        "utf-16",
        "createtime-text",
        "createtime-huge",
        "msgid-huge",
        "content-nested",
        "sender-repeated",
        "sender-too-long",
        "location-nan",
        "location-off-the-globe",
        "event-latitude-text",
        "media-id-too-long",
    ],
)
def test_malformed_fields_are_a_400_not_a_crash_later(body: bytes) -> None:
    """Once a 500 or a crash inside the handlers (wechatpy trusts the XML's shape); now a 400."""
    with pytest.raises(ProtocolError) as refused:
        PLAIN.parse(plain_query(nonce=nonce_for(body)), body, NOW)
    assert refused.value.status == 400


# --- the command parser, called directly ----------------------------------------------------------------

command_texts = st.one_of(
    st.text(),
    st.tuples(st.sampled_from(VERBS), st.text(max_size=40)).map("".join),
    st.tuples(
        st.sampled_from(VERBS),
        st.sampled_from(["", " ", "：", "＃", "#", " G", "Ｇ"]),
        st.from_regex(r"[0-9]{0,9}[-－—_]?[0-9]{0,7}", fullmatch=True),
        st.one_of(st.text(max_size=30), st.sampled_from(INJECTIONS)),
    ).map("".join),
)
KNOWN = set(VERBS) | set(ALIASES.values())


@given(command_texts)
def test_the_command_parser_never_raises_and_keeps_the_note_verbatim(text: str) -> None:
    cmd = parse_command(text)
    number = find_case_number(text)
    assert number is None or re.fullmatch(r"G\d{8}-\d{4,6}", number)
    where, why = split_target(text)
    assert isinstance(where, str) and isinstance(why, str)
    if cmd is None:
        return
    assert cmd.verb in KNOWN
    assert cmd.number is None or re.fullmatch(r"G\d{8}-\d{4,6}", cmd.number)
    assert cmd.ref is None or 0 <= cmd.ref < 10**6
    assert cmd.note in text  # a slice of what was typed: nothing rewritten, nothing evaluated


@given(st.one_of(st.text(max_size=40), st.from_regex(r"(到|至)?\d{1,5}[-/.年月]\d{1,3}[-/.月日]?\d{0,3}[日号]?.*")))
def test_dates_in_commands_parse_or_are_a_date_error(note: str) -> None:
    today = date(2026, 11, 22)
    try:
        day, rest = parse_until(note, now=NOW, zone=ZoneInfo("Asia/Shanghai"))
    except DateError:
        return
    assert day > today and rest in note


# --- the webhooks, through the app ------------------------------------------------------------------------


async def row_counts(app: Any) -> dict[str, int]:
    async with transaction(app[FACTORY]) as session:
        return {
            t.__tablename__: int((await session.exec(select(func.count()).select_from(t))).one())  # type: ignore[arg-type]
            for t in ALL_TABLES
        }


async def everything_stored(app: Any) -> str:
    """Every row of every table, as text: to look for what must never have been stored."""
    async with transaction(app[FACTORY]) as session:
        rows = [repr(row) for t in ALL_TABLES for row in (await session.exec(select(t))).all()]
    return "\n".join(rows)


async def failed_messages(app: Any) -> int:
    async with transaction(app[FACTORY]) as session:
        stmt = select(func.count()).select_from(InboundMessage).where(InboundMessage.status == "failed")
        return int((await session.exec(stmt)).one())


def assert_refused(status: int, text: str) -> None:
    assert status in REFUSALS, (status, text)
    assert "Traceback" not in text and "Error" not in text and 'File "' not in text


QUERY_MANGLES = ("drop-signature", "drop-timestamp", "drop-nonce", "wrong-signature", "other-token", "stale", "future",
                 "not-a-number", "float", "empty")  # fmt: skip


def mangle_query(query: dict[str, str], how: str, now: int, skew: int) -> dict[str, str]:
    """A request WeChat did not sign as it stands (or signed too long ago)."""
    query = dict(query)
    if how.startswith("drop-"):
        query.pop(how[5:], None)
    elif how == "wrong-signature":
        query["signature"] = query["msg_signature"] = "0" * 40
    elif how == "other-token":
        query["signature"] = sha1_signature("guessed-token", query["timestamp"], query["nonce"])
    elif how in ("stale", "future"):
        ts = str(now - skew if how == "stale" else now + skew)
        query["timestamp"], query["signature"] = ts, sha1_signature(TOKEN, ts, query["nonce"])
        if "msg_signature" in query:  # the attacker cannot re-sign the ciphertext without the token…
            query["msg_signature"] = "0" * 40
    elif how in ("not-a-number", "float", "empty"):
        ts = {"not-a-number": "yesterday", "float": f"{now}.5", "empty": ""}[how]
        query["timestamp"], query["signature"] = ts, sha1_signature(TOKEN, ts, query["nonce"])
    return query


class TestPlainWebhook:
    @given(body=hostile_bodies)
    async def test_hostile_bodies_never_get_a_500_and_refusals_store_nothing(self, wechat: WeChat, body: bytes) -> None:
        before = await row_counts(wechat.app)
        query = plain_query(int(wechat.clock.now().timestamp()), nonce=nonce_for(body))
        resp = await wechat.client.post("/wechat", params=query, data=body)
        text = await resp.text()
        await wechat.app[RECEIVER].wait_idle()
        if resp.status != 200:
            assert_refused(resp.status, text)
            assert await row_counts(wechat.app) == before
        assert await failed_messages(wechat.app) == 0

    @given(
        how=st.sampled_from(QUERY_MANGLES),
        skew=st.integers(301, 10**9),
        sender=st.sampled_from([RESIDENT, LEADER_HP01]),
    )
    async def test_unsigned_stale_or_future_requests_are_refused_and_store_nothing(
        self, wechat: WeChat, how: str, skew: int, sender: str
    ) -> None:
        before = await row_counts(wechat.app)
        now = int(wechat.clock.now().timestamp())
        query, body = wechat.sim.sign(wechat.xml(sender, "text", {"Content": "我的工单"}), timestamp=now, mode="plain")
        resp = await wechat.client.post("/wechat", params=mangle_query(query, how, now, skew), data=body)
        assert_refused(resp.status, await resp.text())
        assert resp.status in (400, 403)
        assert await row_counts(wechat.app) == before


class TestSafeWebhook:
    @pytest.fixture
    def aes_key(self) -> str:
        return AES_KEY

    @given(inner=message_body(), how=st.sampled_from(("as-is", *QUERY_MANGLES)), skew=st.integers(301, 10**9))
    async def test_hostile_ciphertexts_never_get_a_500_and_refusals_store_nothing(
        self, wechat: WeChat, inner: bytes, how: str, skew: int
    ) -> None:
        before = await row_counts(wechat.app)
        now = int(wechat.clock.now().timestamp())
        encrypt = _encrypt(wechat.sim.crypto, inner, APPID)
        body = f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        query = encrypted_query(encrypt, now)
        if how != "as-is":
            query = mangle_query(query, how, now, skew)
        resp = await wechat.client.post("/wechat", params=query, data=body.encode())
        text = await resp.text()
        await wechat.app[RECEIVER].wait_idle()
        if resp.status != 200 or how != "as-is":
            assert_refused(resp.status, text)
            assert await row_counts(wechat.app) == before
        assert await failed_messages(wechat.app) == 0


class TestWeComCallback:
    @pytest.fixture
    def wecom_on(self) -> bool:
        return True

    @given(
        inner=message_body(to=WECOM_CORP_ID), tamper=st.sampled_from(["none", "signature", "stale", "future", "body"])
    )
    async def test_hostile_callbacks_never_get_a_500_and_refusals_store_nothing(
        self, wecom: WeCom, inner: bytes, tamper: str
    ) -> None:
        before = await row_counts(wecom.app)
        now = wecom.now()
        ts = {"stale": now - 301, "future": now + 301}.get(tamper, now)
        encrypt = _encrypt(wecom.sim.crypto, inner, WECOM_CORP_ID)
        signed = sha1_signature(WECOM_TOKEN, str(ts), "n0nce", encrypt)
        query = {"timestamp": str(ts), "nonce": "n0nce", "msg_signature": "0" * 40 if tamper == "signature" else signed}
        if tamper == "body":  # a valid signature, over another ciphertext
            encrypt = _encrypt(wecom.sim.crypto, b"<xml><FromUserName>boss</FromUserName></xml>", WECOM_CORP_ID)
        body = (
            f"<xml><ToUserName><![CDATA[{WECOM_CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        resp = await wecom.client.post("/wecom", params=query, data=body.encode())
        text = await resp.text()
        await wecom.app[RECEIVER].wait_idle()
        if resp.status != 200 or tamper != "none":
            assert_refused(resp.status, text)
            assert await row_counts(wecom.app) == before
        assert await failed_messages(wecom.app) == 0


# --- specific attacks ------------------------------------------------------------------------------------

SECRET = "gridbot-secret-from-the-server-disk-4f1c"


def xxe_message(path: Path, sender: str = RESIDENT, to: str = "gh_test") -> str:
    return (
        f'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file://{path}">]>'
        f"<xml><ToUserName>{to}</ToUserName><FromUserName>{sender}</FromUserName><CreateTime>{TS}</CreateTime>"
        "<MsgType>text</MsgType><Content>幸福里小区路灯坏了&e;</Content><MsgId>77</MsgId></xml>"
    )


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + f"]><xml><ToUserName>gh_test</ToUserName><FromUserName>{RESIDENT}</FromUserName><CreateTime>{TS}</CreateTime>"
    "<MsgType>text</MsgType><Content>&lol9;</Content><MsgId>78</MsgId></xml>"
)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


async def assert_secret_never_read(app: Any, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
    assert SECRET not in await everything_stored(app)


async def test_an_external_entity_is_never_read_in_plain_mode(wechat: WeChat, secret_file: Path) -> None:
    status, body = await wechat.post(xxe_message(secret_file), mode="plain")
    assert_refused(status, body)
    await wechat.deliver()
    await assert_secret_never_read(wechat.app, body, *wechat.fake.texts_to(RESIDENT))
    assert await wechat.cases() == []


class TestEncryptedEntities:
    @pytest.fixture
    def aes_key(self) -> str:
        return AES_KEY

    @pytest.mark.parametrize("mode", ["safe", "compatible"])
    async def test_an_external_entity_inside_the_ciphertext_is_never_read(
        self, wechat: WeChat, secret_file: Path, mode: str
    ) -> None:
        status, body = await wechat.post(xxe_message(secret_file), mode=mode)
        assert_refused(status, body)
        await assert_secret_never_read(wechat.app, body)
        assert await wechat.cases() == []

    async def test_a_billion_laughs_inside_the_ciphertext_is_refused_unexpanded(self, wechat: WeChat) -> None:
        before = await row_counts(wechat.app)
        status, body = await wechat.post(BOMB, mode="safe")
        assert_refused(status, body)
        assert "lollol" not in body and await row_counts(wechat.app) == before

    @pytest.mark.parametrize(
        "inner",
        [
            "<xml><ToUserName>gh_test</ToUserName><FromUserName>o_x</FromUserName>",  # cut short
            "<xml><MsgType>text</MsgType></xml><xml/>",  # two roots
            "not xml at all",
            "<xml><Content>\x01</Content></xml>",  # a control character XML forbids
            '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml><MsgType>text</MsgType></xml>',
        ],
    )
    async def test_a_ciphertext_that_is_not_a_wellformed_message_is_refused(self, wechat: WeChat, inner: str) -> None:
        """The decrypted message is parsed once, by wechatpy's parser: what it cannot parse is a 400."""
        before = await row_counts(wechat.app)
        status, body = await wechat.post(inner, mode="safe")
        assert_refused(status, body)
        assert await row_counts(wechat.app) == before


class TestWeComEntities:
    @pytest.fixture
    def wecom_on(self) -> bool:
        return True

    async def test_entities_inside_a_wecom_ciphertext_are_refused(self, wecom: WeCom, secret_file: Path) -> None:
        before = await row_counts(wecom.app)
        for xml in (xxe_message(secret_file, "zhangwei", WECOM_CORP_ID), BOMB):
            status, body = await wecom.post(xml)
            assert_refused(status, body)
            await assert_secret_never_read(wecom.app, body)
        assert await row_counts(wecom.app) == before

    async def test_a_huge_wecom_body_is_refused_unread(self, wecom: WeCom) -> None:
        resp = await wecom.client.post(
            "/wecom", params={"timestamp": "1"}, data=io.BytesIO(b"<xml>" + b"A" * 4_000_000)
        )
        assert resp.status == 413


async def test_a_body_of_several_megabytes_is_refused_without_being_stored(wechat: WeChat) -> None:
    """aiohttp's own client_max_size (1 MiB by default) is set by the app to max_body_bytes + 1 KiB;
    the webhook stops reading past max_body_bytes (64 KiB), sized or chunked."""
    before = await row_counts(wechat.app)
    xml = wechat.xml(RESIDENT, "text", {"Content": "路" * 2_000_000})
    query, body = wechat.sim.sign(xml, timestamp=int(wechat.clock.now().timestamp()))
    sized = await wechat.client.post("/wechat", params=query, data=io.BytesIO(body))

    async def pieces() -> Any:
        for at in range(0, len(body), 65536):
            yield body[at : at + 65536]

    chunked = await wechat.client.post("/wechat", params=query, data=pieces())
    assert (sized.status, chunked.status) == (413, 413)
    assert await row_counts(wechat.app) == before


async def test_a_body_that_arrives_in_pieces_is_read_whole(wechat: WeChat) -> None:
    """Once read with one content.read(n), which returns what has arrived so far: a message sent in
    several TCP segments was cut short and refused as malformed XML."""
    import asyncio

    xml = wechat.xml(RESIDENT, "text", {"Content": "幸福里小区3号楼东侧路灯坏了，" + "麻烦尽快修理。" * 400})
    query, body = wechat.sim.sign(xml, timestamp=int(wechat.clock.now().timestamp()))

    async def pieces() -> Any:
        for at in range(0, len(body), 1000):
            yield body[at : at + 1000]
            for _ in range(5):
                await asyncio.sleep(0)  # let the server run between pieces (no wall-clock wait)

    resp = await wechat.client.post("/wechat", params=query, data=pieces())
    assert resp.status == 200, await resp.text()
    assert "已受理" in (wechat.sim.read_reply(await resp.text()) or "")
    assert len(await wechat.cases()) == 1


async def open_case(wechat: WeChat) -> Any:
    await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了")
    [case] = await wechat.cases()
    return case


async def test_a_leaders_openid_in_an_unsigned_body_changes_nothing(wechat: WeChat) -> None:
    case = await open_case(wechat)
    await wechat.deliver()
    before = await row_counts(wechat.app)
    now = int(wechat.clock.now().timestamp())
    forged = wechat.xml(LEADER_HP01, "text", {"Content": f"办结 {case.number} 已修好"})
    for how in ("wrong-signature", "other-token", "drop-signature", "stale"):
        query, body = wechat.sim.sign(forged, timestamp=now, mode="plain")
        resp = await wechat.client.post("/wechat", params=mangle_query(query, how, now, 3600), data=body)
        assert_refused(resp.status, await resp.text())
    assert await row_counts(wechat.app) == before
    [after] = await wechat.cases()
    assert after.status == case.status


class TestSafeModeForgery:
    @pytest.fixture
    def aes_key(self) -> str:
        return AES_KEY

    async def test_plaintext_fields_beside_the_ciphertext_are_not_believed(self, wechat: WeChat) -> None:
        """Compatible mode carries plaintext fields beside the ciphertext: only the ciphertext is
        signed, so a leader's openid written in the plaintext part is ignored."""
        case = await open_case(wechat)
        now = int(wechat.clock.now().timestamp())
        xml = wechat.xml(RESIDENT, "text", {"Content": "你好"})
        query, body = wechat.sim.sign(xml, timestamp=now, mode="compatible")
        forged = body.replace(RESIDENT.encode(), LEADER_HP01.encode()).replace(
            b"\xe4\xbd\xa0\xe5\xa5\xbd", f"办结 {case.number} 已修好".encode()
        )
        resp = await wechat.client.post("/wechat", params=query, data=forged)
        assert resp.status == 200
        [after] = await wechat.cases()
        assert after.status == case.status  # the resident's "你好", not the leader's 办结
        async with transaction(wechat.app[FACTORY]) as session:
            senders = {r.sender for r in (await session.exec(select(InboundMessage))).all()}
        assert senders == {RESIDENT}

    async def test_another_ciphertext_under_a_captured_signature_is_refused(self, wechat: WeChat) -> None:
        case = await open_case(wechat)
        before = await row_counts(wechat.app)
        now = int(wechat.clock.now().timestamp())
        query, _ = wechat.sim.sign(wechat.xml(RESIDENT, "text", {"Content": "你好"}), timestamp=now, mode="safe")
        _, other = wechat.sim.sign(
            wechat.xml(LEADER_HP01, "text", {"Content": f"办结 {case.number} 已修好"}), timestamp=now, mode="safe"
        )
        resp = await wechat.client.post("/wechat", params=query, data=other)
        assert resp.status == 403
        assert await row_counts(wechat.app) == before

    async def test_a_signed_message_replayed_after_the_window_is_refused(self, wechat: WeChat) -> None:
        now = int(wechat.clock.now().timestamp())
        query, body = wechat.sim.sign(wechat.xml(RESIDENT, "text", {"Content": "幸福里小区路灯坏了"}), timestamp=now)
        assert (await wechat.client.post("/wechat", params=query, data=body)).status == 200
        assert (await wechat.client.post("/wechat", params=query, data=body)).status == 200  # WeChat's retry
        before = await row_counts(wechat.app)
        wechat.clock.advance(seconds=301)
        resp = await wechat.client.post("/wechat", params=query, data=body)
        assert resp.status == 403 and await row_counts(wechat.app) == before
        assert len(await wechat.cases()) == 1


async def test_a_timestamp_from_the_future_is_refused(wechat: WeChat) -> None:
    xml = wechat.xml(RESIDENT, "text", {"Content": "幸福里小区路灯坏了"})
    query, body = wechat.sim.sign(xml, timestamp=int(wechat.clock.now().timestamp()) + 301)
    resp = await wechat.client.post("/wechat", params=query, data=body)
    assert resp.status == 403 and await wechat.cases() == []


async def test_a_thousand_forged_requests_leave_no_trace(wechat: WeChat) -> None:
    """Distinct senders, message ids and bodies, none signed: nothing is stored, no resident made."""
    before = await row_counts(wechat.app)
    now = int(wechat.clock.now().timestamp())
    for n in range(1000):
        xml = wechat.xml(f"o_forged_{n}", "text", {"Content": f"垃圾 {n}"}, msg_id=10_000 + n)
        query, body = wechat.sim.sign(xml, timestamp=now, mode="plain")
        query = mangle_query(query, QUERY_MANGLES[n % len(QUERY_MANGLES)], now, 301 + n)
        resp = await wechat.client.post("/wechat", params=query, data=body)
        assert resp.status in (400, 403)
    assert await row_counts(wechat.app) == before


async def test_in_flight_work_is_forgotten_once_answered(wechat: WeChat) -> None:
    """The receiver's only per-message memory is its set of processing tasks: it empties when they
    finish (dedupe and handoff live in the database, not in dicts keyed by sender)."""
    for n in range(30):
        await wechat.text(f"o_resident_{n:02d}", f"幸福里小区{n + 1}号楼路灯坏了")
    await wechat.deliver()
    assert wechat.app[RECEIVER].tasks == set()


# --- the command parser and the handlers, through the app ----------------------------------------------

# What WeChat can carry: any character but lone surrogates and the control characters XML forbids.
typed = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\n\t"), max_size=80)
chat_texts = st.one_of(
    typed,
    st.sampled_from(INJECTIONS),
    st.tuples(st.sampled_from(VERBS), st.sampled_from(["", " ", "：", " #1 ", " G20261122-0001 "]), typed).map("".join),
).map(lambda t: t.replace("]]>", ""))


async def case_state(wechat: WeChat, case_id: int) -> tuple[Any, ...]:
    from storage.models import Case, CaseEvent, OutboxMessage

    async with transaction(wechat.app[FACTORY]) as session:
        case = await session.get(Case, case_id)
        assert case is not None
        events = (await session.exec(select(func.count()).where(CaseEvent.case_id == case_id))).one()
        pushes = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()
    return (case.status, case.grid_id, case.assignee_id, case.due_at, case.category, case.urgent, events, pushes)


class TestCommands:
    @given(text=chat_texts, who=st.sampled_from([LEADER_HP01, RESIDENT, "o_demo_wanglihua_xf"]))
    async def test_anything_typed_gets_a_polite_reply_never_a_crash(self, wechat: WeChat, text: str, who: str) -> None:
        wechat.clock.advance(minutes=2)  # past a resident's per-minute limit
        status, body = await wechat.post(wechat.xml(who, "text", {"Content": text}))
        assert status == 200, body
        reply = wechat.sim.read_reply(body)
        assert reply is None or (isinstance(reply, str) and reply != PROCESSING_FAILED)
        await wechat.app[RECEIVER].wait_idle()
        assert await failed_messages(wechat.app) == 0

    @given(
        verb=st.sampled_from(VERBS),
        note=st.one_of(st.sampled_from(INJECTIONS), typed).map(lambda t: t.replace("]]>", "")),
    )
    async def test_a_leader_commanding_another_grids_case_changes_nothing(
        self, wechat: WeChat, verb: str, note: str
    ) -> None:
        cases = await wechat.cases()
        case = cases[0] if cases else await open_case(wechat)
        before = await case_state(wechat, case.id)
        reply = await wechat.text(LEADER_CH01, f"{verb} {case.number} {note}")
        await wechat.deliver()
        assert reply is not None and reply != PROCESSING_FAILED
        assert await case_state(wechat, case.id) == before
        if verb in ("接单", "接收", "进展", "办结", "退回", "上报", "挂起", "延期", "转派", "工单", "拒收", "返工"):
            assert "不在您负责的范围内" in reply, reply

    async def test_injection_text_is_stored_verbatim_and_never_evaluated(self, wechat: WeChat) -> None:
        report = "幸福里小区3号楼路灯坏了 " + " ".join(INJECTIONS[:8])
        await wechat.text(RESIDENT, report)
        [case] = await wechat.cases()
        for injected in INJECTIONS[:8]:
            assert injected in case.description
        reply = await wechat.text(LEADER_HP01, f"工单 {case.number}")
        assert reply is not None and "{{7*7}}" in reply and "<script>alert(1)</script>" in reply
        assert "49" not in reply.replace(case.number, "")
        found = await wechat.text(LEADER_HP01, "工单 '; DROP TABLE cases;--")
        assert found is not None and found != PROCESSING_FAILED
        assert len(await wechat.cases()) == 1  # the table is still there, and still one case


# --- a signed plaintext query used again with another body -----------------------------------------------


async def test_a_captured_plaintext_query_cannot_carry_a_leaders_message(wechat: WeChat) -> None:
    """Plaintext mode signs the timestamp and nonce, not the body: a signed URL read from a proxy's
    log once carried any body for five minutes. Now the query is good for its own body only."""
    case = await open_case(wechat)
    await wechat.deliver()
    now = int(wechat.clock.now().timestamp())
    query, body = wechat.sim.sign(wechat.xml(RESIDENT, "text", {"Content": "谢谢"}), timestamp=now, mode="plain")
    first = await wechat.client.post("/wechat", params=query, data=body)
    assert first.status == 200
    retry = await wechat.client.post("/wechat", params=query, data=body)  # WeChat's retry: same body
    assert retry.status == 200 and await retry.text() == await first.text()
    before = await row_counts(wechat.app)
    forged = wechat.xml(LEADER_HP01, "text", {"Content": f"办结 {case.number} 已修好"})
    replay = await wechat.client.post("/wechat", params=query, data=forged.encode())
    assert replay.status == 403
    assert await row_counts(wechat.app) == before
    [after] = await wechat.cases()
    assert after.status == case.status


async def test_the_memory_of_signed_queries_is_bounded_by_the_window(wechat: WeChat) -> None:
    from bot.app import TRANSPORT

    for n in range(80):
        await wechat.text(RESIDENT if n % 2 else "o_resident_li", f"第{n}条")
        wechat.clock.advance(seconds=30)
    # Two windows of 300 s hold 20 queries at one every 30 s; nothing older is kept.
    assert len(wechat.app[TRANSPORT].seen) <= 21


def test_the_memory_of_signed_queries_has_a_hard_cap() -> None:
    from bot.wechat import SeenQueries

    seen = SeenQueries(window=300, cap=50)
    for n in range(1000):
        assert seen.first_or_same(f"sig{n}", b"body", now=float(TS))
    assert len(seen) <= 50
    assert not seen.first_or_same("sig999", b"another body", now=float(TS))
