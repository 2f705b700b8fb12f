"""The Official Account webhook protocol: signatures, replay window, AES safe mode, XML in and out.

Nothing else in the code knows XML. Untrusted bodies are checked with defusedxml (no DTD, so no
entity expansion) before wechatpy's parser sees them; a decrypted message (from WeChat: it
decrypted with our key) only by wechatpy's parser, which refuses entity declarations itself.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.parsers.expat import ExpatError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from handlers.types import Inbound

# What wechatpy's decryption raises on a ciphertext that is not one (short, badly padded, not
# base64, for another app id): a 400, never a crash.
DECRYPT_ERRORS = (InvalidAppIdException, ValueError, TypeError, IndexError, KeyError, struct.error)


class ProtocolError(Exception):
    """A request WeChat did not send (or sent too late): answered with `status`, never processed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Parsed:
    msg: Inbound
    dedupe_key: str
    account: str  # our ToUserName, the sender of the reply
    encrypted: bool
    nonce: str


class SeenQueries:
    """The signed queries of plaintext requests seen lately, each with a digest of its body.

    In plaintext mode the signature covers the token, timestamp and nonce — not the body. Whoever
    reads one signed URL (a proxy's access log keeps query strings) could post any body with it,
    any FromUserName, a leader's too, until the replay window closes. A query comes once, with
    one body; WeChat's retry sends the same body and passes. Entries live two windows (a timestamp
    may be a window ahead of now), and there are at most `cap` of them, oldest dropped first.
    One process's memory: with several processes a replay may reach another one (safe mode,
    where the signature covers the ciphertext, is the complete answer)."""

    def __init__(self, window: int, cap: int = 100_000) -> None:
        self.window = window
        self.cap = cap
        self._seen: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def first_or_same(self, key: str, body: bytes, now: float) -> bool:
        """Record the query; False when it came before with another body."""
        while self._seen:
            oldest, (at, _) = next(iter(self._seen.items()))
            if at > now - 2 * self.window and len(self._seen) < self.cap:
                break
            del self._seen[oldest]
        digest = hashlib.sha256(body).digest()
        prior = self._seen.get(key)
        if prior is not None:
            return prior[1] == digest
        self._seen[key] = (now, digest)
        return True


class WeChatTransport:
    def __init__(self, *, token: str, appid: str, aes_key: str, replay_window: int, max_body: int) -> None:
        self.token = token
        self.replay_window = replay_window
        self.max_body = max_body
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key else None
        self.seen = SeenQueries(replay_window)

    def verify_url(self, query: dict[str, str], now: datetime) -> str:
        """GET /wechat: the URL check in the console; echostr goes back unchanged (in every mode)."""
        self._check_signature(query)
        return query.get("echostr", "")

    def parse(self, query: dict[str, str], body: bytes, now: datetime) -> Parsed:
        if len(body) > self.max_body:
            raise ProtocolError(413, "body too large")
        self._check_signature(query)
        check_fresh(query, now, self.replay_window)
        nonce = query.get("nonce", "")
        encrypted = query.get("encrypt_type", "raw") == "aes"
        outer = safe_xml(body)
        if encrypted and self.crypto is not None:
            try:
                # The envelope as already parsed (wechatpy takes its fields as a dict): not parsed twice.
                envelope = {"Encrypt": outer.findtext("Encrypt") or ""}
                xml = self.crypto.decrypt_message(envelope, query.get("msg_signature", ""), query["timestamp"], nonce)
            except InvalidSignatureException as exc:
                raise ProtocolError(403, "bad msg_signature") from exc
            except DECRYPT_ERRORS as exc:
                raise ProtocolError(400, "cannot decrypt") from exc
            # Not parsed a second time here (0.08 ms, 7 % of a message's CPU under load): what
            # decrypted with our key and matched its signature came from WeChat, and wechatpy's
            # parser (xmltodict, disable_entities) refuses entity declarations by itself.
        elif outer.find("MsgType") is not None:
            # Plaintext mode, or compatible mode on a server without the AES key: the plain fields.
            try:
                xml = body.decode("utf-8")  # WeChat writes UTF-8, whatever an XML declaration says
            except UnicodeDecodeError as exc:
                raise ProtocolError(400, "not UTF-8") from exc
            encrypted = False
            if not self.seen.first_or_same(query.get("signature", ""), body, now.timestamp()):
                raise ProtocolError(403, "signed query reused with another body")
        else:
            raise ProtocolError(400, "encrypted message but GRIDBOT_WECHAT_AES_KEY is not set")
        try:
            message = parse_message(xml)
        except (KeyError, AttributeError, ValueError, TypeError, ExpatError) as exc:
            raise ProtocolError(400, "not a WeChat message") from exc
        if message is None or not message.source:
            raise ProtocolError(400, "not a WeChat message")
        return Parsed(to_inbound(message), dedupe_key(message), account_of(message), encrypted, nonce)

    def render(self, parsed: Parsed, text: str | None, now: datetime) -> str:
        """The passive reply; "success" when there is nothing to say (WeChat shows nothing)."""
        if not text:
            return "success"
        ts = int(now.timestamp())
        xml = TextReply(source=parsed.account, target=parsed.msg.sender, content=text, time=ts).render()
        if parsed.encrypted and self.crypto is not None:
            return str(self.crypto.encrypt_message(xml, parsed.nonce, ts))
        return str(xml)

    def _check_signature(self, query: dict[str, str]) -> None:
        try:
            check_signature(self.token, query.get("signature", ""), query.get("timestamp", ""), query.get("nonce", ""))
        except InvalidSignatureException as exc:
            raise ProtocolError(403, "bad signature") from exc


def check_fresh(query: dict[str, str], now: datetime, window: int) -> None:
    """The replay window: a signed request is only good for `window` seconds either side of now."""
    try:
        ts = int(query.get("timestamp", ""))
    except ValueError as exc:
        raise ProtocolError(400, "bad timestamp") from exc
    if abs(now.timestamp() - ts) > window:
        raise ProtocolError(403, "stale timestamp (replay?)")


def safe_xml(body: bytes) -> Any:
    """Parse untrusted XML with defusedxml (no DTD, no entities) before anything else reads it."""
    try:
        return SafeET.fromstring(body, forbid_dtd=True)
    except (DefusedXmlException, ParseError, ValueError) as exc:
        raise ProtocolError(400, "malformed or dangerous XML") from exc


def dedupe_key(message: BaseMessage, prefix: str = "") -> str:
    """FromUserName+MsgId (MsgIds collide across users); events have none: +CreateTime+Event.

    Official Account keys have no prefix (openids never contain ":"), so keys stored before WeCom
    existed still match their retries; other transports pass one (WeCom: "wecom:") so that their
    senders' ids can never collide with an openid's.
    """
    if message.id:
        return f"{prefix}{message.source}:{message.id}"
    event = getattr(message, "event", "") or message.type
    return f"{prefix}{message.source}:{message.time}:{event}"


# What the database can hold (storage.models): longer is not from WeChat. The dedupe key (200)
# cannot overflow: MAX_SENDER + a 64-bit MsgId, or + CreateTime + a known event name.
MAX_SENDER = 64  # openids are 28 characters, WeCom user ids at most 64
MAX_MEDIA_ID = 200  # case_event.media_id
MAX_LABEL = 500  # a pin's place name becomes cases.place_text
_MAX_MSG_ID = 2**64  # MsgId is a 64-bit number
_FIELD_ERRORS = (ValueError, TypeError, OverflowError, OSError)


def to_inbound(message: BaseMessage, channel: str = "wechat") -> Inbound:
    """wechatpy's message (Official Account or WeCom: same fields) as the handlers' Inbound.

    wechatpy converts lazily and trusts the XML's shape: a repeated element comes back as a list,
    a nested one as a dict, CreateTime as whatever int() makes of it. Here every field is checked
    for the type the handlers trust, so a malformed message is a 400, not a crash later on."""
    try:
        return _to_inbound(message, channel)
    except _FIELD_ERRORS as exc:
        raise ProtocolError(400, "malformed message fields") from exc


def _to_inbound(message: BaseMessage, channel: str) -> Inbound:
    sender = _text(message.source)
    if not sender or len(sender) > MAX_SENDER:
        raise ValueError("FromUserName")
    msg_id = int(message.id or 0)
    if not 0 <= msg_id < _MAX_MSG_ID:
        raise ValueError("MsgId")
    base: dict[str, Any] = {
        "channel": channel,
        "sender": sender,
        "created_at": datetime.fromtimestamp(int(message.time or 0), UTC),
        "msg_id": msg_id or None,
    }
    kind = message.type
    if kind == "text":
        return Inbound(kind="text", text=_text(message.content) or "", **base)
    if kind == "image":
        return Inbound(kind="image", media_id=_media_id(message.media_id), url=_text(message.image), **base)
    if kind == "voice":
        media_id, recognition = _media_id(message.media_id), _text(message.recognition)
        return Inbound(kind="voice", media_id=media_id, text=recognition or None, **base)
    if kind == "location":
        lat, lon = _coords(message.location_x, message.location_y)
        label = (_text(message.label) or "")[:MAX_LABEL]
        return Inbound(kind="location", lat=lat, lon=lon, label=label or None, **base)
    if kind == "link":
        return Inbound(
            kind="link", title=_text(message.title), url=_text(message.url), text=_text(message.description), **base
        )
    if kind == "event":
        event = (_text(getattr(message, "event", "")) or "").lower()
        if event.startswith("subscribe"):
            event = "subscribe"  # also the qrscene_ variants
        pin: tuple[Any, Any] = (getattr(message, "latitude", None), getattr(message, "longitude", None))
        if pin != (None, None):
            pin = _coords(*pin)
        return Inbound(kind="event", event=event, lat=pin[0], lon=pin[1], **base)
    return Inbound(kind="unknown", **base)


def account_of(message: BaseMessage) -> str:
    """ToUserName: our account, the sender of the reply."""
    try:
        return _text(message.target) or ""
    except TypeError as exc:
        raise ProtocolError(400, "malformed ToUserName") from exc


def _text(value: Any) -> str | None:
    """A text field: a string or absent; an element with children (a dict) or repeated (a list) is
    not a field WeChat sends."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")


def _media_id(value: Any) -> str | None:
    media_id = _text(value)
    if media_id is not None and len(media_id) > MAX_MEDIA_ID:
        raise ValueError("MediaId")
    return media_id


def _coords(x: Any, y: Any) -> tuple[float, float]:
    try:
        lat, lon = float(x), float(y)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(400, "bad location") from exc
    if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
        raise ProtocolError(400, "bad location")
    return lat, lon


def message_xml(
    to: str,
    sender: str,
    msg_type: str,
    fields: dict[str, Any],
    *,
    create_time: int,
    msg_id: int | None,
    tail: dict[str, Any] | None = None,
) -> str:
    """A message as the WeChat (or WeCom) server writes it: the header, the type's fields, then MsgId
    (none on events) and any `tail` fields (WeCom's AgentID)."""
    parts = [
        f"<ToUserName><![CDATA[{to}]]></ToUserName>",
        f"<FromUserName><![CDATA[{sender}]]></FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>",
    ]
    extra = {**fields, **({"MsgId": msg_id} if msg_type != "event" and msg_id is not None else {}), **(tail or {})}
    for key, value in extra.items():
        parts.append(
            f"<{key}>{value}</{key}>" if isinstance(value, int | float) else f"<{key}><![CDATA[{value}]]></{key}>"
        )
    return "<xml>" + "".join(parts) + "</xml>"


class WeChatSimulator:
    """Plays the WeChat server: builds, signs and (in safe mode) encrypts messages exactly as WeChat
    does, and reads the replies. Used by `gridbot chat`, the tests and the benchmarks."""

    def __init__(self, *, token: str, appid: str, aes_key: str = "", account: str = "gh_gridbot_demo") -> None:
        self.token = token
        self.account = account
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key else None
        self._msg_id = int(time.time() * 1000)

    def next_msg_id(self) -> int:
        self._msg_id += 1
        return self._msg_id

    def xml(
        self,
        sender: str,
        msg_type: str,
        fields: dict[str, Any],
        *,
        create_time: int,
        msg_id: int | None = None,
    ) -> str:
        if msg_type != "event" and msg_id is None:
            msg_id = self.next_msg_id()
        return message_xml(self.account, sender, msg_type, fields, create_time=create_time, msg_id=msg_id)

    def sign(
        self, xml: str, *, timestamp: int, mode: str = "auto", nonce: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """Query string and body for one POST. mode: plain | compatible | safe | auto (by AES key)."""
        nonce = nonce or secrets.token_hex(5)
        if mode == "auto":
            mode = "safe" if self.crypto else "plain"
        query = {
            "timestamp": str(timestamp),
            "nonce": nonce,
            "openid": _sender(xml),
            "signature": sha1_signature(self.token, str(timestamp), nonce),
        }
        if mode == "plain":
            return query, xml.encode()
        assert self.crypto is not None, "compatible and safe modes need an AES key"
        encrypted = self.crypto.encrypt_message(xml, nonce, timestamp)
        envelope = SafeET.fromstring(encrypted)
        encrypt = envelope.find("Encrypt").text
        query.update(encrypt_type="aes", msg_signature=sha1_signature(self.token, str(timestamp), nonce, encrypt))
        if mode == "safe":
            body = (
                f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
            )
        else:  # compatible: plaintext fields and the ciphertext side by side
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        return query, body.encode()

    def verification_query(self, echostr: str, *, timestamp: int) -> dict[str, str]:
        nonce = secrets.token_hex(5)
        return {
            "signature": sha1_signature(self.token, str(timestamp), nonce),
            "timestamp": str(timestamp),
            "nonce": nonce,
            "echostr": echostr,
        }

    def read_reply(self, body: str) -> str | None:
        """The text of a passive reply, decrypting it in safe mode; None for "success"/empty."""
        if body in ("", "success"):
            return None
        root = SafeET.fromstring(body)
        if root.find("Encrypt") is not None:
            assert self.crypto is not None
            ts, nonce = root.findtext("TimeStamp"), root.findtext("Nonce")
            body = self.crypto.decrypt_message(body, root.findtext("MsgSignature"), ts, nonce)
            root = SafeET.fromstring(body)
        return root.findtext("Content")


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _sender(xml: str) -> str:
    # WeChat adds the sender's openid to the query; a regex keeps hostile test bodies unparsed here.
    m = re.search(r"<FromUserName>(?:<!\[CDATA\[)?([^<\]]*)", xml)
    return m.group(1) if m else ""
