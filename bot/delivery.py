"""Customer-service messages (客服消息) within WeChat's sending rules, never dropping an update.

WeChat delivers a customer-service message only within `window` (48 h) of the person's last
message to the Official Account, and only `quota` (5) of them per such message; beyond that it
answers 45015 (outside the window) or 45047 (over the quota). Then we fall back:

- a template message (模板消息) or a subscription message (订阅通知, `message/subscribe/bizsend`),
  when one is configured, carrying all of the person's pending updates merged into one;
- otherwise the updates are held, merged, until the person next writes (bot/receive.py wakes them
  through storage.inbound.store_durably) and then go as one customer-service message.

Residents and staff on the Official Account follow the same rules: both have the 48-hour window.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from bot.clock import Clock
from bot.outbox import Delivery
from bot.wechat_api import Result, Verdict, WeChatAPI
from handlers import messages
from handlers.pushes import WECHAT_CS, text_push
from storage import inbound, outbox
from storage.cases import get_cases
from storage.db import SessionFactory, reading
from storage.models import Case, OutboxMessage

log = logging.getLogger("gridbot.delivery")

OUTSIDE_WINDOW = 45015
OVER_QUOTA = 45047
SUBSCRIPTION_REFUSED = 43101  # no one-time subscription left (or refused)
# The channel a row is marked with once it went out as a template / subscription message instead,
# so it is not counted against the customer-service quota.
TEMPLATE_CHANNEL = "wechat_template"
SUBSCRIBE_CHANNEL = "wechat_subscribe"

# WeChat's limits on template values, by the key's type (the part of the key before its digits).
_VALUE_LIMITS = {"thing": 20, "phrase": 5, "character_string": 32, "name": 10, "number": 32}


@dataclass(frozen=True)
class Fallback:
    """Where updates go when a customer-service message cannot: the kind, the template id, and
    which of the template's keys carries our number, status, summary and time."""

    kind: Literal["template", "subscribe"]
    template_id: str
    fields: dict[str, str]


class CustomerService:
    """The delivery policy for channel wechat_cs (see bot.outbox.DeliveryPolicy)."""

    def __init__(
        self,
        api: WeChatAPI,
        factory: SessionFactory,
        clock: Clock,
        *,
        window_hours: int,
        quota: int,
        fallback: Fallback | None,
        zone: ZoneInfo,
    ) -> None:
        self.api = api
        self.factory = factory
        self.clock = clock
        self.window = timedelta(hours=window_hours)
        self.quota = quota
        self.fallback = fallback
        self.zone = zone

    async def __call__(self, row: OutboxMessage) -> Delivery:
        now = self.clock.now()
        async with reading(self.factory) as session:
            last = await inbound.last_from(session, sender=row.recipient)
            sent = (
                await outbox.count_sent(session, recipient=row.recipient, channel=WECHAT_CS, since=last) if last else 0
            )
            rows = await outbox.undelivered(session, recipient=row.recipient, channel=WECHAT_CS)
            if all(r.id != row.id for r in rows):
                rows.append(row)
            rows.sort(key=lambda r: r.id or 0)
        others = tuple(r.id for r in rows if r.id is not None and r.id != row.id)
        # No message from them on record (they wrote before this database, or only ever followed
        # the account): we cannot tell, so WeChat decides, answering 45015 or 45047 if it must.
        if last is not None and now - last >= self.window:
            return await self._fall_back(row, rows, others, "outside the customer-service window")
        remaining = self.quota - sent if last is not None else len(rows)
        if remaining <= 0:
            return await self._fall_back(row, rows, others, "over the customer-service quota")
        # Merge when this row carries others (it was held) or more are waiting than the quota allows.
        has_children = any(r.merged_into_id == row.id for r in rows)
        if has_children or len(rows) > remaining:
            result = await self.api.send_custom(row.recipient, text_push(merged_text(rows)))
            merged = others
        else:
            result = await self.api.send_custom(row.recipient, row.payload)
            merged = ()
        if result.errcode in (OUTSIDE_WINDOW, OVER_QUOTA):
            # WeChat counts differently from us (a message we have not seen, a changed rule): believe it.
            return await self._fall_back(row, rows, others, result.detail)
        return Delivery(result.verdict, result.detail, merged if result.verdict is Verdict.SENT else ())

    async def _fall_back(
        self,
        row: OutboxMessage,
        rows: Sequence[OutboxMessage],
        others: tuple[int, ...],
        reason: str,
    ) -> Delivery:
        if self.fallback is None:
            return Delivery(Verdict.HOLD, f"held: {reason}", others)
        # Only a template names the cases (number, status): read them here, not for every push.
        async with reading(self.factory) as session:
            found = {c.id: c for c in await get_cases(session, {r.case_id for r in rows if r.case_id is not None})}
        data = template_data(rows, found, self.fallback.fields, self.clock.now().astimezone(self.zone))
        result: Result
        if self.fallback.kind == "subscribe":
            result = await self.api.send_subscribe(row.recipient, self.fallback.template_id, data)
            channel = SUBSCRIBE_CHANNEL
        else:
            result = await self.api.send_template(row.recipient, self.fallback.template_id, data)
            channel = TEMPLATE_CHANNEL
        log.info("customer-service message fell back", extra={"outbox_id": row.id, "kind": self.fallback.kind})
        if result.errcode == SUBSCRIPTION_REFUSED:
            return Delivery(Verdict.HOLD, f"held: {reason}; {result.detail}", others)
        if result.verdict is Verdict.SENT:
            return Delivery(Verdict.SENT, reason, others, channel)
        return Delivery(result.verdict, f"{self.fallback.kind}: {result.detail}")


def update_text(row: OutboxMessage) -> str:
    """The words of one push (a text; anything else is named by its kind)."""
    payload = row.payload
    if payload.get("msgtype") == "text":
        return str(payload.get("text", {}).get("content", ""))
    return messages.MERGED_OTHER.format(kind=payload.get("msgtype", "?"))


def merged_text(rows: Sequence[OutboxMessage]) -> str:
    """Several updates as one message, each listed, oldest first."""
    if len(rows) == 1:
        return update_text(rows[0])
    items = "\n".join(messages.MERGED_ITEM.format(n=i, text=update_text(r)) for i, r in enumerate(rows, 1))
    return messages.MERGED_UPDATES.format(count=len(rows), items=items)


def template_data(
    rows: Sequence[OutboxMessage], cases: dict[int | None, Case], fields: dict[str, str], now: datetime
) -> dict[str, str]:
    """Our four values (number, status, summary, time) under the template's keys, each within the
    length WeChat allows for its key's type."""
    latest = rows[-1]
    case = cases.get(latest.case_id)
    numbers = list(dict.fromkeys(c.number for r in rows if (c := cases.get(r.case_id)) is not None))
    number = numbers[-1] if numbers else messages.TEMPLATE_NO_NUMBER
    if len(numbers) > 1:
        number = messages.TEMPLATE_NUMBERS.format(number=number, count=len(numbers))
    summary = (
        short(update_text(latest), numbers) if len(rows) == 1 else messages.TEMPLATE_SUMMARY.format(count=len(rows))
    )
    ours = {
        "number": number,
        "status": case.status if case is not None else messages.TEMPLATE_NO_STATUS,
        "summary": summary,
        "time": now.strftime("%Y年%m月%d日 %H:%M"),  # the format WeChat documents for time values
    }
    return {key: _fit(key, ours[name]) for name, key in fields.items() if name in ours}


def short(text: str, numbers: Sequence[str]) -> str:
    """A push as a template's summary value: the case number (shown in its own field) and the
    boilerplate dropped, so the news itself fits WeChat's 20 characters."""
    for number in numbers:
        text = text.replace(f"（{number}）", "").replace(f"工单 {number}", "").replace(number, "")
    for phrase in messages.TEMPLATE_DROP:
        text = text.replace(phrase, "")
    return " ".join(text.split()).lstrip("：:，, ")


def _fit(key: str, value: str) -> str:
    kind = key.rstrip("0123456789")
    limit = _VALUE_LIMITS.get(kind)
    if limit is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…"
