"""Access tokens shared by every process, refreshed by one of them at a time.

WeChat and WeCom both hand out a token per app (good for 7,200 s) from a daily quota of 2,000
fetches, and each fetch invalidates the previous token within 5 minutes: a process that fetched its
own would break the others'. So the token lives in the database (table access_token, the truth);
a process that finds it missing, near its expiry or rejected (40001/40014/42001) takes the row's
refresh lease with a compare-and-set, fetches, stores and releases; the others wait and read what
it stored. A refresher that dies leaves a lease that runs out, and the next caller takes over.

Each process keeps a copy for a minute, so a send costs no database read; a minute is well inside
the 5 minutes an old token keeps working after another process refreshed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError

from bot.clock import Clock
from storage import tokens
from storage.db import SessionFactory, transaction

log = logging.getLogger("gridbot.tokens")

# A token is replaced this long before it expires (WeChat's advice), and never used closer to it.
EARLY = timedelta(minutes=5)
# How long a process trusts its own copy before reading the database again.
MEMO = timedelta(minutes=1)
# WeChat counts the daily quota by Beijing time.
QUOTA_ZONE = ZoneInfo("Asia/Shanghai")
# A healthy deployment fetches about a dozen tokens a day per app; many more means something loops.
FETCH_ALARM = 100


class TokenError(Exception):
    """No token to be had now (the fetch failed, or another process's refresh did not finish in time).
    The text is safe to store: never the token or the secret."""


# Fetches a new token from the API: (token, expires_in seconds), or raises TokenError.
Fetch = Callable[[], Awaitable[tuple[str, int]]]


@dataclass(frozen=True)
class _Copy:
    token: str
    until: datetime


class SharedTokens:
    """The tokens of every API app this process talks to, each under its key (e.g. wechat:<appid>).

    lease: how long a refresher may take (longer than the fetch's HTTP timeout); wait: how long a
    caller waits for another process's refresh before giving up (longer than the lease, so that
    after a crash it takes over itself)."""

    def __init__(
        self, factory: SessionFactory, clock: Clock, *, lease: float, wait: float | None = None, poll: float = 0.05
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.lease = timedelta(seconds=lease)
        self.wait = lease + 1 if wait is None else wait
        self.poll = poll
        self._copies: dict[str, _Copy] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, key: str, fetch: Fetch, *, stale: str | None = None) -> str:
        """The current token. stale: a token the API just refused; a new one is fetched only if the
        stored token is still that one (another process may have replaced it already).

        Call it with no transaction open: it runs its own (on SQLite one at a time per process)."""
        # One caller per key in this process goes to the database; the rest find its copy.
        async with self._locks.setdefault(key, asyncio.Lock()):
            copy = self._copies.get(key)
            if copy is not None and copy.token != stale and self.clock.now() < copy.until:
                return copy.token
            try:
                return await self._shared(key, fetch, stale)
            except (SQLAlchemyError, OSError) as exc:
                # The send is retried later like any other failure; no driver text (it may quote the token).
                raise TokenError(f"token store unavailable: {type(exc).__name__}") from exc

    async def _shared(self, key: str, fetch: Fetch, stale: str | None) -> str:
        deadline = self.clock.monotonic() + self.wait
        pause = self.poll
        while True:
            now = self.clock.now()
            owner = uuid.uuid4().hex
            async with transaction(self.factory) as session:
                row = await tokens.read(session, key=key)
                token, expires_at = (row.token, row.expires_at) if row is not None else (None, None)
                if token and expires_at and token != stale and now < expires_at - EARLY:
                    return self._keep(key, token, expires_at, now)
                won = await tokens.take_lease(
                    session, key=key, seen=token, now=now, until=now + self.lease, owner=owner
                )
            if won:
                return await self._refresh(key, fetch, owner)
            if self.clock.monotonic() >= deadline:
                raise TokenError("another process is refreshing the access token; gave up waiting")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def _refresh(self, key: str, fetch: Fetch, owner: str) -> str:
        try:
            token, expires_in = await fetch()
        except BaseException:
            with contextlib.suppress(Exception):  # if even this fails, the lease runs out by itself
                async with transaction(self.factory) as session:
                    await tokens.release(session, key=key, owner=owner)
            raise
        now = self.clock.now()
        # WeChat says 7,200 s; a shorter answer still gets a minute of use before the early refresh.
        expires_at = now + max(timedelta(seconds=expires_in), EARLY + timedelta(minutes=1))
        day = now.astimezone(QUOTA_ZONE).strftime("%Y%m%d")
        try:
            async with transaction(self.factory) as session:
                fetches = await tokens.store(
                    session, key=key, owner=owner, token=token, expires_at=expires_at, now=now, day=day
                )
        except (SQLAlchemyError, OSError) as exc:
            # The token is good; the others will fetch their own once our lease runs out.
            log.warning("access token not stored", extra={"key": key, "error": type(exc).__name__})
            return self._keep(key, token, expires_at, now)
        if fetches is None:
            # Our lease ran out and another process took over: its token is the one to share. Ours
            # still works for a few minutes, so this one call uses it.
            log.warning("access token refresh overtaken", extra={"key": key})
            self._copies.pop(key, None)
            return token
        log.info(
            "access token refreshed",
            extra={"key": key, "expires": expires_at.isoformat(), "fetches_today": fetches},
        )
        if fetches >= FETCH_ALARM:
            log.warning("many access token fetches today", extra={"key": key, "fetches_today": fetches})
        return self._keep(key, token, expires_at, now)

    def _keep(self, key: str, token: str, expires_at: datetime, now: datetime) -> str:
        self._copies[key] = _Copy(token, min(expires_at - EARLY, now + MEMO))
        return token
