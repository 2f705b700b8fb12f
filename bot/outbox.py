"""Outbox delivery: claim due pushes, send them, record the verdict. Nothing is lost on failure."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from bot.clock import Clock
from bot.wechat_api import Result, Verdict
from handlers.pushes import WECOM_APP, WECOM_ROBOT
from storage import outbox
from storage.db import SessionFactory, transaction
from storage.models import OutboxMessage

log = logging.getLogger("gridbot.outbox")

LEASE = timedelta(seconds=60)
MEDIA_FETCH = "media_fetch"
WECOM_MEDIA_FETCH = "wecom_media_fetch"  # a WeCom member's photo: fetched with the WeCom app's token
# Which media channel fetches what a message on each inbound channel carries.
MEDIA_CHANNELS = {"wechat": MEDIA_FETCH, "wecom": WECOM_MEDIA_FETCH}
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "audio/amr": ".amr",
    "audio/speex": ".speex",
    "audio/mpeg": ".mp3",
}


def media_path(media_dir: Path, media_id: str, content_type: str) -> Path:
    """Where a media id's file lives: the id made safe for a file name, plus an extension."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", media_id)[:128]
    return media_dir / f"{safe}{_EXTENSIONS.get(content_type, '.bin')}"


# One channel's delivery: (recipient, payload) → what happened. Channels: wechat_cs (客服消息,
# recipient an openid), media_fetch and wecom_media_fetch (recipient "media:<id>"), wecom_app (a
# WeCom user id) and wecom_robot (a group robot's key); bot.app registers them.
Sender = Callable[[str, dict[str, Any]], Awaitable[Result]]


class MediaSource(Protocol):
    async def fetch_media(self, media_id: str) -> tuple[Result, bytes, str]: ...


class MediaFetcher:
    """Saves a photo or voice note before WeChat (or WeCom) forgets it (3 days)."""

    def __init__(self, api: MediaSource, media_dir: Path | None) -> None:
        self.api = api
        self.media_dir = media_dir

    async def __call__(self, recipient: str, payload: dict[str, Any]) -> Result:
        if self.media_dir is None:
            return Result(Verdict.PARK, "GRIDBOT_MEDIA_DIR is not set")
        media_id = str(payload["media_id"])
        result, body, kind = await self.api.fetch_media(media_id)
        if result.verdict is Verdict.SENT:
            path = media_path(self.media_dir, media_id, kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(path.write_bytes, body)
        return result


@dataclass(frozen=True)
class Delivery:
    """What a policy did with a row: the verdict, and what else went (or waits) with it."""

    verdict: Verdict
    detail: str = ""
    merged: tuple[int, ...] = ()  # other rows delivered inside this one (or held with it)
    channel: str | None = None  # the channel it actually went out on, when not its own

    @classmethod
    def of(cls, result: Result) -> Delivery:
        return cls(result.verdict, result.detail)


class DeliveryPolicy(Protocol):
    """A channel whose sending rules need more than (recipient, payload): it sees the whole row
    (and may read the database) before deciding how, or whether, to send (bot/delivery.py)."""

    async def __call__(self, row: OutboxMessage) -> Delivery: ...


@dataclass(frozen=True)
class RateLimit:
    """At most `count` messages to one recipient in any `seconds`."""

    count: int
    seconds: float


# WeCom's rules: app messages 30 a minute and 1,000 an hour to one member (beyond that WeCom drops
# them silently); a group robot takes 20 a minute. Over the limit we wait, never drop.
DEFAULT_RATE_LIMITS: dict[str, tuple[RateLimit, ...]] = {
    WECOM_APP: (RateLimit(30, 60), RateLimit(1000, 3600)),
    WECOM_ROBOT: (RateLimit(20, 60),),
}


BASE_DELAY = 2.0
MAX_DELAY = 600.0
QUOTA_DELAY = 900.0


def backoff(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter, capped."""
    return rng.uniform(0.5, 1.0) * min(MAX_DELAY, BASE_DELAY * 2 ** min(attempts, 20))


class OutboxWorker:
    def __init__(
        self,
        factory: SessionFactory,
        senders: Mapping[str, Sender],
        clock: Clock,
        *,
        poll_seconds: float = 2.0,
        rng: random.Random | None = None,
        policies: Mapping[str, DeliveryPolicy] | None = None,
        rate_limits: Mapping[str, Sequence[RateLimit]] | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self.factory = factory
        self.lease = lease
        self.senders = dict(senders)
        self.policies = dict(policies or {})
        self.rate_limits = dict(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()

    def kick(self) -> None:
        """Something was just committed to the outbox: look now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many messages were attempted."""
        claimed_at = self.clock.now()
        async with transaction(self.factory) as session:
            due = await outbox.claim_due(session, now=claimed_at, lease=self.lease)
        # The batch shares one lease. Past its half no new delivery starts (one delivery, a few calls
        # bounded by the outbound timeout, fits in the other half: Settings checks it): a row whose
        # lease ran out while it waited behind slow sends could be taken, and sent, by another process.
        last_start = claimed_at + self.lease / 2
        blocked: set[str] = set()
        for index, row in enumerate(due):
            assert row.id is not None
            if self.clock.now() > last_start:
                async with transaction(self.factory) as session:
                    for rest in due[index:]:
                        assert rest.id is not None
                        await outbox.release(session, row_id=rest.id)
                log.warning("outbox batch outran half its lease", extra={"released": len(due) - index})
                return index
            if row.recipient in blocked:
                # An earlier message to this person just failed: keep their order, release the lease.
                async with transaction(self.factory) as session:
                    await outbox.release(session, row_id=row.id)
                continue
            free_at = await self._rate_limited(row)
            if free_at is not None:
                # Over the channel's rate: due again when the window frees; later rows wait behind it.
                blocked.add(row.recipient)
                async with transaction(self.factory) as session:
                    await outbox.reschedule(session, row_id=row.id, at=free_at)
                continue
            result = await self._deliver(row)
            now = self.clock.now()
            async with transaction(self.factory) as session:
                if result.verdict is Verdict.SENT:
                    await outbox.mark_sent(
                        session, row_id=row.id, now=now, channel=result.channel, merged=result.merged
                    )
                    continue
                blocked.add(row.recipient)
                if result.verdict is Verdict.HOLD:
                    log.info("push held until the recipient writes", extra={"outbox_id": row.id})
                    await outbox.hold(session, row_id=row.id, error=result.detail, merged=result.merged)
                elif result.verdict is Verdict.PARK:
                    log.warning("push parked", extra={"outbox_id": row.id, "error": result.detail})
                    await outbox.mark_parked(session, row_id=row.id, error=result.detail)
                else:
                    delay = QUOTA_DELAY if result.verdict is Verdict.BACK_OFF else backoff(row.attempts, self.rng)
                    await outbox.mark_retry(
                        session, row_id=row.id, at=now + timedelta(seconds=delay), error=result.detail
                    )
        return len(due)

    async def _deliver(self, row: OutboxMessage) -> Delivery:
        policy = self.policies.get(row.channel)
        if policy is not None:
            return await policy(row)
        sender = self.senders.get(row.channel)
        if sender is None:  # e.g. a WeCom push on a server where WeCom is not configured
            return Delivery(Verdict.PARK, f"channel {row.channel} is not configured")
        return Delivery.of(await sender(row.recipient, row.payload))

    async def _rate_limited(self, row: OutboxMessage) -> datetime | None:
        """When the recipient's window frees, if sending now would exceed a rate limit. Counted
        from the sent rows, so every process shares the count; claim_due hands out one row per
        recipient at a time, so two workers cannot both take the last free slot."""
        limits = self.rate_limits.get(row.channel)
        if not limits:
            return None
        now = self.clock.now()
        free_at: datetime | None = None
        async with transaction(self.factory) as session:
            for limit in limits:
                window = timedelta(seconds=limit.seconds)
                times = await outbox.recent_sent_times(
                    session, recipient=row.recipient, channel=row.channel, since=now - window, limit=limit.count
                )
                if len(times) >= limit.count:
                    at = times[limit.count - 1] + window
                    free_at = at if free_at is None else max(free_at, at)
        return free_at

    async def drain(self, max_rounds: int = 100) -> None:
        """Deliver until nothing more is due now (tests and shutdown)."""
        for _ in range(max_rounds):
            if await self.run_once() == 0:
                return

    async def run_forever(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("outbox round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
