"""`gridbot chat`: a terminal WeChat (and WeCom) for trying the bot without either account.

It plays the WeChat server (signs, and in safe mode encrypts, exactly as WeChat does) or, after
`/wecom USERID`, the WeCom server (every message encrypted and signed to /wecom), shows the bot's
passive replies, and shows the pushes the bot sends through the local fake WeChat and WeCom APIs:
customer-service messages, WeCom app messages and group robot posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bot.config import DEMO_GRID_FILE, DEMO_WECOM, Settings
from bot.wechat import WeChatSimulator
from bot.wecom import WeComSimulator

HELP = """命令（其他输入都作为文字消息发送）：
  /as OPENID          切换身份，如 /as o_demo_zhangwei_hp01（网格员张伟）
  /wecom USERID       以企业微信成员身份发消息，如 /wecom wugang（网格员吴刚）
  /who                列出演示数据里的工作人员
  /loc 纬度 经度 [地名]  发送位置，如 /loc 39.92625 116.40375 幸福里小区
  /photo              发送一张照片
  /voice 文字          发送语音（带微信语音识别结果）
  /sub                关注公众号
  /retry              重发上一条（模拟微信重试，不会重复建单）
  /quit               退出"""


def _names(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """Staff names by openid and by WeCom user id; group names by robot key."""
    from storage.grids import NodeSpec, read_grid_file

    path: Path = settings.grid_file or DEMO_GRID_FILE
    try:
        grid = read_grid_file(path)
    except Exception:
        return {}, {}
    people = {s.wechat_openid: s.name for s in grid.staff if s.wechat_openid}
    people |= {s.wecom_userid: s.name for s in grid.staff if s.wecom_userid}
    groups: dict[str, str] = {}

    def walk(node: NodeSpec) -> None:
        if node.robot_key:
            groups[node.robot_key] = f"{node.name}群"
        for child in node.children:
            walk(child)

    for node in grid.nodes:
        walk(node)
    return people, groups


def _wecom_simulator(settings: Settings) -> WeComSimulator:
    """The server's WeCom app, else the demo's (which `gridbot demo` runs with)."""
    app = settings if settings.wecom_enabled else settings.model_copy(update=DEMO_WECOM)
    return WeComSimulator(
        token=app.wecom_token, corp_id=app.wecom_corp_id, aes_key=app.wecom_aes_key, agent_id=app.wecom_agent_id
    )


def _is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


async def run_chat(
    settings: Settings,
    *,
    url: str,
    fake: str,
    identity: str,
    wecom_url: str | None = None,
    fake_wecom: str | None = None,
) -> None:
    sim = WeChatSimulator(token=settings.wechat_token, appid=settings.wechat_appid, aes_key=settings.wechat_aes_key)
    wecom = _wecom_simulator(settings)
    names, groups = _names(settings)
    state: dict[str, str] = {"me": identity, "last": "", "via": "wechat", "last_via": "wechat"}
    urls = {"wechat": url, "wecom": wecom_url or url.rsplit("/", 1)[0] + "/wecom"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        watchers = []
        for source in filter(None, (fake, fake_wecom)):
            if _is_local(source):
                watchers.append(asyncio.create_task(_watch_pushes(http, source, names, groups)))
            else:  # only ever poll a local fake, never a real WeChat or WeCom host
                print(f"{source} is not on this machine: its pushes will not be shown")
        print(f"已连接 {url}；你现在是 {_label(identity, names)}。输入 /help 查看命令。", flush=True)
        loop = asyncio.get_running_loop()
        try:
            while True:
                line = await loop.run_in_executor(None, _read_line, f"[{_who(state, names)}] > ")
                if line is None or line.strip() == "/quit":
                    break
                line = line.strip()
                if not line:
                    continue
                await _handle_line(http, {"wechat": sim, "wecom": wecom}, urls, state, names, line)
            await asyncio.sleep(1.5)  # let the last pushes arrive before leaving
        finally:
            for watcher in watchers:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt if sys.stdin.isatty() else "")
    except EOFError:
        return None


Simulator = WeChatSimulator | WeComSimulator


async def _handle_line(
    http: aiohttp.ClientSession,
    sims: dict[str, Simulator],
    urls: dict[str, str],
    state: dict[str, str],
    names: dict[str, str],
    line: str,
) -> None:
    me, via = state["me"], state["via"]
    sim = sims[via]
    create_time = int(time.time())
    if line == "/help":
        print(HELP)
        return
    if line == "/who":
        for openid, name in names.items():
            print(f"  {openid}  {name}")
        return
    if line.startswith("/as "):
        state["me"], state["via"] = line[4:].strip(), "wechat"
        print(f"你现在是 {_who(state, names)}")
        return
    if line.startswith("/wecom"):
        userid = line[6:].strip()
        if not userid:
            print("用法：/wecom USERID，如 /wecom wugang")
            return
        state["me"], state["via"] = userid, "wecom"
        print(f"你现在是 {_who(state, names)}（消息经企业微信应用发送）")
        return
    if line == "/retry":
        if not state["last"]:
            print("还没有发过消息")
            return
        xml, via = state["last"], state["last_via"]
        sim = sims[via]
    elif line.startswith("/loc "):
        parts = line.split()
        if len(parts) < 3:
            print("用法：/loc 纬度 经度 [地名]")
            return
        xml = sim.xml(
            me,
            "location",
            {"Location_X": parts[1], "Location_Y": parts[2], "Scale": 16, "Label": " ".join(parts[3:])},
            create_time=create_time,
        )
    elif line == "/photo":
        mid = sim.next_msg_id()
        xml = sim.xml(
            me,
            "image",
            {"PicUrl": f"http://127.0.0.1/fake/{mid}.jpg", "MediaId": f"media_{mid}"},
            create_time=create_time,
        )
    elif line.startswith("/voice "):
        fields = {"MediaId": f"voice_{sim.next_msg_id()}", "Format": "amr"}
        if via == "wechat":  # WeCom sends no speech recognition
            fields["Recognition"] = line[7:]
        xml = sim.xml(me, "voice", fields, create_time=create_time)
    elif line == "/sub":
        xml = sim.xml(me, "event", {"Event": "subscribe", "EventKey": ""}, create_time=create_time)
    else:
        xml = sim.xml(me, "text", {"Content": line}, create_time=create_time)
    state["last"], state["last_via"] = xml, via
    query, body = sim.sign(xml, timestamp=create_time)
    try:
        async with http.post(urls[via], params=query, data=body) as resp:
            text = await resp.text()
            if resp.status != 200:
                print(f"  ✗ HTTP {resp.status}: {text}")
                return
    except aiohttp.ClientError as exc:
        print(f"  ✗ 连不上机器人（{exc}）。先运行演示：scripts/demo")
        return
    reply = sim.read_reply(text)
    if reply:
        who = "公众号" if via == "wechat" else "企业微信应用"
        print(f"  ← {who}：" + reply.replace("\n", "\n           "), flush=True)
    elif via == "wechat":
        print("  ← （公众号未回复，回复将以客服消息推送）", flush=True)
    else:
        print("  ← （应用未回复）", flush=True)


async def _watch_pushes(http: aiohttp.ClientSession, fake: str, names: dict[str, str], groups: dict[str, str]) -> None:
    """Polls one fake (WeChat or WeCom: the same /_fake/messages) and prints what went out."""
    after = 0
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with http.get(f"{fake}/_fake/messages") as resp:
            seen = await resp.json()
            after = max((m["seq"] for m in seen), default=0)
    while True:
        await asyncio.sleep(0.3)
        try:
            async with http.get(f"{fake}/_fake/messages", params={"after": str(after)}) as resp:
                new = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            continue
        for m in new:
            after = max(after, m["seq"])
            kind = m.get("msgtype", "")
            content = str(m.get(kind, {}).get("content", kind)) if isinstance(m.get(kind), dict) else kind
            if m.get("kind") == "robot":
                mentions = m.get(kind, {}).get("mentioned_list", []) + m.get(kind, {}).get("mentioned_mobile_list", [])
                at = f"（@{'、'.join(names.get(x, x) for x in mentions)}）" if mentions else ""
                head = f"📣 群机器人发到 {groups.get(m['key'], '网格群')}{at}"
            elif m.get("kind") == "app":
                head = f"✉ 企业微信推送给 {_label(m['touser'], names)}"
            else:
                head = f"✉ 推送给 {_label(m['touser'], names)}"
            print(f"\n  {head}：\n    " + content.replace("\n", "\n    "), flush=True)


def _label(openid: str, names: dict[str, str]) -> str:
    return f"{names[openid]}（{openid}）" if openid in names else f"居民（{openid}）"


def _who(state: dict[str, str], names: dict[str, str]) -> str:
    if state["via"] == "wecom":
        return f"{names.get(state['me'], '企业微信成员')}（企业微信 {state['me']}）"
    return _label(state["me"], names)
