"""Outbox delivery: claim due pushes, send them, record the verdict. Nothing is lost on failure."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.wechat_api import Result, Verdict
from handlers.pushes import WECOM_APP, WECOM_ROBOT
from storage import outbox
from storage.db import SessionFactory, reading, transaction
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


PARALLEL = 8  # recipients delivered at once: each waits mostly on WeChat's answer or the database


def _by_recipient(due: Sequence[OutboxMessage]) -> list[list[OutboxMessage]]:
    """The batch as one lane per recipient, each in the order claimed (oldest first)."""
    lanes: dict[str, list[OutboxMessage]] = {}
    for row in due:
        lanes.setdefault(row.recipient, []).append(row)
    return list(lanes.values())


async def _all_or_none(coros: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run together; the first failure cancels the rest and is raised as itself."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


Write = Callable[[AsyncSession], Awaitable[None]]


class _Outcomes:
    """Group commit for a batch's verdicts: what finishes while one transaction commits goes in the
    next, together (on SQLite each transaction queues for the one writer). A row stays leased until
    its verdict is committed, so a crash in between means a resend after the lease, never a loss —
    as with a transaction per push."""

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self._sent: list[outbox.Sent] = []
        self._writes: list[Write] = []
        self._group: asyncio.Future[bool] | None = None  # the next commit: True once it is done
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    def sent(self, sent: outbox.Sent) -> asyncio.Future[bool]:
        self._sent.append(sent)
        return self._next_commit()

    def write(self, write: Write) -> asyncio.Future[bool]:
        """Any other verdict (hold, park, retry, reschedule, release): its own statements, kept per row."""
        self._writes.append(write)
        return self._next_commit()

    @property
    def failed(self) -> bool:
        """A commit failed: nothing more will be recorded in this batch, so nothing more should go."""
        return self._failed

    def _next_commit(self) -> asyncio.Future[bool]:
        if self._failed:
            refused = asyncio.get_running_loop().create_future()
            refused.set_result(False)
            return refused
        if self._group is None:
            self._group = asyncio.get_running_loop().create_future()
        if self._task is None:
            self._task = asyncio.create_task(self._commit())
        return self._group

    async def _commit(self) -> None:
        while self._group is not None and not self._failed:
            sent, writes, group = self._sent, self._writes, self._group
            self._sent, self._writes, self._group = [], [], None
            try:
                async with transaction(self.factory) as session:
                    await outbox.mark_sent(session, sent)
                    for write in writes:
                        await write(session)
            except BaseException:
                self._failed = True
                group.set_result(False)
                raise
            group.set_result(True)
        self._task = None

    async def close(self) -> None:
        """Wait until every verdict handed in is committed; raises what made a commit fail."""
        while self._task is not None:
            await self._task

    def abandon(self) -> None:
        """Stop committing (run_once is ending): what is not committed yet stays leased."""
        if self._task is not None:
            self._task.cancel()


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
        if not due:
            return 0
        # The batch shares one lease. Past its half no new delivery starts (one delivery, a few calls
        # bounded by the outbound timeout, fits in the other half: Settings checks it): a row whose
        # lease ran out while it waited behind slow sends could be taken, and sent, by another process.
        last_start = claimed_at + self.lease / 2
        lanes = iter(_by_recipient(due))
        started: set[int] = set()
        outcomes = _Outcomes(self.factory)
        try:
            await _all_or_none(
                [self._work(lanes, outcomes, last_start, started) for _ in range(min(PARALLEL, len(due)))]
            )
            unstarted = [row.id for row in due if row.id is not None and row.id not in started]
            if unstarted:
                outcomes.write(functools.partial(outbox.release, row_ids=unstarted))
                log.warning("outbox batch outran half its lease", extra={"released": len(unstarted)})
            await outcomes.close()
        except Exception:
            # What went out before the failure is recorded if it can be (else it goes again after the lease).
            with contextlib.suppress(Exception):
                await outcomes.close()
            raise
        finally:
            outcomes.abandon()
        return len(due) - len(unstarted)

    async def _work(
        self, lanes: Iterator[list[OutboxMessage]], outcomes: _Outcomes, last_start: datetime, started: set[int]
    ) -> None:
        """Take one recipient's rows after another until none are left or delivery must stop."""
        for rows in lanes:
            if not await self._deliver_lane(rows, outcomes, last_start, started):
                return

    async def _deliver_lane(
        self, rows: list[OutboxMessage], outcomes: _Outcomes, last_start: datetime, started: set[int]
    ) -> bool:
        """One recipient's rows, strictly in order. False: stop taking lanes (half the lease is gone,
        or recording a verdict failed)."""
        for index, row in enumerate(rows):
            assert row.id is not None
            if self.clock.now() > last_start or outcomes.failed:
                return False
            started.add(row.id)
            pushed = await self._push(row, outcomes, last_start)
            if pushed is None:  # half the lease went by while it waited for the database: not started
                started.discard(row.id)
                return False
            committed, delivered = pushed
            rest = [r.id for r in rows[index + 1 :] if r.id is not None]
            if not rest:
                return True
            if not delivered:
                # An earlier message to this person failed: keep their order, release the lease.
                started.update(rest)
                outcomes.write(functools.partial(outbox.release, row_ids=rest))
                return True
            # The next row's policy reads what this one left (the quota used, what is undelivered).
            if not await committed:
                return False
        return True

    async def _push(
        self, row: OutboxMessage, outcomes: _Outcomes, last_start: datetime
    ) -> tuple[asyncio.Future[bool], bool] | None:
        """Deliver one row and hand its outcome to be recorded: (its commit, whether it went out)."""
        assert row.id is not None
        free_at = await self._rate_limited(row)
        if free_at is None and self.clock.now() > last_start:
            return None
        if free_at is not None:
            # Over the channel's rate: due again when the window frees; later rows wait behind it.
            return outcomes.write(functools.partial(outbox.reschedule, row_id=row.id, at=free_at)), False
        result = await self._deliver(row)
        now = self.clock.now()
        if result.verdict is Verdict.SENT:
            return outcomes.sent(outbox.Sent(row.id, now, result.channel, result.merged)), True
        if result.verdict is Verdict.HOLD:
            log.info("push held until the recipient writes", extra={"outbox_id": row.id})
            write = functools.partial(outbox.hold, row_id=row.id, error=result.detail, merged=result.merged)
        elif result.verdict is Verdict.PARK:
            log.warning("push parked", extra={"outbox_id": row.id, "error": result.detail})
            write = functools.partial(outbox.mark_parked, row_id=row.id, error=result.detail)
        else:
            delay = QUOTA_DELAY if result.verdict is Verdict.BACK_OFF else backoff(row.attempts, self.rng)
            at = now + timedelta(seconds=delay)
            write = functools.partial(outbox.mark_retry, row_id=row.id, at=at, error=result.detail)
        return outcomes.write(write), False

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
        async with reading(self.factory) as session:
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
