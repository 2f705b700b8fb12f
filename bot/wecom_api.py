"""Outbound calls to the WeCom API (qyapi.weixin.qq.com), async with timeouts; errors become meanings.

- app messages (应用消息, /cgi-bin/message/send) to a member's user id, with the app's token;
- temporary media (/cgi-bin/media/get): the photos WeCom staff send the app;
- group robot posts (/cgi-bin/webhook/send?key=KEY): no token, the key is the credential.

The token and the robot keys are credentials: they never appear in a Result's detail, which is
stored in the outbox as the last error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import aiohttp

from bot.tokens import SharedTokens, TokenError
from bot.wechat_api import Result, Verdict, call_failed, fetch_media, redact
from handlers.pushes import ROBOT_MARKDOWN_BYTES, ROBOT_TEXT_BYTES, split_utf8

log = logging.getLogger("gridbot.wecom_api")

# App message text (and markdown) content: at most 2,048 bytes; WeCom cuts off the rest.
APP_TEXT_BYTES = 2048

# errcode → meaning (https://developer.work.weixin.qq.com/document/path/90313)
_TOKEN_ERRORS = {40001, 40014, 42001}
_QUOTA_ERRORS = {45009, 45033}  # API call frequency / concurrency limits
_TRANSIENT_ERRORS = {-1}  # system busy
_INVALID_USER = {60111, 81013}  # no such user id; every recipient invalid or out of the app's range
_INVALID_ROBOT = {93000}  # the webhook key is not (or no longer) valid


def classify(errcode: int, errmsg: str = "") -> Result:
    if errcode == 0:
        return Result(Verdict.SENT)
    detail = f"{errcode} {errmsg}".strip()[:200]
    if errcode in _TOKEN_ERRORS:
        return Result(Verdict.REFRESH_TOKEN, detail)
    if errcode in _QUOTA_ERRORS:
        return Result(Verdict.BACK_OFF, detail)
    if errcode in _TRANSIENT_ERRORS:
        return Result(Verdict.RETRY, detail)
    if errcode in _INVALID_USER:
        return Result(Verdict.PARK, f"invalid user: {detail}")
    if errcode in _INVALID_ROBOT:
        return Result(Verdict.PARK, f"invalid robot key: {detail}")
    return Result(Verdict.PARK, detail)


class WeComAPI:
    """One self-built app. Its access token is shared with every other process (bot/tokens.py)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        base: str,
        corp_id: str,
        secret: str,
        agent_id: int,
        tokens: SharedTokens,
        timeout: float,
    ) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.corp_id = corp_id
        self.secret = secret
        self.agent_id = agent_id
        self.tokens = tokens
        # A token belongs to one app (its secret) of one corp.
        self.token_key = f"wecom:{corp_id}:{agent_id}"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # Long texts go out as several messages: how many pieces of a payload already went, so a
        # retry after a failed piece does not repeat the earlier ones (kept for this process only).
        self._pieces_sent: dict[tuple[str, str], int] = {}

    async def access_token(self, *, stale: str | None = None) -> str:
        """The shared token; stale: the one WeCom just refused (40001/40014/42001)."""
        return await self.tokens.get(self.token_key, self._fetch_token, stale=stale)

    async def _fetch_token(self) -> tuple[str, int]:
        params = {"corpid": self.corp_id, "corpsecret": self.secret}
        try:
            async with self.http.get(self.base + "/cgi-bin/gettoken", params=params, timeout=self.timeout) as resp:
                resp.raise_for_status()
                data = dict(await resp.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenError(self._safe(f"{type(exc).__name__}: {exc}")) from exc
        if int(data.get("errcode", 0)) != 0 or "access_token" not in data:
            raise TokenError(self._safe(f"{data.get('errcode')} {data.get('errmsg', '')}".strip()))
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    async def send_app(self, recipient: str, payload: dict[str, Any]) -> Result:
        """应用消息 to one member (recipient: their user id). Text and markdown over 2,048 bytes go
        out as several messages, in order."""
        pieces = app_pieces(payload)
        progress_key = (recipient, hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest())
        for i in range(self._pieces_sent.get(progress_key, 0), len(pieces)):
            body = {"touser": recipient, "agentid": self.agent_id, **pieces[i]}
            result = await self._call_with_token("/cgi-bin/message/send", body)
            if result.verdict is not Verdict.SENT:
                if i:
                    self._pieces_sent[progress_key] = i
                return result
        self._pieces_sent.pop(progress_key, None)
        return Result(Verdict.SENT)

    async def _call_with_token(self, path: str, body: dict[str, Any]) -> Result:
        """POST with the token, refreshing it once when WeCom says it is stale."""
        result = Result(Verdict.RETRY)
        stale: str | None = None
        for _ in range(2):
            token = ""
            try:
                token = await self.access_token(stale=stale)
                async with self.http.post(
                    self.base + path, params={"access_token": token}, json=body, timeout=self.timeout
                ) as resp:
                    resp.raise_for_status()
                    data = dict(await resp.json(content_type=None))
            except TokenError as exc:
                return Result(Verdict.RETRY, f"token: {exc}")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return call_failed(exc, self._safe(f"{type(exc).__name__}: {exc}", token))
            result = classify(int(data.get("errcode", 0)), str(data.get("errmsg", "")))
            if result.verdict is Verdict.SENT and body.get("touser") in _ids(data.get("invaliduser")):
                # errcode 0 with the recipient listed as invalid: not a member (any more), or not in the app's range.
                return Result(Verdict.PARK, "invalid user: not in the app's visible range")
            if result.verdict is not Verdict.REFRESH_TOKEN:
                return result
            stale = token
        return Result(Verdict.RETRY, result.detail)

    async def fetch_media(self, media_id: str) -> tuple[Result, bytes, str]:
        """临时素材: /cgi-bin/media/get with the app's token. The verdict, the bytes, the content type."""
        return await fetch_media(
            self.http,
            self.base + "/cgi-bin/media/get",
            media_id,
            token=lambda stale: self.access_token(stale=stale),
            classify=classify,
            describe=lambda exc, token: self._safe(f"{type(exc).__name__}: {exc}", token),
            client_timeout=self.timeout,
        )

    def _safe(self, text: str, token: str = "") -> str:
        return redact(text, token, self.secret)[:200]


class WeComRobot:
    """Group robots (群机器人 / 消息推送): recipient is the robot's key, the payload the message."""

    def __init__(self, http: aiohttp.ClientSession, *, base: str, timeout: float) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, recipient: str, payload: dict[str, Any]) -> Result:
        too_long = _robot_oversize(payload)
        if too_long:  # handlers.groups splits posts; anything still too long would be refused
            return Result(Verdict.PARK, too_long)
        try:
            async with self.http.post(
                self.base + "/cgi-bin/webhook/send", params={"key": recipient}, json=payload, timeout=self.timeout
            ) as resp:
                resp.raise_for_status()
                data = dict(await resp.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return call_failed(exc, redact(f"{type(exc).__name__}: {exc}", recipient)[:200])
        result = classify(int(data.get("errcode", 0)), str(data.get("errmsg", "")))
        if result.verdict is Verdict.REFRESH_TOKEN:  # robots have no token to refresh: the key is bad
            return Result(Verdict.PARK, f"invalid robot key: {result.detail}")
        return Result(result.verdict, redact(result.detail, recipient))


def app_pieces(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The app messages a payload goes out as: text and markdown cut to 2,048 bytes each."""
    kind = payload.get("msgtype")
    if kind not in ("text", "markdown"):
        return [payload]
    content = str(payload[kind].get("content", ""))
    return [{**payload, kind: {**payload[kind], "content": c}} for c in split_utf8(content, APP_TEXT_BYTES)]


def _robot_oversize(payload: dict[str, Any]) -> str:
    kind = str(payload.get("msgtype"))
    limit = {"text": ROBOT_TEXT_BYTES, "markdown": ROBOT_MARKDOWN_BYTES}.get(kind)
    if limit is None:
        return ""
    size = len(str(payload[kind].get("content", "")).encode())
    return f"{kind} content is {size} bytes, over the robot's {limit}" if size > limit else ""


def _ids(value: Any) -> set[str]:
    """WeCom lists invalid recipients as "id1|id2"."""
    return set(str(value).split("|")) if value else set()
