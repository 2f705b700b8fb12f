"""The follow-up engine: nobody forgets a case. Reminders (催办) before and at each deadline, then
escalation (督办) one level up (网格 → 社区 → 街道) at the policy's interval, repeating until the case
moves on; after 办结, an unanswered rating request closes the case as 未评价.

The database is the source of truth. Each case stores when its current step began (`step_at`), when
the engine should next look at it (`next_ping_at`, indexed), and up to when its pings were sent
(`pinged_until`). Every ping of the current step is a pure function of the case and the policy
(`plan`), so a restart re-sends nothing and loses nothing: pings missed while the server was down go
out once, the latest of each kind only. A change of status (or a 进展 note) starts a new step and
cancels the pings not yet delivered (storage.cases.transition); a closed case is never looked at again.

Two processes never send a ping twice: due cases are claimed in one statement that inserts a lease
row per case into the narrow `ping_lease` table (INSERT … ON CONFLICT DO UPDATE only where the lease
has run out: the unique key decides between two engines), and each case's pings are written only if
its `next_ping_at` is still the one seen at the claim and the lease is still ours (compare-and-set),
in the same transaction as the pushes, with the case row locked.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.casework import grid_name
from handlers.context import Services
from handlers.deadlines import show
from handlers.policy import Policy, Timing
from handlers.pushes import push_to_staff
from storage import cases, grids, outbox
from storage.db import SessionFactory, transaction
from storage.lifecycle import Action, Role, Status
from storage.models import Case, GridNode, Staff

log = logging.getLogger("gridbot.followup")

LEASE = timedelta(minutes=2)


class Chain(StrEnum):
    """What a ping is about: the step somebody owes."""

    ACCEPT = "accept"  # 接单 (a dispatched case, or a 转派 waiting for its target)
    RESOLVE = "resolve"  # 办结 by the resolution deadline
    STALL = "stall"  # 进展: accepted, then silent for too long (counts as unaccepted again)
    VERIFY = "verify"  # 核查 of a 办结
    RATING = "rating"  # the resident's rating: none in time closes the case


class Kind(StrEnum):
    REMIND = "remind"  # before the deadline
    DUE = "due"  # at the deadline
    ESCALATE = "escalate"  # after it, one level up per interval
    CLOSE = "close"  # 未评价


@dataclass(frozen=True)
class Ping:
    at: datetime
    chain: Chain
    kind: Kind
    deadline: datetime
    level: int = 0  # escalations: how many levels above the owner


def plan(case: Case, policy: Policy) -> Iterator[Ping]:
    """Every ping of the case's current step, in time order (endless: escalation repeats)."""
    if case.step_at is None:
        return iter(())
    timing = policy.timing(case.category, case.urgent)
    cal = policy.calendar
    step = case.step_at
    chains: list[Iterator[Ping]] = []
    status = case.status
    if status in (Status.DISPATCHED, Status.TRANSFERRING):
        chains.append(_chain(Chain.ACCEPT, timing.respond.after(step, cal), timing, policy, reminders=True))
    if status in (Status.DISPATCHED, Status.TRANSFERRING, Status.ACCEPTED, Status.IN_PROGRESS) and case.due_at:
        chains.append(_chain(Chain.RESOLVE, case.due_at, timing, policy, reminders=True))
    if status in (Status.ACCEPTED, Status.IN_PROGRESS):
        chains.append(_chain(Chain.STALL, timing.stall.after(step, cal), timing, policy, reminders=False))
    if status == Status.VERIFYING:
        chains.append(_chain(Chain.VERIFY, timing.respond.after(step, cal), timing, policy, reminders=True))
    if status == Status.AWAITING_RATING:
        closes = policy.rating_wait.after(step, cal)
        chains.append(iter([Ping(closes, Chain.RATING, Kind.CLOSE, closes)]))
    return heapq.merge(*chains, key=lambda p: p.at)


def _chain(chain: Chain, deadline: datetime, timing: Timing, policy: Policy, *, reminders: bool) -> Iterator[Ping]:
    if reminders:
        for at in sorted(r.before(deadline, policy.calendar) for r in timing.remind_before):
            yield Ping(at, chain, Kind.REMIND, deadline)
    yield Ping(deadline, chain, Kind.DUE, deadline)
    at, level = deadline, 0
    while True:
        at, level = timing.escalate_every.after(at, policy.calendar), level + 1
        yield Ping(at, chain, Kind.ESCALATE, deadline, level)


@dataclass(frozen=True)
class Decision:
    send: list[Ping]  # the pings to send now (the latest due of each chain)
    next_at: datetime | None  # when to look again
    pinged_until: datetime  # pings due up to here are done


def decide(case: Case, policy: Policy, now: datetime) -> Decision:
    """What the engine does with a case at `now`. Non-urgent pings falling in quiet hours wait for the
    morning (and are then sent once, the latest of each chain)."""
    since = case.pinged_until or case.step_at or now
    latest: dict[Chain, Ping] = {}
    upcoming: Ping | None = None
    for ping in plan(case, policy):
        if ping.at > now:
            upcoming = ping
            break
        if ping.at > since:
            latest[ping.chain] = ping
    quiet = not case.urgent and policy.quiet.contains(now.astimezone(policy.calendar.zone).time())
    if latest and quiet:
        return Decision([], policy.quiet.defer(now, policy.calendar.zone), since)
    next_at = None
    if upcoming is not None:
        next_at = upcoming.at if case.urgent else policy.quiet.defer(upcoming.at, policy.calendar.zone)
    return Decision(sorted(latest.values(), key=lambda p: p.at), next_at, now)


class FollowUp:
    """One engine per process; any number of them may share a database."""

    def __init__(self, factory: SessionFactory, services: Services, *, batch: int = 1000, chunk: int = 50) -> None:
        self.factory = factory
        self.services = services
        self.batch = batch  # cases claimed per tick
        self.chunk = chunk  # cases chased per transaction

    async def tick(self, now: datetime) -> int:
        """Claim the cases due now and chase each; returns how many pings (and closes) were made."""
        lease_until = now + LEASE
        async with transaction(self.factory) as session:
            due = await cases.claim_due_pings(session, now=now, lease_until=lease_until, limit=self.batch)
        made = 0
        for start in range(0, len(due), self.chunk):
            chunk = due[start : start + self.chunk]
            try:
                made += await self._chase_chunk(chunk, now, lease_until)
            except Exception:  # e.g. the commit failed: these cases' leases run out, they come back
                log.exception("follow-up chunk failed", extra={"case_ids": chunk})
        async with transaction(self.factory) as session:
            await cases.forget_stale_leases(session, before=now - LEASE)
        return made

    async def _chase_chunk(self, case_ids: list[int], now: datetime, lease_until: datetime) -> int:
        """Chase cases in one transaction, each in a savepoint of its own: one durable commit for the
        chunk instead of one per case (the commits were most of a tick's time), while one case's
        trouble stays its own. Chunks, not the whole batch, so that the write lock (SQLite) and the
        row locks (PostgreSQL) a tick holds are released every few hundred milliseconds."""
        made = 0
        async with transaction(self.factory) as session:
            for case_id in case_ids:
                try:
                    async with session.begin_nested():
                        n = await self._chase(session, case_id, now, lease_until)
                except Exception:  # rolled back to the savepoint; its lease runs out, it comes back
                    log.exception("follow-up failed", extra={"case_id": case_id})
                    continue
                made += n
        return made

    async def _chase(self, session: AsyncSession, case_id: int, now: datetime, lease_until: datetime) -> int:
        # Locked (PostgreSQL) from here to the commit: a leader's action lands wholly before this read
        # (its new next_ping_at fails the compare-and-set below) or after the commit (and cancels the
        # pings not yet delivered), never between the plan and the pushes.
        case = await session.get(Case, case_id, with_for_update=True)
        if case is None:
            return 0
        decision = decide(case, self.services.policy, now)
        # Compare-and-set: if a leader acted since the claim, their change wins and nothing is sent.
        if not await cases.settle_pings(
            session,
            case_id=case_id,
            lease_until=lease_until,
            next_at=decision.next_at,
            pinged_until=decision.pinged_until,
        ):
            return 0
        for ping in decision.send:
            if ping.kind is Kind.CLOSE:
                await cases.transition(
                    session,
                    case=case,
                    action=Action.CLOSE,
                    roles=Role.SYSTEM,
                    now=now,
                    actor_kind="system",
                    note=m.CLOSED_UNRATED,
                )
            else:
                await self._send(session, case, ping, now)
        return len(decision.send)

    async def _send(self, session: AsyncSession, case: Case, ping: Ping, now: datetime) -> None:
        owner = await _owner(session, case, ping.chain)
        zone = self.services.zone
        deadline = show(ping.deadline, zone)
        if ping.kind is not Kind.ESCALATE:
            if owner is not None:
                template = (m.PING_REMIND if ping.kind is Kind.REMIND else m.PING_DUE)[ping.chain]
                await self._tell(session, owner, case, template, now, deadline=deadline)
            return
        node = await _grid_of(session, case, ping.chain)
        chain = await _superiors(session, node, owner)
        if not chain:
            return
        above = chain[: ping.level] if ping.level <= len(chain) else chain  # at the top: the whole chain again
        names = "、".join(f"{grid_name(self.services, s.grid_id)} {s.name}" for s in above)
        late = _late(now - ping.deadline)
        what = m.PING_WHAT[ping.chain]
        for superior in above:
            await self._tell(
                session,
                superior,
                case,
                m.PING_ESCALATED,
                now,
                what=what,
                late=late,
                deadline=deadline,
                grid=grid_name(self.services, owner.grid_id) if owner else "—",
                owner=owner.name if owner else "（无人负责）",
                chain=names,
            )
        if owner is not None:
            await self._tell(session, owner, case, m.PING_ESCALATED_OWNER, now, what=what, late=late, chain=names)

    async def _tell(
        self, session: AsyncSession, staff: Staff, case: Case, template: str, now: datetime, **values: str
    ) -> None:
        ref = await cases.ref_for(session, staff=staff, case=case)
        content = template.format(number=case.number, ref=ref, **values)
        push_to_staff(
            session, staff=staff, content=content, now=now, services=self.services, case_id=case.id, kind=outbox.PING
        )


async def _owner(session: AsyncSession, case: Case, chain: Chain) -> Staff | None:
    """Who owes the step: the target of a 转派, the verifier, else the assignee."""
    if chain is Chain.ACCEPT and case.status == Status.TRANSFERRING and case.transfer_to_id:
        return await session.get(Staff, case.transfer_to_id)
    if chain is Chain.VERIFY and case.verifier_id:
        return await session.get(Staff, case.verifier_id)
    return await session.get(Staff, case.assignee_id) if case.assignee_id else None


async def _grid_of(session: AsyncSession, case: Case, chain: Chain) -> GridNode | None:
    grid_id = case.transfer_grid_id if chain is Chain.ACCEPT and case.status == Status.TRANSFERRING else case.grid_id
    return await grids.get_node(session, grid_id) if grid_id is not None else None


async def _superiors(session: AsyncSession, node: GridNode | None, owner: Staff | None) -> list[Staff]:
    """The leaders above the case's grid, nearest first (社区, then 街道), without the owner."""
    if node is None:
        return []
    found: list[Staff] = []
    for ancestor_id in grids.ancestor_ids(node)[1:]:
        leader = await grids.staff_at(session, ancestor_id, "leader")
        if leader is not None and leader.id not in {s.id for s in found} and (owner is None or leader.id != owner.id):
            found.append(leader)
    return found


def _late(delta: timedelta) -> str:
    hours = max(int(delta.total_seconds() // 3600), 0)
    if hours < 1:
        return f"{max(int(delta.total_seconds() // 60), 1)}分钟"
    if hours < 48:
        return f"{hours}小时"
    return f"{hours // 24}天"
