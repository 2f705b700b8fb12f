"""Outbox delivery: claim due pushes, send them, record the verdict. Nothing is lost on failure."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from bot.clock import Clock
from bot.wechat_api import Result, Verdict
from storage import outbox
from storage.db import SessionFactory, transaction

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
    ) -> None:
        self.factory = factory
        self.senders = dict(senders)
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()

    def kick(self) -> None:
        """Something was just committed to the outbox: look now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many messages were attempted."""
        async with transaction(self.factory) as session:
            due = await outbox.claim_due(session, now=self.clock.now(), lease=LEASE)
        blocked: set[str] = set()
        for row in due:
            assert row.id is not None
            if row.recipient in blocked:
                # An earlier message to this person just failed: keep their order, release the lease.
                async with transaction(self.factory) as session:
                    await outbox.release(session, row_id=row.id)
                continue
            result = await self._deliver(row.channel, row.recipient, row.payload)
            now = self.clock.now()
            async with transaction(self.factory) as session:
                if result.verdict is Verdict.SENT:
                    await outbox.mark_sent(session, row_id=row.id, now=now)
                    continue
                blocked.add(row.recipient)
                if result.verdict is Verdict.PARK:
                    log.warning("push parked", extra={"outbox_id": row.id, "error": result.detail})
                    await outbox.mark_parked(session, row_id=row.id, error=result.detail)
                else:
                    delay = QUOTA_DELAY if result.verdict is Verdict.BACK_OFF else backoff(row.attempts, self.rng)
                    await outbox.mark_retry(
                        session, row_id=row.id, at=now + timedelta(seconds=delay), error=result.detail
                    )
        return len(due)

    async def _deliver(self, channel: str, recipient: str, payload: dict[str, Any]) -> Result:
        sender = self.senders.get(channel)
        if sender is None:  # e.g. a WeCom push on a server where WeCom is not configured
            return Result(Verdict.PARK, f"channel {channel} is not configured")
        return await sender(recipient, payload)

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
