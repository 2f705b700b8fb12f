"""The process's heap and the garbage collector: full collections only when the webhook is quiet.

What startup built (SQLAlchemy's mappers and compiled statements, the keyword tables, the grid) lives
as long as the process, so it is frozen out of the collector's sight: every full collection walked
all of it, 100–200 ms with the event loop stopped, several times a minute under load.

What a flood builds is not frozen: the messages stored and waiting for processing, their tasks, the
caches. CPython's collector runs a full collection whenever that has grown by a quarter, and under a
flood it grew fast: full collections of 35–140 ms in the middle of a 500 msg/s run
(benchmarks/README.md), each a stall of every answer in flight. So the automatic full collections
are off; `collect_when_quiet` runs one at most every FULL_EVERY seconds, at a moment when fewer than
QUIET_RATE messages arrived in the last second, and in any case after FULL_AT_LEAST. The young
generations are still collected automatically (a few milliseconds at most); what reaches the old one
with a reference cycle waits for the next quiet moment.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("gridbot.heap")

FULL_EVERY = 60.0  # seconds: at most this often
FULL_AT_LEAST = 600.0  # seconds: a flood that never ends still gets one this often
QUIET_RATE = 20  # messages in the last second: fewer, and a full collection hurts nobody
NEVER = 2**31 - 1  # the third threshold: the old generation is never collected automatically


_before: tuple[int, int, int] = gc.get_threshold()  # the thresholds before the first app froze
_running = 0  # apps running in this process (the tests run several)


def freeze() -> None:
    """After startup: collect, freeze what is there, and stop automatic full collections."""
    global _before, _running
    if _running == 0:
        _before = gc.get_threshold()
    _running += 1
    gc.collect()
    gc.freeze()
    gc.set_threshold(_before[0], _before[1], NEVER)


def thaw() -> None:
    """At shutdown: once the last app of the process is gone, automatic full collections as before
    the first."""
    global _running
    _running -= 1
    if _running == 0:
        gc.set_threshold(*_before)


@dataclass
class QuietCollector:
    """Decides, once a second, whether now is the moment for a full collection."""

    arrivals: Callable[[], int]  # messages the webhook has taken so far
    clock: Callable[[], float] = time.monotonic
    last_full: float = 0.0
    _seen: int = 0

    def __post_init__(self) -> None:
        self.last_full = self.clock()
        self._seen = self.arrivals()

    def due(self) -> bool:
        """Called once a second: a full collection is due now."""
        count = self.arrivals()
        rate, self._seen = count - self._seen, count
        waited = self.clock() - self.last_full
        return waited >= FULL_AT_LEAST or (waited >= FULL_EVERY and rate < QUIET_RATE)

    def collect(self) -> None:
        started = self.clock()
        found = gc.collect()
        self.last_full = self.clock()
        log.debug("full collection", extra={"ms": round((self.last_full - started) * 1000, 1), "found": found})


async def collect_when_quiet(collector: QuietCollector) -> None:
    while True:
        await asyncio.sleep(1.0)
        if collector.due():
            collector.collect()
