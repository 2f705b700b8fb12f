"""Outbound calls to the WeChat API, async (aiohttp) with timeouts; errors become meanings."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import aiohttp

from bot.tokens import SharedTokens, TokenError

log = logging.getLogger("gridbot.wechat_api")

_CREDENTIAL_IN_URL = re.compile(r"(access_token|secret|corpsecret|key)=[^&\s'\")]+")


def redact(text: str, *credentials: str) -> str:
    """Error text safe to store (outbox.last_error) or log: credentials, and anything that looks like
    one in a URL (aiohttp puts the request URL in its errors), masked."""
    for credential in credentials:
        if credential:
            text = text.replace(credential, "***")
    return _CREDENTIAL_IN_URL.sub(r"\1=***", text)


def call_failed(exc: BaseException, detail: str) -> Result:
    """A call that got no answer to classify: an HTTP 4xx (but 408 and 429) will be refused again
    as it is (parked, with the reason); a timeout, a dropped connection or a 5xx is worth retrying."""
    if isinstance(exc, aiohttp.ClientResponseError) and 400 <= exc.status < 500 and exc.status not in (408, 429):
        return Result(Verdict.PARK, detail)
    return Result(Verdict.RETRY, detail)


class Verdict(Enum):
    SENT = "sent"
    RETRY = "retry"  # transient: try again later with backoff
    REFRESH_TOKEN = "refresh_token"  # the token is stale: refresh and retry at once
    BACK_OFF = "back_off"  # a quota: try again, much later
    PARK = "park"  # will never succeed as it is: keep it with the reason, stop trying
    HOLD = "hold"  # cannot reach the person now: keep it until they next write to us (bot/delivery.py)


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    detail: str = ""
    errcode: int = 0  # WeChat's own code, for callers that treat some codes specially (45015, 45047)


# errcode → meaning, in one place (https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html)
_TOKEN_ERRORS = {40001, 40014, 42001}
_QUOTA_ERRORS = {45009, 45011, 45047}
_TRANSIENT_ERRORS = {-1}


def classify(errcode: int, errmsg: str = "") -> Result:
    if errcode == 0:
        return Result(Verdict.SENT)
    detail = f"{errcode} {errmsg}".strip()
    if errcode in _TOKEN_ERRORS:
        return Result(Verdict.REFRESH_TOKEN, detail, errcode)
    if errcode in _QUOTA_ERRORS:
        return Result(Verdict.BACK_OFF, detail, errcode)
    if errcode in _TRANSIENT_ERRORS:
        return Result(Verdict.RETRY, detail, errcode)
    # 45015 (outside the 48 h window), 40003 (bad openid), 43004 (unsubscribed) …: retrying won't help
    # as it is (bot/delivery.py falls back to a template message for 45015 and 45047).
    return Result(Verdict.PARK, detail, errcode)


class WeChatAPI:
    """The Official Account's API. Its access token is shared with every other process (bot/tokens.py)."""

    def __init__(
        self, http: aiohttp.ClientSession, *, base: str, appid: str, secret: str, tokens: SharedTokens, timeout: float
    ) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.tokens = tokens
        self.token_key = f"wechat:{appid}"
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def access_token(self, *, stale: str | None = None) -> str:
        """The shared token; stale: the one WeChat just refused (40001/40014/42001)."""
        return await self.tokens.get(self.token_key, self._fetch_token, stale=stale)

    async def _fetch_token(self) -> tuple[str, int]:
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
        data = await self._get_json("/cgi-bin/token", params)
        if "access_token" not in data:
            raise TokenError(f"{data.get('errcode')} {data.get('errmsg', '')}".strip())
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    async def send_custom(self, recipient: str, payload: dict[str, Any]) -> Result:
        """客服消息: /cgi-bin/message/custom/send. Refreshes the token once when WeChat says it is stale."""
        return await self._send("/cgi-bin/message/custom/send", {"touser": recipient, **payload})

    async def send_template(self, recipient: str, template_id: str, data: dict[str, str]) -> Result:
        """模板消息: /cgi-bin/message/template/send; `data` maps the template's keys to values."""
        body = {"touser": recipient, "template_id": template_id, "data": {k: {"value": v} for k, v in data.items()}}
        return await self._send("/cgi-bin/message/template/send", body)

    async def send_subscribe(self, recipient: str, template_id: str, data: dict[str, str]) -> Result:
        """订阅通知: /cgi-bin/message/subscribe/bizsend (one send per one-time subscription; 43101 = none left)."""
        body = {"touser": recipient, "template_id": template_id, "data": {k: {"value": v} for k, v in data.items()}}
        return await self._send("/cgi-bin/message/subscribe/bizsend", body)

    async def _send(self, path: str, body: dict[str, Any]) -> Result:
        stale: str | None = None
        for _ in range(2):
            token = ""
            try:
                token = await self.access_token(stale=stale)
                data = await self._post_json(path, {"access_token": token}, body)
            except TokenError as exc:
                return Result(Verdict.RETRY, f"token: {exc}")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return call_failed(exc, self._error(exc, token))
            result = classify(int(data.get("errcode", 0)), str(data.get("errmsg", "")))
            if result.verdict is not Verdict.REFRESH_TOKEN:
                return result
            stale = token
        return Result(Verdict.RETRY, result.detail)

    async def fetch_media(self, media_id: str) -> tuple[Result, bytes, str]:
        """临时素材: /cgi-bin/media/get. Returns the verdict, the bytes and the content type."""
        return await fetch_media(
            self.http,
            self.base + "/cgi-bin/media/get",
            media_id,
            token=lambda stale: self.access_token(stale=stale),
            classify=classify,
            describe=self._error,
            client_timeout=self.timeout,
        )

    def _error(self, exc: BaseException, token: str = "") -> str:
        return redact(f"{type(exc).__name__}: {exc}", self.secret, token)[:200]

    async def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            async with self.http.get(self.base + path, params=params, timeout=self.timeout) as resp:
                resp.raise_for_status()
                return dict(await resp.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenError(self._error(exc)) from exc

    async def _post_json(self, path: str, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.base + path, params=params, json=body, timeout=self.timeout) as resp:
            resp.raise_for_status()
            return dict(await resp.json(content_type=None))


async def fetch_media(
    http: aiohttp.ClientSession,
    url: str,
    media_id: str,
    *,
    token: Callable[[str | None], Awaitable[str]],
    classify: Callable[[int, str], Result],
    describe: Callable[[BaseException, str], str],
    client_timeout: aiohttp.ClientTimeout,
) -> tuple[Result, bytes, str]:
    """media/get, the same for WeChat and WeCom: the file, or the API's JSON error by its meaning; a
    stale token is refreshed once. `describe` makes an exception's text safe to store."""
    result = Result(Verdict.RETRY)
    stale: str | None = None
    for _ in range(2):
        used = ""
        try:
            used = await token(stale)
            params = {"access_token": used, "media_id": media_id}
            async with http.get(url, params=params, timeout=client_timeout) as resp:
                resp.raise_for_status()
                kind = resp.content_type
                body = await resp.read()
        except TokenError as exc:
            return Result(Verdict.RETRY, f"token: {exc}"), b"", ""
        except (aiohttp.ClientError, TimeoutError) as exc:
            return call_failed(exc, describe(exc, used)), b"", ""
        if kind not in ("application/json", "text/plain"):
            return Result(Verdict.SENT), body, kind
        try:
            data = json.loads(body)
        except ValueError:
            return Result(Verdict.SENT), body, kind
        result = classify(int(data.get("errcode", -1)), str(data.get("errmsg", "")))
        if result.verdict is not Verdict.REFRESH_TOKEN:
            return (result if result.verdict is not Verdict.SENT else Result(Verdict.PARK, "empty")), b"", ""
        stale = used
    return Result(Verdict.RETRY, result.detail), b"", ""
