"""A local stand-in for qyapi.weixin.qq.com, for the demo, `gridbot chat` and the tests.

It speaks the endpoints gridbot uses — /cgi-bin/gettoken, /cgi-bin/message/send (app messages),
/cgi-bin/media/get, /cgi-bin/webhook/send (group robots) — with WeCom's JSON shapes and error codes,
records what was sent, and can be told to fail or to be rate-limited. Control endpoints live under
/_fake/, as in bot/fake_wechat.py (whose FakeAPI base it shares).

Where the real WeCom would cut off an over-long text silently, the fake refuses it (errcode 40058)
so that a test notices.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.fake_wechat import FakeAPI

APP_TEXT_BYTES = 2048
ROBOT_LIMITS = {"text": 2048, "markdown": 4096}


@dataclass
class FakeWeCom(FakeAPI):
    corp_id: str
    secret: str
    agent_id: int
    # Members the app may write to; None: anyone. Others get 81013, as the real API answers.
    members: set[str] | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)  # app messages and robot posts, in order
    token_fetches: int = 0
    rate_limited: bool = False  # every send answers 45009 until switched off
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app_messages(self, userid: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["kind"] == "app" and (userid is None or m["touser"] == userid)]

    def texts_to(self, userid: str) -> list[str]:
        return [m["text"]["content"] for m in self.app_messages(userid) if m.get("msgtype") == "text"]

    def robot_posts(self, key: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["kind"] == "robot" and (key is None or m["key"] == key)]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/message/send", self._message_send)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_post("/cgi-bin/webhook/send", self._webhook_send)
        app.router.add_get("/_fake/messages", self._messages)
        self._add_controls(app)
        app.router.add_post("/_fake/rate_limit", self._rate_limit)
        return app

    async def _gettoken(self, request: web.Request) -> web.Response:
        if (down := await self._outage_response()) is not None:
            return down
        q = request.query
        if q.get("corpid") != self.corp_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid corpid"})
        if q.get("corpsecret") != self.secret:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        self.token_fetches += 1
        token = f"FAKE_WECOM_TOKEN_{self.token_fetches}"
        self._tokens.add(token)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    async def _refusal(self) -> web.Response | None:
        """The configured failure or rate limit for this call, if any."""
        if self.rate_limited:
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        return await self._failure_response()

    async def _message_send(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") not in self._tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        refusal = await self._refusal()
        if refusal is not None:
            return refusal
        body = await request.json()
        if body.get("agentid") != self.agent_id:
            return web.json_response({"errcode": 40056, "errmsg": "invalid agentid"})
        kind = body.get("msgtype")
        if kind not in ("text", "markdown", "textcard") or not isinstance(body.get(kind), dict):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if kind in ("text", "markdown") and len(str(body[kind].get("content", "")).encode()) > APP_TEXT_BYTES:
            return web.json_response({"errcode": 40058, "errmsg": "content exceed max length (fake)"})
        users = str(body.get("touser", "")).split("|")
        invalid = [u for u in users if not u or (self.members is not None and u not in self.members)]
        if len(invalid) == len(users):
            return web.json_response({"errcode": 81013, "errmsg": "user & party & tag all invalid"})
        self.sent.append({**body, "kind": "app", "seq": next(self._seq)})
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid)})

    async def _media_get(self, request: web.Request) -> web.Response:
        return await self._serve_media(request, stale_token=42001, marker=b"FAKEWECOMJPEG")

    async def _webhook_send(self, request: web.Request) -> web.Response:
        """Group robot posts. Keys starting with "invalid" do not exist (93000)."""
        key = request.query.get("key", "")
        if not key or key.startswith("invalid"):
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        refusal = await self._refusal()
        if refusal is not None:
            return refusal
        body = await request.json()
        kind = body.get("msgtype")
        if kind not in ROBOT_LIMITS or not isinstance(body.get(kind), dict):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if len(str(body[kind].get("content", "")).encode()) > ROBOT_LIMITS[kind]:
            return web.json_response({"errcode": 40058, "errmsg": "content exceed max length"})
        self.sent.append({**body, "kind": "robot", "key": key, "seq": next(self._seq)})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _messages(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        return web.json_response([m for m in self.sent if m["seq"] > after])

    async def _rate_limit(self, request: web.Request) -> web.Response:
        self.rate_limited = bool((await request.json()).get("on", True))
        return web.json_response({"ok": True})
