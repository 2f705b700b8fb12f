"""Receiving one message: stored before it is answered, processed exactly once, answered in time.

1. The message is written to the inbound log. Messages that arrive while a commit is under way are
   stored together by the next one (group commit: one fsync for the lot, not one each). A key that
   is already stored means WeChat is retrying: the retry gets the reply the first delivery produced.
2. Processing claims the row, runs the handlers and commits the case change, its events, the
   outbox rows and the reply together.
3. The webhook waits for that within the reply budget (1 s). Past it the sender hears 已收到 and
   the reply goes out as a customer-service message when processing finishes. When processing is
   busy (every slot taken: a flood), it does not wait at all.
4. A process that dies after step 1 leaves the row "received"; `recover()` processes it later and
   replies through customer service.

Processing may run in a process of its own (GRIDBOT_PROCESSING=separate, `gridbot process`): then
the webhook processes (and the web processes) only store and answer, and processing takes the
stored rows from the database (`process_stored`). The handoff of step 3 is then made in the row:
a message nobody waits for is stored with its reply mode already set (customer service); the
webhook that waits reads the row for the reply, and when the budget runs out it marks the row
(`inbound.abandon`), which either lands before processing claims it (customer service) or waits
for processing's row lock and finds the passive reply committed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot.clock import Clock
from bot.outbox import MEDIA_CHANNELS
from handlers.context import Services
from handlers.pipeline import handle
from handlers.pushes import REPLY_CHANNEL, text_push
from handlers.types import Inbound
from storage import inbound, outbox
from storage.db import SessionFactory, reading, stale_connection, transaction, unavailable

log = logging.getLogger("gridbot.receive")

PASSIVE = "passive"
CUSTOMER_SERVICE = "customer_service"
NONE = "none"
PROCESSING_AT_ONCE = 8  # of the 20 pooled connections (storage.db.POOL_SIZE): the store and the outbox keep theirs
# SQLite: one writer, so processing more at once gains nothing, and each one queued for the write
# lock is one more the outbox's transactions wait behind (under a flood, the replies stopped going out).
SQLITE_PROCESSING_AT_ONCE = 2
# Messages whose passive reply the webhook waits for at once (on PostgreSQL fewer than it processes
# at once). A flood's first messages found all 8 of PostgreSQL's slots free, were waited for, and
# were processed side by side with the flood coming in: the event loop fell behind for a second
# (every answer of it over 100 ms at 500 msg/s) and those 8 ran past the 1 s budget anyway.
WAITED_AT_ONCE = 2
PROCESSING_FAILED = "抱歉，系统处理出了问题。您的消息已保存，工作人员会尽快处理。"
# The passive reply when the answer is not ready within the budget, or would not be (a flood): the
# message is stored, the reply (case number, command result) follows as a customer-service message.
RECEIVED = "已收到，正在处理，请稍候。"
# The webhook is "behind" when storing a message (arrival to commit) took longer than this; it
# counts as behind for HOLD seconds after, and processing steps aside meanwhile (Receiver._slot).
STORE_BEHIND = 0.020
HOLD = 0.5
PATIENCE = 1.0  # seconds processing waits for the webhook to catch up before it goes ahead anyway
# In a flood (FLOOD_RATE messages or more arrived within the last second: faster than processing
# goes on the benchmark machine, 40-70 a second, so it could not keep up anyway), processing takes
# at most SHARE of the event loop's time, one message at a time: the rest is the webhook's
# (Receiver._slot). Below it, processing goes at full speed and keeps up.
FLOOD_RATE = 50
SHARE = 0.25

# Processing in its own process (GRIDBOT_PROCESSING=separate):
REPLY_POLL = 0.005  # how often the webhook reads the row of a message whose reply it waits for
PENDING_POLL = 0.1  # how often the webhook counts the messages waiting for processing
PROCESS_POLL = 0.01  # how often the processing process looks for new messages when it has none
PROCESS_QUEUE = 64  # messages the processing process has taken from the log and not finished

STORE_AT_ONCE = 256  # messages in one group commit (7 bound values each: well under SQLite's limit)
WARM_CONNECTIONS = 4  # PostgreSQL connections opened and used once before the port opens
# What warm_up processes, as a resident would send it (a report with a place: the longest path).
WARM_TEXT = "幸福里小区3号楼东侧路灯坏了"


class _WarmedUp(Exception):
    """Rolls back what warm_up did: it only ran the statements, nothing of it is kept."""


@dataclass
class _Handoff:
    """Decides, without a race, whether the reply goes back passively or through the outbox."""

    abandoned: bool = False  # the webhook gave up waiting: reply through customer service
    committing: bool = False  # processing chose the passive reply and is committing it
    done: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Arrival:
    row: dict[str, Any]  # storage.inbound.new_row
    wakes: bool  # a message (not an event): opens the customer-service window again
    stored: asyncio.Future[int | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    """Stores messages in batches: whatever arrived while the last commit was under way goes into
    the next one. One durable commit costs one fsync (SQLite) or one WAL flush (PostgreSQL), the
    same for 1 message as for 200, so under a flood the disk stops being what limits the webhook.
    Alone, a message is committed at once, as before: batching adds no wait of its own."""

    def __init__(self, factory: SessionFactory, clock: Clock) -> None:
        self.factory = factory
        self.clock = clock
        self._queue: collections.deque[_Arrival] = collections.deque()
        self._writer: asyncio.Task[None] | None = None

    async def store(self, row: dict[str, Any], *, wakes: bool) -> int | None:
        """The row's id once it is durably stored; None when its key was stored before (a retry).
        Raises what the database raised: not stored, so not to be acknowledged."""
        arrival = _Arrival(row, wakes)
        self._queue.append(arrival)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="inbound-store")
        return await asyncio.shield(arrival.stored)

    async def _write(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), STORE_AT_ONCE))]
                try:
                    try:
                        ids = await self._commit(batch)
                    except Exception as exc:
                        if not stale_connection(exc):
                            raise
                        ids = await self._commit(batch)  # a fresh connection (storage.db._ping_when_idle)
                except Exception as exc:
                    for arrival in batch:
                        arrival.stored.set_exception(exc)
                    continue
                for arrival in batch:
                    # A key twice in one batch (a retry hard on the first delivery's heels): the
                    # first arrival stored it, the second is the retry.
                    arrival.stored.set_result(ids.pop(arrival.row["dedupe_key"], None))
        finally:  # cancelled (shutdown): whoever still waits was not stored
            while self._queue:
                self._queue.popleft().stored.set_exception(ConnectionAbortedError("shutting down"))

    async def _commit(self, batch: list[_Arrival]) -> dict[str, int]:
        # Durable (WeChat hears "stored" for these: even a power cut must not lose them), and in one
        # step, not a transaction of several (storage.db.write_durably). Their message opens
        # WeChat's customer-service window again: what was held for them (bot/delivery.py) is due
        # now, committed with the message that woke it. (Events do not: see storage.inbound.last_from.)
        rows = list({a.row["dedupe_key"]: a.row for a in batch}.values())
        waking = {a.row["dedupe_key"] for a in batch if a.wakes}
        return await inbound.store_durably(self.factory, rows, waking=waking, now=self.clock.now())


def _forget(taken: set[int], row_id: int, _task: asyncio.Task[None]) -> None:
    taken.discard(row_id)


def _received(msg: Inbound) -> str | None:
    """What the sender hears when the reply will come later: 已收到 for what a person sent; nothing
    for an event (a subscription's welcome, a menu click's answer simply follows)."""
    return None if msg.kind == "event" else RECEIVED


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
        elsewhere: bool = False,
        passive_within: float | None = None,
    ) -> None:
        """elsewhere: this process only stores and answers; another (`gridbot process`) processes.
        passive_within: this is that processing process; a message nobody marked as not waited for
        is answered passively when it is younger than this (older: its webhook is gone)."""
        self.fetch_media = fetch_media
        self.elsewhere = elsewhere
        self.passive_within = None if passive_within is None else timedelta(seconds=passive_within)
        self.waiting = 0  # elsewhere: requests waiting for a reply from the processing process
        self._pending = 0  # elsewhere: messages waiting for processing, as last counted
        self._handed_over = 0  # elsewhere: messages stored here since that count
        # elsewhere: rows whose reply a webhook waits for, and the one task that reads them all
        self._awaited: dict[int, asyncio.Future[tuple[str, str | None, str | None]]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.factory = factory
        self.services = services
        self.clock = clock
        self.budget = budget
        self.on_outbox = on_outbox
        self.tasks: set[asyncio.Task[None]] = set()
        # Messages processed at once. Past capacity, unbounded processing took every pooled
        # PostgreSQL connection and the next message could not even be stored (answered in time);
        # the rest wait here, stored and acknowledged, holding no connection.
        sqlite = factory.kw["bind"].dialect.name == "sqlite"
        self.at_once = SQLITE_PROCESSING_AT_ONCE if sqlite else PROCESSING_AT_ONCE
        self.processing = asyncio.Semaphore(self.at_once)
        self.store = GroupCommit(factory, clock)
        self.backlog = 0  # messages stored here and not yet processed
        # A lock per person with messages in processing, and how many of them hold or wait for it.
        self._senders: dict[str, tuple[asyncio.Lock, int]] = {}
        self._alone = asyncio.Lock()  # the one message processed while the webhook is behind
        self._behind_until = 0.0  # monotonic
        self._caught_up = asyncio.Event()  # set when a message is stored quickly again
        self.arrivals = 0  # messages the webhook took (bot/heap.py: is it quiet?)
        self._recent: collections.deque[tuple[float, int]] = collections.deque()  # (monotonic, how many)
        self._rest_until = 0.0  # monotonic: in a flood, no processing before this (_slot)

    async def warm_up(self, *, processing: bool) -> None:
        """Before the port opens (or the processing process starts taking messages): open the
        connections and run once, in transactions that are rolled back, what each message runs, so
        that the first messages after a start do not pay for opening connections and compiling and
        preparing statements (the first ones took 130–200 ms to answer). processing: the handlers
        too, with a report from a resident nobody is (nothing of it is kept). Alone it did not
        remove the first-second tail of webhook_load (that was _reply_from_row's polling, since
        batched: benchmarks/README.md); it keeps cold statements out of it."""
        sqlite = self.factory.kw["bind"].dialect.name == "sqlite"
        warming = (self._warm(n, processing=processing) for n in range(1 if sqlite else WARM_CONNECTIONS))
        for failed in await asyncio.gather(*warming, return_exceptions=True):
            if isinstance(failed, Exception):  # only slower first messages: start anyway
                log.warning("warm-up failed; the first messages will be slower", exc_info=failed)

    async def _warm(self, n: int, *, processing: bool) -> None:
        now = self.clock.now()
        msg = Inbound(channel="wechat", sender=f"warm-up-{n}", kind="text", created_at=now, text=WARM_TEXT)
        key = f"warm-up:{n}:{now.timestamp()}"
        with contextlib.suppress(_WarmedUp):
            async with transaction(self.factory, durable=True) as session:
                row = inbound.new_row(
                    dedupe_key=key, channel=msg.channel, sender=msg.sender, msg_type=msg.kind,
                    payload=msg.to_payload(), now=now,
                )  # fmt: skip
                ids = await inbound.store_in(session, [row], waking={key}, now=now)  # the store's statements
                row_id = ids[key]
                await inbound.by_key(session, key)
                await inbound.outcome(session, row_id=row_id)
                await inbound.count_pending(session, limit=self.at_once)
                if processing:
                    await inbound.pending(session, limit=1)
                    await inbound.claim(session, row_id=row_id, now=now)
                    reply, outcome = await handle(session, msg, self.services, now)
                    outbox.enqueue(
                        session, channel=REPLY_CHANNEL[msg.channel], recipient=msg.sender,
                        payload=text_push(reply or ""), now=now, case_id=outcome.case_id,
                    )  # fmt: skip
                    await inbound.finish(session, row_id=row_id, reply=reply, mode=CUSTOMER_SERVICE, case_id=None)
                    await session.flush()
                else:
                    await inbound.abandon(session, row_id=row_id)
                raise _WarmedUp

    async def receive(self, msg: Inbound, dedupe_key: str) -> str | None:
        """The passive reply to give WeChat now (None: answer "success")."""
        started = self.clock.monotonic()
        self.arrived(1)
        if self.elsewhere:
            return await self._hand_over(msg, dedupe_key, started)
        row_id = await self._store(msg, dedupe_key)
        self._stored(self.clock.monotonic() - started)
        if row_id is None:
            return await self._retry(dedupe_key)
        if not self._can_wait():
            self._start(row_id, msg, _Handoff(abandoned=True))
            return _received(msg)
        handoff = _Handoff()
        self._start(row_id, msg, handoff)
        remaining = max(self.budget - (self.clock.monotonic() - started), 0.05)
        try:
            return await asyncio.wait_for(asyncio.shield(handoff.done), remaining)
        except TimeoutError:
            if not handoff.committing:
                handoff.abandoned = True
                log.warning("reply budget exceeded; will reply via customer service", extra={"inbound_id": row_id})
                return _received(msg)
        # The passive reply is being committed right now: commits are quick, wait a little more.
        try:
            return await asyncio.wait_for(asyncio.shield(handoff.done), 0.8)
        except TimeoutError:
            handoff.abandoned = True
            return _received(msg)

    async def _store(self, msg: Inbound, dedupe_key: str, *, reply_mode: str | None = None) -> int | None:
        """Stored durably (group commit): the row's id, or None when WeChat is retrying it."""
        row = inbound.new_row(
            dedupe_key=dedupe_key,
            channel=msg.channel,
            sender=msg.sender,
            msg_type=msg.kind,
            payload=msg.to_payload(),
            now=self.clock.now(),
            reply_mode=reply_mode,
        )
        return await self.store.store(row, wakes=msg.kind != "event")

    async def _hand_over(self, msg: Inbound, dedupe_key: str, started: float) -> str | None:
        """Store the message for the processing process, and wait for its reply when that process
        has nothing queued (a quiet moment: the resident hears the case number at once)."""
        ahead = self._pending + self._handed_over
        wait = self.waiting < WAITED_AT_ONCE and ahead < WAITED_AT_ONCE and not self.behind()
        # Counted now, not once stored: the messages of one group commit all decide before any of
        # them is stored (counted after, a flood's first tens all waited, most past the budget).
        self._handed_over += 1
        self.waiting += wait
        try:
            row_id = await self._store(msg, dedupe_key, reply_mode=None if wait else CUSTOMER_SERVICE)
            self._stored(self.clock.monotonic() - started)
            if row_id is None:
                return await self._retry(dedupe_key)
            if not wait:
                return _received(msg)
            return await self._reply_from_row(row_id, msg, started)
        finally:
            self.waiting -= wait

    async def _reply_from_row(self, row_id: int, msg: Inbound, started: float) -> str | None:
        deadline = started + self.budget
        found: asyncio.Future[tuple[str, str | None, str | None]] = asyncio.get_running_loop().create_future()
        self._awaited[row_id] = found
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_replies(), name="reply-watch")
        try:
            return self._answer(
                msg, *await asyncio.wait_for(asyncio.shield(found), max(deadline - self.clock.monotonic(), 0))
            )
        except TimeoutError:
            pass
        finally:
            self._awaited.pop(row_id, None)
        async with transaction(self.factory) as session:
            abandoned = await inbound.abandon(session, row_id=row_id)
        if abandoned:
            log.warning("reply budget exceeded; will reply via customer service", extra={"inbound_id": row_id})
            return _received(msg)
        async with reading(self.factory) as session:
            return self._answer(msg, *await inbound.outcome(session, row_id=row_id))

    async def _watch_replies(self) -> None:
        """Every REPLY_POLL, one query for all the rows whose reply a webhook waits for. A query per
        waiting request each REPLY_POLL was 1,600 transactions a second with 8 waiting on a slow
        processing process (its first messages after a start): the server's whole CPU, and every
        answer behind them 130–200 ms late."""
        while self._awaited:
            await asyncio.sleep(REPLY_POLL)
            waiting = [row_id for row_id, fut in self._awaited.items() if not fut.done()]
            if not waiting:
                continue
            try:
                async with reading(self.factory) as session:
                    done = await inbound.outcomes(session, row_ids=waiting)
            except Exception as exc:
                if not unavailable(exc):
                    log.exception("cannot read the replies waited for")
                continue  # each waiter gives up at its budget and abandons as usual
            for row_id, result in done.items():
                fut = self._awaited.get(row_id)
                if fut is not None and not fut.done():
                    fut.set_result(result)

    @staticmethod
    def _answer(msg: Inbound, status: str, mode: str | None, reply: str | None) -> str | None:
        if status == "failed":
            return PROCESSING_FAILED
        if mode == PASSIVE:
            return reply
        return None if mode == NONE else _received(msg)

    async def watch_pending(self) -> None:
        """Elsewhere: count, every PENDING_POLL, what waits for the processing process. A webhook
        waits for a reply only while that is less than one round of processing."""
        while True:
            try:
                await self.count_pending()
            except Exception as exc:
                if not unavailable(exc):
                    log.exception("cannot count the messages waiting for processing")
                self._pending = self.at_once  # unknown: do not wait
            await asyncio.sleep(PENDING_POLL)

    async def count_pending(self) -> None:
        async with reading(self.factory) as session:
            counted = await inbound.count_pending(session, limit=self.at_once)
        self._pending, self._handed_over = counted, 0

    async def process_stored(self) -> None:
        """The processing process (`gridbot process`): every stored message, oldest first, whichever
        web process stored it; each person's in the order they arrived (Receiver._in_turn). Runs
        until cancelled."""
        taken: set[int] = set()
        newest: int | None = None
        while True:
            room = PROCESS_QUEUE - len(taken)
            if room <= 0:
                await asyncio.wait(list(self.tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                async with reading(self.factory) as session:
                    rows = await inbound.pending(session, limit=len(taken) + room)
                    last = await inbound.newest_id(session)
            except Exception as exc:
                if not unavailable(exc):
                    log.exception("cannot read the messages to process")
                await asyncio.sleep(1.0)
                continue
            if newest is not None and last > newest:  # stored since the last look: a flood? (_slot)
                self.arrived(last - newest)
            newest = last
            new = [row for row in rows if row.id not in taken][:room]
            oldest_waited = self.clock.now() - (self.passive_within or timedelta(0))
            for row in new:
                taken.add(row.id)
                # A webhook may be waiting for its passive reply (bot.receive._hand_over): first in line.
                waited = row.reply_mode is None and row.received_at > oldest_waited
                task = self._start(row.id, Inbound.from_payload(row.payload), None, waited_for=waited)
                task.add_done_callback(functools.partial(_forget, taken, row.id))
            if not new:
                await asyncio.sleep(PROCESS_POLL)

    async def _retry(self, dedupe_key: str) -> str | None:
        # Only reads: on SQLite it must not queue for the writer behind processing and the outbox
        # (under a flood WeChat's retries waited there past its 5 s and were sent once more).
        async with reading(self.factory) as session:
            row = await inbound.by_key(session, dedupe_key)
        if row is not None and row.reply_mode == PASSIVE:
            return row.reply
        # Still being processed (or answered through customer service): "success" and no second case.
        return None

    def _can_wait(self) -> bool:
        """Whether to wait for this message's reply: only when at most WAITED_AT_ONCE are being
        processed or waiting to be (so it starts at once, among few). Behind others, the sender would
        wait (and the webhook request be held) for the messages ahead: under load that was longer
        than a resident should wait, and every request held makes the next ones slower. Judging by a
        measured rate instead let a burst's first tens of messages wait most of the 1 s budget
        before the estimate caught up (p99 at 500 msg/s: 0.7–1 s, benchmarks/README.md)."""
        return self.backlog < WAITED_AT_ONCE

    def _start(
        self, row_id: int, msg: Inbound, handoff: _Handoff | None, *, waited_for: bool = False
    ) -> asyncio.Task[None]:
        # Counted now, not when the task first runs: the messages of one group commit are judged one
        # after another before any of their tasks has started, and each must see the ones before it.
        self.backlog += 1
        task = asyncio.create_task(self._process(row_id, msg, handoff, waited_for=waited_for))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _process(self, row_id: int, msg: Inbound, handoff: _Handoff | None, *, waited_for: bool = False) -> None:
        """One message, in its sender's turn and within the processing limit; counted in the backlog
        by the caller. waited_for: a webhook in another process may be waiting for its reply."""
        try:
            # A sender the webhook is waiting for goes ahead: it was let wait because its turn comes now.
            waited_for = waited_for or (handoff is not None and not handoff.abandoned)
            async with self._in_turn(msg.sender):
                while True:
                    async with self._slot(waited_for) as paced, self.processing:
                        # A flood that began while this one waited for a processing slot: it goes
                        # back through the pacing lane (it passed _slot before the flood was seen).
                        if paced or waited_for or not (self.flooding() or self.behind()):
                            await self._process_one(row_id, msg, handoff)
                            return
        finally:
            self.backlog -= 1

    def _stored(self, took: float) -> None:
        """How long storing a message took: the webhook's own measure of how far behind it is."""
        if took > STORE_BEHIND:
            self._behind_until = time.monotonic() + HOLD
            self._caught_up.clear()
        elif not self.behind():
            self._caught_up.set()

    def behind(self) -> bool:
        """Storing a message took long within the last HOLD seconds: the webhook is falling behind."""
        return time.monotonic() < self._behind_until

    def arrived(self, count: int) -> None:
        """Messages arrived now: taken by this webhook, or seen stored by the processing process."""
        self.arrivals += count
        now = time.monotonic()
        if self._recent and now - self._recent[-1][0] < 0.1:  # one entry a tenth of a second
            count += self._recent.pop()[1]
        self._recent.append((now, count))

    def flooding(self) -> bool:
        """FLOOD_RATE messages or more arrived within the last second."""
        since = time.monotonic() - 1.0
        while self._recent and self._recent[0][0] < since:
            self._recent.popleft()
        return sum(count for _, count in self._recent) >= FLOOD_RATE

    @contextlib.asynccontextmanager
    async def _slot(self, waited_for: bool) -> AsyncIterator[bool]:
        """Answering comes first: WeChat gives up on an answer after 5 s and sends the message again,
        while processing can catch up later. Processing and the webhook share one event loop, and
        under a flood processing took most of it (at 500 msg/s the answers took 130–220 ms, p50).
        So in a flood (more messages a second than processing could keep up with anyway), processing
        goes one message at a time and takes at most SHARE of the time (a message that took 8 ms is
        followed by 24 ms of rest); while the webhook is behind even so (a slow store), it waits for
        it to catch up, each message after at most PATIENCE (a flood that never ends must not stop
        processing). The others wait here, stored and acknowledged, and go at full speed once the
        flood is over. A message the webhook is waiting on goes straight ahead. Judged by the
        webhook's own store times and arrivals, not by how late the event loop runs: processing
        alone makes the loop late, and so held itself back (after a flood it drained at a third of
        its speed). Without the share, processing went at full speed whenever a store was quick, and
        the loop was never idle: at 500 msg/s on SQLite the answers' p99 was 140–220 ms, and 35–65
        ms with processing paused (benchmarks/README.md)."""
        if waited_for or not (self.flooding() or self.behind()):
            yield False
            return
        await self._alone.acquire()  # one at a time, the rest behind it
        held = True
        try:
            give_up = time.monotonic() + PATIENCE
            # Until a quick store, or HOLD without a slow one, or PATIENCE.
            while self.behind() and (left := min(give_up, self._behind_until) - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._caught_up.wait(), left)
            if not self.behind() and self.flooding():  # caught up, still a flood: the share's rest
                if (rest := min(self._rest_until, give_up) - time.monotonic()) > 0:
                    await asyncio.sleep(rest)
            if not self.behind() and not self.flooding():  # over: the line passes straight through
                self._alone.release()
                held = False
                yield False
                return
            began = time.monotonic()
            try:
                yield True
            finally:
                self._rest_until = time.monotonic() + (time.monotonic() - began) * (1 - SHARE) / SHARE
        finally:
            if held:
                self._alone.release()

    @contextlib.asynccontextmanager
    async def _in_turn(self, sender: str) -> AsyncIterator[None]:
        """One person's messages are processed one at a time, in the order they arrived (asyncio's
        locks are first come, first served): their photo before the text it belongs to, and never
        two transactions at once creating the same resident or updating the same case (on
        PostgreSQL that was a unique violation, or a deadlock, and the message marked failed)."""
        lock, users = self._senders.get(sender, (asyncio.Lock(), 0))
        self._senders[sender] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._senders[sender]
            if users == 1:  # nobody else in line: forget the person
                del self._senders[sender]
            else:
                self._senders[sender] = (lock, users - 1)

    async def _process_one(self, row_id: int, msg: Inbound, handoff: _Handoff | None) -> None:
        try:
            async with transaction(self.factory) as session:
                now = self.clock.now()
                claimed = await inbound.claim(session, row_id=row_id, now=now)
                if claimed is None:
                    return
                if handoff is None and self.passive_within is not None:
                    # The processing process: a webhook waits for this reply unless the row says it
                    # does not (or it is too old for any webhook to be waiting still). Claimed, the
                    # row is locked: the webhook's abandon waits for this commit and reads the reply.
                    waited = claimed.reply_mode is None and now - claimed.received_at < self.passive_within
                    handoff = _Handoff(abandoned=not waited)
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
            self.backlog += 1
            await self._process(row_id, Inbound.from_payload(row.payload), None)
        return len(ids)

    async def wait_idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
