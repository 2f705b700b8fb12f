"""`gridbot chat`: a terminal WeChat for trying the bot without a WeChat account.

It plays the WeChat server (signs, and in safe mode encrypts, exactly as WeChat does), shows the
bot's passive replies, and shows the pushes the bot sends through the local fake WeChat API.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bot.config import DEMO_GRID_FILE, Settings
from bot.wechat import WeChatSimulator

HELP = """命令（其他输入都作为文字消息发送）：
  /as OPENID          切换身份，如 /as o_demo_zhangwei_hp01（网格员张伟）
  /who                列出演示数据里的工作人员
  /loc 纬度 经度 [地名]  发送位置，如 /loc 39.92625 116.40375 幸福里小区
  /photo              发送一张照片
  /voice 文字          发送语音（带微信语音识别结果）
  /sub                关注公众号
  /retry              重发上一条（模拟微信重试，不会重复建单）
  /quit               退出"""


def _names(settings: Settings) -> dict[str, str]:
    from storage.grids import read_grid_file

    path: Path = settings.grid_file or DEMO_GRID_FILE
    try:
        grid = read_grid_file(path)
    except Exception:
        return {}
    return {s.wechat_openid: f"{s.name}" for s in grid.staff if s.wechat_openid}


async def run_chat(settings: Settings, *, url: str, fake: str, identity: str) -> None:
    sim = WeChatSimulator(token=settings.wechat_token, appid=settings.wechat_appid, aes_key=settings.wechat_aes_key)
    names = _names(settings)
    state: dict[str, str] = {"me": identity, "last": ""}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        host = urlsplit(fake).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            watcher = asyncio.create_task(_watch_pushes(http, fake, names))
        else:  # only ever poll a local fake, never a real WeChat host
            print(f"--fake {fake} is not on this machine: pushes will not be shown")
            watcher = asyncio.create_task(asyncio.sleep(0))
        print(f"已连接 {url}；你现在是 {_label(identity, names)}。输入 /help 查看命令。", flush=True)
        loop = asyncio.get_running_loop()
        try:
            while True:
                line = await loop.run_in_executor(None, _read_line, f"[{_label(state['me'], names)}] > ")
                if line is None or line.strip() == "/quit":
                    break
                line = line.strip()
                if not line:
                    continue
                await _handle_line(http, sim, url, state, names, line)
            await asyncio.sleep(1.5)  # let the last pushes arrive before leaving
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt if sys.stdin.isatty() else "")
    except EOFError:
        return None


async def _handle_line(
    http: aiohttp.ClientSession, sim: WeChatSimulator, url: str, state: dict, names: dict[str, str], line: str
) -> None:
    me = state["me"]
    create_time = int(time.time())
    if line == "/help":
        print(HELP)
        return
    if line == "/who":
        for openid, name in names.items():
            print(f"  {openid}  {name}")
        return
    if line.startswith("/as "):
        state["me"] = line[4:].strip()
        print(f"你现在是 {_label(state['me'], names)}")
        return
    if line == "/retry":
        if not state["last"]:
            print("还没有发过消息")
            return
        xml = state["last"]
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
        xml = sim.xml(
            me,
            "voice",
            {"MediaId": f"voice_{sim.next_msg_id()}", "Format": "amr", "Recognition": line[7:]},
            create_time=create_time,
        )
    elif line == "/sub":
        xml = sim.xml(me, "event", {"Event": "subscribe", "EventKey": ""}, create_time=create_time)
    else:
        xml = sim.xml(me, "text", {"Content": line}, create_time=create_time)
    state["last"] = xml
    query, body = sim.sign(xml, timestamp=create_time)
    try:
        async with http.post(url, params=query, data=body) as resp:
            text = await resp.text()
            if resp.status != 200:
                print(f"  ✗ HTTP {resp.status}: {text}")
                return
    except aiohttp.ClientError as exc:
        print(f"  ✗ 连不上机器人（{exc}）。先运行演示：scripts/demo")
        return
    reply = sim.read_reply(text)
    if reply:
        print("  ← 公众号：" + reply.replace("\n", "\n           "), flush=True)
    else:
        print("  ← （公众号未回复，回复将以客服消息推送）", flush=True)


async def _watch_pushes(http: aiohttp.ClientSession, fake: str, names: dict[str, str]) -> None:
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
            content = m.get("text", {}).get("content", m.get("msgtype"))
            print(
                f"\n  ✉ 推送给 {_label(m['touser'], names)}：\n    " + content.replace("\n", "\n    "),
                flush=True,
            )


def _label(openid: str, names: dict[str, str]) -> str:
    return f"{names[openid]}（{openid}）" if openid in names else f"居民（{openid}）"
