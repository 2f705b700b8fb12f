"""Receiving one message: stored before it is answered, processed exactly once, answered in time.

1. The message is written to the inbound log in its own short transaction. A duplicate key means
   WeChat is retrying: the retry gets the reply the first delivery produced.
2. Processing claims the row, runs the handlers and commits the case change, its events, the
   outbox rows and the reply together.
3. The webhook waits for that within the reply budget. Past it WeChat gets "success" and the
   reply goes out as a customer-service message when processing finishes.
4. A process that dies after step 1 leaves the row "received"; `recover()` processes it later and
   replies through customer service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.outbox import MEDIA_CHANNELS
from handlers.context import Services
from handlers.pipeline import handle
from handlers.pushes import REPLY_CHANNEL, text_push
from handlers.types import Inbound
from storage import inbound, outbox
from storage.db import SessionFactory, transaction, unavailable

log = logging.getLogger("gridbot.receive")

PASSIVE = "passive"
CUSTOMER_SERVICE = "customer_service"
NONE = "none"
PROCESSING_AT_ONCE = 8  # of the 15 pooled connections (SQLAlchemy: 5 + 10 overflow): the store and delivery keep theirs
PROCESSING_FAILED = "抱歉，系统处理出了问题。您的消息已保存，工作人员会尽快处理。"


@dataclass
class _Handoff:
    """Decides, without a race, whether the reply goes back passively or through the outbox."""

    abandoned: bool = False  # the webhook gave up waiting: reply through customer service
    committing: bool = False  # processing chose the passive reply and is committing it
    done: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Receiver:
    def __init__(
        self,
        factory: SessionFactory,
        services: Services,
        clock: Clock,
        *,
        budget: float,
        on_outbox: Callable[[], None] = lambda: None,
        fetch_media: bool = False,
    ) -> None:
        self.fetch_media = fetch_media
        self.factory = factory
        self.services = services
        self.clock = clock
        self.budget = budget
        self.on_outbox = on_outbox
        self.tasks: set[asyncio.Task[None]] = set()
        # Messages processed at once. Past capacity, unbounded processing took every pooled
        # PostgreSQL connection and the next message could not even be stored (answered in time);
        # the rest wait here, stored and acknowledged, holding no connection.
        self.processing = asyncio.Semaphore(PROCESSING_AT_ONCE)

    async def receive(self, msg: Inbound, dedupe_key: str) -> str | None:
        """The passive reply to give WeChat now (None: answer "success")."""
        started = self.clock.monotonic()
        try:
            # Durable: WeChat hears "stored" for it (even a power cut must not lose it).
            async with transaction(self.factory, durable=True) as session:
                row = inbound.new_row(
                    dedupe_key=dedupe_key,
                    channel=msg.channel,
                    sender=msg.sender,
                    msg_type=msg.kind,
                    payload=msg.to_payload(),
                    now=self.clock.now(),
                )
                session.add(row)
                # Their message opens WeChat's customer-service window again: what was held for
                # them (bot/delivery.py) is due now, committed with the message that woke it.
                # (Events do not: see storage.inbound.last_from.)
                if msg.kind != "event":
                    await outbox.wake_held(session, recipient=msg.sender, now=self.clock.now())
        except IntegrityError:
            return await self._retry(dedupe_key)
        assert row.id is not None
        handoff = _Handoff()
        self._track(self._process(row.id, msg, handoff))
        remaining = max(self.budget - (self.clock.monotonic() - started), 0.05)
        try:
            return await asyncio.wait_for(asyncio.shield(handoff.done), remaining)
        except TimeoutError:
            if not handoff.committing:
                handoff.abandoned = True
                log.warning("reply budget exceeded; will reply via customer service", extra={"inbound_id": row.id})
                return None
        # The passive reply is being committed right now: commits are quick, wait a little more.
        try:
            return await asyncio.wait_for(asyncio.shield(handoff.done), 0.8)
        except TimeoutError:
            handoff.abandoned = True
            return None

    async def _retry(self, dedupe_key: str) -> str | None:
        async with transaction(self.factory) as session:
            row = await inbound.by_key(session, dedupe_key)
        if row is not None and row.reply_mode == PASSIVE:
            return row.reply
        # Still being processed (or answered through customer service): "success" and no second case.
        return None

    async def _process(self, row_id: int, msg: Inbound, handoff: _Handoff | None) -> None:
        async with self.processing:
            await self._process_one(row_id, msg, handoff)

    async def _process_one(self, row_id: int, msg: Inbound, handoff: _Handoff | None) -> None:
        try:
            async with transaction(self.factory) as session:
                now = self.clock.now()
                if not await inbound.claim(session, row_id=row_id, now=now):
                    return
                reply, outcome = await handle(session, msg, self.services, now)
                if reply and (handoff is None or handoff.abandoned):
                    outbox.enqueue(
                        session,
                        channel=REPLY_CHANNEL[msg.channel],
                        recipient=msg.sender,
                        payload=text_push(reply),
                        now=now,
                        case_id=outcome.case_id,
                    )
                    mode = CUSTOMER_SERVICE
                else:
                    mode = PASSIVE if reply else NONE
                    if handoff is not None:
                        handoff.committing = True
                await inbound.finish(session, row_id=row_id, reply=reply, mode=mode, case_id=outcome.case_id)
                if msg.media_id and self.fetch_media:
                    outbox.enqueue(
                        session,
                        channel=MEDIA_CHANNELS[msg.channel],
                        recipient=f"media:{msg.media_id}",
                        now=now,
                        payload={"media_id": msg.media_id},
                        case_id=outcome.case_id,
                    )
            if handoff is not None and mode == PASSIVE and handoff.abandoned:
                # The webhook stopped waiting while the passive reply was committing: send it anyway.
                async with transaction(self.factory) as session:
                    outbox.enqueue(
                        session,
                        channel=REPLY_CHANNEL[msg.channel],
                        recipient=msg.sender,
                        payload=text_push(reply or ""),
                        now=self.clock.now(),
                        case_id=outcome.case_id,
                    )
                    await inbound.finish(
                        session, row_id=row_id, reply=reply, mode=CUSTOMER_SERVICE, case_id=outcome.case_id
                    )
            self.on_outbox()
            if handoff is not None and not handoff.done.done():
                handoff.done.set_result(reply)
        except Exception as exc:
            # The resident gets an apology instead of WeChat's "service unavailable"; the message
            # is kept either way. Lost the database: it stays "received" and recover() handles it
            # when the database is back. A message that breaks a handler is marked failed, for a
            # person to look at.
            try:
                if unavailable(exc):
                    log.warning("storage unavailable while processing", extra={"inbound_id": row_id})
                else:
                    log.exception("processing failed", extra={"inbound_id": row_id})
                    async with transaction(self.factory) as session:
                        await inbound.mark_failed(session, row_id=row_id, now=self.clock.now())
            except Exception:
                log.exception(
                    "cannot mark the message failed; it will be processed again", extra={"inbound_id": row_id}
                )
            finally:
                if handoff is not None and not handoff.done.done():
                    handoff.done.set_result(PROCESSING_FAILED)

    async def recover(self, *, older_than_seconds: float = 10.0) -> int:
        """Process messages that were stored and acknowledged but never processed (a crash)."""
        cutoff = self.clock.now() - timedelta(seconds=older_than_seconds)
        async with transaction(self.factory) as session:
            ids = await inbound.unprocessed(session, received_before=cutoff)
        for row_id in ids:
            async with transaction(self.factory) as session:
                row = await inbound.get(session, row_id)
            if row is None:
                continue
            await self._process(row_id, Inbound.from_payload(row.payload), None)
        return len(ids)

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def wait_idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
