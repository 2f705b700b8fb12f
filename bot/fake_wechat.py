"""A local stand-in for api.weixin.qq.com, for the demo, `gridbot chat` and the tests.

It speaks the endpoints gridbot uses (/cgi-bin/token, /cgi-bin/message/custom/send,
/cgi-bin/message/template/send, /cgi-bin/message/subscribe/bizsend, /cgi-bin/media/get) with
WeChat's JSON shapes and error codes, records what was sent, and can be told to fail: `fail_next`,
or the toggles `outside_window` (custom/send answers 45015), `over_quota` (45047) and
`subscription_refused` (bizsend answers 43101). Control endpoints live under /_fake/.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Failure:
    count: int
    status: int = 200  # HTTP status to answer with
    errcode: int = -1  # WeChat errcode, when status is 200
    hang: float = 0.0  # seconds to wait before answering: longer than the caller's timeout is a timeout


@dataclass(kw_only=True)
class FakeAPI:
    """What both fakes share: issued tokens, queued failures, and the /_fake/ control endpoints."""

    failures: list[Failure] = field(default_factory=list)
    # While set, every call fails this way, token fetches included (the API down for a while).
    outage: Failure | None = None
    media_fetches: list[str] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)

    def fail_next(self, count: int, *, status: int = 200, errcode: int = -1) -> None:
        self.failures.append(Failure(count, status, errcode))

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def _next_failure(self) -> Failure | None:
        if self.outage is not None:
            return self.outage
        while self.failures and self.failures[0].count <= 0:
            self.failures.pop(0)
        if not self.failures:
            return None
        self.failures[0].count -= 1
        return self.failures[0]

    async def _failure_response(self) -> web.Response | None:
        """The next queued failure, as an HTTP error or an errcode; None: answer normally."""
        return await self._as_response(self._next_failure())

    async def _outage_response(self) -> web.Response | None:
        """During an outage, token fetches fail too (queued failures are for the calls themselves)."""
        return await self._as_response(self.outage)

    @staticmethod
    async def _as_response(failure: Failure | None) -> web.Response | None:
        if failure is None:
            return None
        if failure.hang:
            await asyncio.sleep(failure.hang)  # the caller has given up by now: nothing was sent
        if failure.status != 200:
            return web.Response(status=failure.status, text="upstream error")
        return web.json_response({"errcode": failure.errcode, "errmsg": "fake failure"})

    async def _serve_media(self, request: web.Request, *, stale_token: int, marker: bytes) -> web.Response:
        """media/get: any media id starting with "missing" is unknown (40007); others are a tiny JPEG."""
        if request.query.get("access_token") not in self._tokens:
            return web.json_response({"errcode": stale_token, "errmsg": "invalid credential, access_token"})
        failure = self._next_failure()
        if failure is not None:
            if failure.hang:
                await asyncio.sleep(failure.hang)
            return web.Response(status=failure.status if failure.status != 200 else 500, text="upstream error")
        media_id = request.query.get("media_id", "")
        if not media_id or media_id.startswith("missing"):
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        self.media_fetches.append(media_id)
        return web.Response(
            body=b"\xff\xd8\xff\xe0" + marker + b":" + media_id.encode() + b"\xff\xd9",
            content_type="image/jpeg",
            headers={"Content-Disposition": f'attachment; filename="{media_id}.jpg"'},
        )

    def _add_controls(self, app: web.Application) -> None:
        app.router.add_post("/_fake/fail", self._fail)
        app.router.add_post("/_fake/expire_tokens", self._expire)

    async def _fail(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.fail_next(
            int(data.get("count", 1)),
            status=int(data.get("status", 200)),
            errcode=int(data.get("errcode", -1)),
        )
        return web.json_response({"ok": True})

    async def _expire(self, request: web.Request) -> web.Response:
        self.expire_tokens()
        return web.json_response({"ok": True})


@dataclass
class FakeWeChat(FakeAPI):
    appid: str
    secret: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    token_fetches: int = 0
    templates: list[dict[str, Any]] = field(default_factory=list)  # template/send bodies
    subscriptions: list[dict[str, Any]] = field(default_factory=list)  # subscribe/bizsend bodies
    outside_window: bool = False
    over_quota: bool = False
    subscription_refused: bool = False
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def texts_to(self, openid: str) -> list[str]:
        return [m["text"]["content"] for m in self.sent if m.get("touser") == openid and m.get("msgtype") == "text"]

    def templates_to(self, openid: str) -> list[dict[str, str]]:
        """The template messages sent to this person, each as {template key: value}."""
        return [_values(m) for m in self.templates if m.get("touser") == openid]

    def subscriptions_to(self, openid: str) -> list[dict[str, str]]:
        """The subscription messages sent to this person, each as {template key: value}."""
        return [_values(m) for m in self.subscriptions if m.get("touser") == openid]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom_send)
        app.router.add_post("/cgi-bin/message/template/send", self._template_send)
        app.router.add_post("/cgi-bin/message/subscribe/bizsend", self._subscribe_send)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_get("/_fake/messages", self._messages)
        self._add_controls(app)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        if (down := await self._outage_response()) is not None:
            return down
        q = request.query
        if q.get("grant_type") != "client_credential" or q.get("appid") != self.appid:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != self.secret:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, secret"})
        self.token_fetches += 1
        token = f"FAKE_TOKEN_{self.token_fetches}"
        self._tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _custom_send(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") not in self._tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        failed = await self._failure_response()
        if failed is not None:
            return failed
        if self.outside_window:
            return web.json_response({"errcode": 45015, "errmsg": "response out of time limit"})
        if self.over_quota:
            return web.json_response({"errcode": 45047, "errmsg": "out of response count limit"})
        body = await request.json()
        if not body.get("touser") or body.get("msgtype") not in ("text", "image", "news"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        self.sent.append({**body, "seq": next(self._seq)})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _template_send(self, request: web.Request) -> web.Response:
        return await self._notice(request, self.templates)

    async def _subscribe_send(self, request: web.Request) -> web.Response:
        if self.subscription_refused and request.query.get("access_token") in self._tokens:
            return web.json_response({"errcode": 43101, "errmsg": "user refuse to accept the msg"})
        return await self._notice(request, self.subscriptions)

    async def _notice(self, request: web.Request, into: list[dict[str, Any]]) -> web.Response:
        """Template and subscription messages: {touser, template_id, data: {key: {value}}}."""
        if request.query.get("access_token") not in self._tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        failed = await self._failure_response()
        if failed is not None:
            return failed
        body = await request.json()
        if not body.get("touser") or not body.get("template_id"):
            return web.json_response({"errcode": 40037, "errmsg": "invalid template_id"})
        data = body.get("data")
        if not isinstance(data, dict) or not all(isinstance(v, dict) and "value" in v for v in data.values()):
            return web.json_response({"errcode": 47003, "errmsg": "argument invalid! data.value"})
        seq = next(self._seq)
        into.append({**body, "seq": seq})
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": seq})

    async def _media_get(self, request: web.Request) -> web.Response:
        return await self._serve_media(request, stale_token=40001, marker=b"FAKEJPEG")

    async def _messages(self, request: web.Request) -> web.Response:
        """Everything sent after a sequence number; template and subscription messages shown as
        text (for `gridbot chat`)."""
        after = int(request.query.get("after", "0"))
        notices = [
            {"touser": m["touser"], "msgtype": kind, "seq": m["seq"], "text": {"content": _render(kind, m)}}
            for kind, bodies in (("template", self.templates), ("subscribe", self.subscriptions))
            for m in bodies
        ]
        return web.json_response(sorted((m for m in self.sent + notices if m["seq"] > after), key=lambda m: m["seq"]))


def _render(kind: str, body: dict[str, Any]) -> str:
    label = "模板消息" if kind == "template" else "订阅通知"
    return f"【{label}】" + "；".join(f"{k}：{v}" for k, v in _values(body).items())


def _values(body: dict[str, Any]) -> dict[str, str]:
    return {key: str(item["value"]) for key, item in body.get("data", {}).items()}
