"""Pushes: which outbox channel reaches a person, and the payloads each channel takes.

Channels (the outbox delivers them, see bot/outbox.py):
- ``wechat_cs``: an Official Account customer-service message (客服消息) to an openid;
- ``wecom_app``: a WeCom app message (应用消息) to a WeCom user id;
- ``wecom_robot``: a post to a grid group's WeCom robot (群机器人), recipient the robot's key.

Text payloads have one shape on both personal channels, ``{"msgtype": "text", "text": {...}}``; the
sender adds the recipient (and, on WeCom, the agent id).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers.context import Services
from storage import outbox
from storage.models import Staff

WECHAT_CS = "wechat_cs"
WECOM_APP = "wecom_app"
WECOM_ROBOT = "wecom_robot"

# The channel a passive reply falls back to when it cannot be given in time, by inbound channel.
REPLY_CHANNEL = {"wechat": WECHAT_CS, "wecom": WECOM_APP}

# WeCom group robot limits (bytes of UTF-8): a longer message is refused, so we split it first.
ROBOT_TEXT_BYTES = 2048
ROBOT_MARKDOWN_BYTES = 4096


def text_push(content: str) -> dict[str, Any]:
    """A text message body, as /cgi-bin/message/custom/send and WeCom's message/send expect it."""
    return {"msgtype": "text", "text": {"content": content}}


def staff_address(staff: Staff, *, wecom_app: bool) -> tuple[str, str] | None:
    """(channel, recipient) of the staff member's preferred channel, else the one they have.

    `wecom_app`: whether this server has a WeCom app. Without one, someone who prefers WeCom is
    reached on their openid; with no openid either, their WeCom address is still returned, so the
    push is kept (parked, "channel not configured") rather than silently dropped.
    """
    routes = {WECOM_APP: staff.wecom_userid, WECHAT_CS: staff.wechat_openid}
    preferred = WECOM_APP if staff.channel == "wecom" and wecom_app else WECHAT_CS
    for channel in (preferred, *routes):
        if routes[channel]:
            return channel, str(routes[channel])
    return None


def push_to_staff(
    session: AsyncSession,
    *,
    staff: Staff,
    content: str,
    now: datetime,
    services: Services,
    case_id: int | None = None,
    kind: str | None = None,
) -> bool:
    """Queue a text for a staff member on their channel; False when they have no address at all.
    `kind` marks the follow-up engine's pings (cancelled when the case moves on)."""
    address = staff_address(staff, wecom_app=services.wecom_app)
    if address is None:
        return False
    channel, recipient = address
    outbox.enqueue(
        session,
        channel=channel,
        recipient=recipient,
        payload=text_push(content),
        now=now,
        case_id=case_id,
        kind=kind,
    )
    return True


def robot_texts(content: str, *, userids: list[str], mobiles: list[str]) -> list[dict[str, Any]]:
    """Group robot text messages, each within the 2,048-byte limit, the mentions on the first."""
    payloads = []
    for i, chunk in enumerate(split_utf8(content, ROBOT_TEXT_BYTES)):
        text: dict[str, Any] = {"content": chunk}
        if i == 0 and userids:
            text["mentioned_list"] = userids
        if i == 0 and mobiles:
            text["mentioned_mobile_list"] = mobiles
        payloads.append({"msgtype": "text", "text": text})
    return payloads


def robot_markdowns(content: str) -> list[dict[str, Any]]:
    """Group robot markdown messages (mentions written inline as <@userid>), each within 4,096 bytes."""
    return [{"msgtype": "markdown", "markdown": {"content": c}} for c in split_utf8(content, ROBOT_MARKDOWN_BYTES)]


def split_utf8(content: str, limit: int) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut between lines where possible, never inside a
    character; nothing is dropped."""
    pieces: list[str] = []
    current = ""
    for line in content.splitlines(keepends=True):
        while len(line.encode()) > limit:  # a single line too long: cut it at a character boundary
            head = line.encode()[:limit].decode("utf-8", errors="ignore")
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
            line = line[len(head) :]
        if len((current + line).encode()) > limit:
            pieces.append(current)
            current = ""
        current += line
    if current or not pieces:
        pieces.append(current)
    return [p.rstrip("\n") for p in pieces]
