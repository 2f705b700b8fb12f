"""The WeCom (企业微信) self-built app callback: signatures, replay window, AES, XML in and out.

Unlike the Official Account, every WeCom request is encrypted, the URL check included: the GET
carries an encrypted `echostr` whose plaintext is the answer. The receive id inside each ciphertext
is the corp id; a message for another corp cannot be decrypted as ours. Only the corp's members can
write to the app, so every sender is a user id (staff), never a resident's openid.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any

import defusedxml.ElementTree as SafeET
from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply

from bot.wechat import (
    DECRYPT_ERRORS,
    Parsed,
    ProtocolError,
    account_of,
    check_fresh,
    dedupe_key,
    message_xml,
    safe_xml,
    sha1_signature,
    to_inbound,
)

CHANNEL = "wecom"
DEDUPE_PREFIX = "wecom:"  # an inbound key of a WeCom message can never equal an Official Account one
_DECRYPT_ERRORS = (InvalidCorpIdException, *DECRYPT_ERRORS)


class WeComTransport:
    def __init__(
        self, *, token: str, corp_id: str, aes_key: str, agent_id: int, replay_window: int, max_body: int
    ) -> None:
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.replay_window = replay_window
        self.max_body = max_body
        self.crypto = WeChatCrypto(token, aes_key, corp_id)

    def verify_url(self, query: dict[str, str], now: datetime) -> str:
        """GET /wecom: the console's URL check. The answer is the decrypted echostr, bare."""
        # The query is already URL-decoded; base64 has no spaces, so a space was a "+" sent unescaped.
        echostr = query.get("echostr", "").replace(" ", "+")
        if not echostr:
            raise ProtocolError(400, "no echostr")
        try:
            plain = self.crypto.check_signature(
                query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", ""), echostr
            )
        except InvalidSignatureException as exc:
            raise ProtocolError(403, "bad msg_signature") from exc
        except _DECRYPT_ERRORS as exc:
            raise ProtocolError(400, "cannot decrypt echostr") from exc
        return str(plain)

    def parse(self, query: dict[str, str], body: bytes, now: datetime) -> Parsed:
        if len(body) > self.max_body:
            raise ProtocolError(413, "body too large")
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        encrypt = safe_xml(body).findtext("Encrypt")
        if not encrypt:
            raise ProtocolError(400, "no Encrypt element")
        if sha1_signature(self.crypto.token, timestamp, nonce, encrypt) != query.get("msg_signature", ""):
            raise ProtocolError(403, "bad msg_signature")
        check_fresh(query, now, self.replay_window)
        try:
            xml = self.crypto.decrypt_message({"Encrypt": encrypt}, query["msg_signature"], timestamp, nonce)
        except InvalidSignatureException as exc:  # checked above; kept so wechatpy's own check stays honoured
            raise ProtocolError(403, "bad msg_signature") from exc
        except _DECRYPT_ERRORS as exc:
            raise ProtocolError(400, "cannot decrypt") from exc
        inner = safe_xml(xml.encode())
        agent = (inner.findtext("AgentID") or "").strip()
        if agent and self.agent_id and agent != str(self.agent_id):
            raise ProtocolError(403, "message for another WeCom app (AgentID)")
        try:
            message = parse_message(xml)
        except (KeyError, AttributeError, ValueError, TypeError) as exc:
            raise ProtocolError(400, "not a WeCom message") from exc
        if message is None or not message.source:
            raise ProtocolError(400, "not a WeCom message")
        return Parsed(
            to_inbound(message, CHANNEL),
            dedupe_key(message, DEDUPE_PREFIX),
            account_of(message) or self.corp_id,
            True,
            nonce,
        )

    def render(self, parsed: Parsed, text: str | None, now: datetime) -> str:
        """The encrypted passive reply; an empty body when there is nothing to say."""
        if not text:
            return ""
        ts = int(now.timestamp())
        xml = TextReply(source=parsed.account, target=parsed.msg.sender, content=text, time=ts).render()
        return str(self.crypto.encrypt_message(xml, parsed.nonce, ts))


class WeComSimulator:
    """Plays the WeCom server: builds a member's message to the app, encrypts and signs it exactly as
    WeCom does, and decrypts the replies. Used by `gridbot chat`, the tests and the benchmarks."""

    def __init__(self, *, token: str, corp_id: str, aes_key: str, agent_id: int) -> None:
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.crypto = WeChatCrypto(token, aes_key, corp_id)
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
        agent_id: int | None = None,
    ) -> str:
        if msg_type != "event" and msg_id is None:
            msg_id = self.next_msg_id()
        agent = self.agent_id if agent_id is None else agent_id
        return message_xml(
            self.corp_id, sender, msg_type, fields, create_time=create_time, msg_id=msg_id, tail={"AgentID": agent}
        )

    def sign(self, xml: str, *, timestamp: int, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        """Query string and body of one callback POST: only the ciphertext travels."""
        nonce = nonce or secrets.token_hex(5)
        envelope = SafeET.fromstring(self.crypto.encrypt_message(xml, nonce, timestamp))
        encrypt = envelope.findtext("Encrypt")
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        query = {
            "msg_signature": envelope.findtext("MsgSignature"),
            "timestamp": str(timestamp),
            "nonce": nonce,
        }
        return query, body.encode()

    def verification_query(self, echo: str, *, timestamp: int) -> dict[str, str]:
        """The console's URL check: `echo` encrypted into echostr, signed."""
        nonce = secrets.token_hex(5)
        echostr = PrpCrypto(self.crypto.key).encrypt(echo, self.corp_id).decode()
        return {
            "msg_signature": sha1_signature(self.crypto.token, str(timestamp), nonce, echostr),
            "timestamp": str(timestamp),
            "nonce": nonce,
            "echostr": echostr,
        }

    def read_reply(self, body: str) -> str | None:
        """The text of a passive reply, decrypted; None for an empty body."""
        if not body:
            return None
        root = SafeET.fromstring(body)
        plain = self.crypto.decrypt_message(
            body, root.findtext("MsgSignature"), root.findtext("TimeStamp"), root.findtext("Nonce")
        )
        return SafeET.fromstring(plain).findtext("Content")
