"""Cases, their numbers, their timeline, and the residents who report them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import Insert, and_, bindparam, delete, func, literal, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import outbox
from storage.db import insert_once, table_of
from storage.lifecycle import FINAL_STATUSES, OPEN_STATUSES, Action, Role, Status, next_status
from storage.models import (
    Case,
    CaseCounter,
    CaseEvent,
    CaseFollower,
    CaseRef,
    LabelledExample,
    PingLease,
    Resident,
    Staff,
)
from storage.types import UTCDateTime

# The statements run for (nearly) every message are built once, their values bound when they run:
# building a statement, and SQLAlchemy's cache key for it, costs more CPU than running it. The
# UPDATEs are plain SQL (table_of): no counter row is ever loaded, nothing to synchronise.
_COUNTER = table_of(CaseCounter)
_NEXT_IN_DAY = (
    update(_COUNTER)
    .where(_COUNTER.c.day == bindparam("today"))
    .values(last=_COUNTER.c.last + 1)
    .returning(_COUNTER.c.last)
)


async def next_case_number(session: AsyncSession, *, now: datetime, zone: tzinfo) -> str:
    """G + the office's local date + a daily sequence, e.g. G20261122-0007. Safe across processes."""
    day = now.astimezone(zone).strftime("%Y%m%d")
    seq = (await session.exec(_NEXT_IN_DAY, params={"today": day})).scalar_one_or_none()  # type: ignore[call-overload]
    if seq is None:  # the day's first case (here or in another process): make its counter, then count
        await insert_once(session, CaseCounter(day=day, last=0))
        seq = (await session.exec(_NEXT_IN_DAY, params={"today": day})).scalar_one()  # type: ignore[call-overload]
    return f"G{day}-{seq:04d}"


_RESIDENT_BY_OPENID = select(Resident).where(Resident.openid == bindparam("openid"))


async def resident_for(session: AsyncSession, *, openid: str, now: datetime) -> Resident:
    """The resident behind an openid, created on first contact."""
    resident = (await session.exec(_RESIDENT_BY_OPENID, params={"openid": openid})).first()
    if resident is None:
        resident = Resident(openid=openid, first_seen_at=now, last_seen_at=now)
        if await insert_once(session, resident):
            return resident
        # Another process processing this person's other message created them first (PostgreSQL
        # waited for it to commit before refusing ours): theirs, now visible.
        resident = (await session.exec(_RESIDENT_BY_OPENID, params={"openid": openid})).one()
    resident.last_seen_at = now
    session.add(resident)
    return resident


async def create_case(
    session: AsyncSession,
    *,
    number: str,
    category: str,
    description: str,
    urgent: bool,
    resident: Resident | None,
    now: datetime,
    reporter_kind: str = "resident",
    place_text: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    confidence: float = 1.0,
    status: Status = Status.NEW,
    duplicate_of: Case | None = None,
) -> Case:
    case = Case(
        confidence=confidence,
        duplicate_of_id=duplicate_of.id if duplicate_of else None,
        grid_id=duplicate_of.grid_id if duplicate_of else None,
        number=number,
        category=category,
        description=description,
        urgent=urgent,
        status=status,
        resident_id=resident.id if resident else None,
        place_text=place_text,
        lat=lat,
        lon=lon,
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    await session.flush()
    await add_event(
        session,
        case=case,
        action=Action.REPORT,
        actor_kind=reporter_kind,  # "resident", or another system's name (open311) with no resident
        actor_id=resident.id if resident else None,
        now=now,
        note=description,
        to_status=status,
    )
    return case


async def add_event(
    session: AsyncSession,
    *,
    case: Case,
    action: Action,
    actor_kind: str,
    now: datetime,
    actor_id: int | None = None,
    note: str | None = None,
    media_id: str | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
) -> CaseEvent:
    assert case.id is not None
    event = CaseEvent(
        case_id=case.id,
        at=now,
        action=action,
        actor_kind=actor_kind,
        actor_id=actor_id,
        note=note,
        media_id=media_id,
        from_status=from_status,
        to_status=to_status,
    )
    session.add(event)
    return event


# The states the follow-up engine chases (handlers/followup.py): someone owes the next step.
CHASED_STATUSES = frozenset(
    {
        Status.DISPATCHED,
        Status.ACCEPTED,
        Status.IN_PROGRESS,
        Status.TRANSFERRING,
        Status.VERIFYING,
        Status.AWAITING_RATING,
    }
)

# Entering these states means someone has the case in hand: it counts as accepted (响应).
_IN_HAND = frozenset({Status.ACCEPTED, Status.IN_PROGRESS, Status.VERIFYING, Status.RESOLVED})


async def transition(
    session: AsyncSession,
    *,
    case: Case,
    action: Action,
    roles: Role | frozenset[Role],
    now: datetime,
    actor_kind: str,
    actor_id: int | None = None,
    note: str | None = None,
    media_id: str | None = None,
) -> Case:
    """Apply one row of the state machine and record it on the timeline (raises IllegalTransition,
    or NotAllowed when the row exists but not for these roles)."""
    before = case.status
    case.status = next_status(before, action, roles)
    case.updated_at = now
    if action is Action.DISPATCH:
        case.dispatched_at = now
    if case.status in _IN_HAND:
        case.accepted_at = case.accepted_at or now
    if case.status is Status.RESOLVED:
        case.resolved_at = now
    if case.status in FINAL_STATUSES:
        case.closed_at = now
    if action is Action.REOPEN:
        case.resolved_at = None
        case.reopen_count += 1
    elif action is Action.REWORK:
        case.rework_count += 1
    # The follow-up engine looks at the case at its next tick (deadlines may have moved), or never.
    case.next_ping_at = now if case.status in CHASED_STATUSES else None
    if case.status != before or action is Action.PROGRESS:
        # A new step: its deadlines count from now, and the pings about the last one are moot. Pings
        # are only sent about a chased case, and each step cancels the last one's: a case that was
        # not chased (a new one being dispatched) has none.
        case.step_at = case.pinged_until = now
        if case.id is not None and before in CHASED_STATUSES:
            await outbox.cancel_pings(session, case_id=case.id)
    session.add(case)
    await add_event(
        session,
        case=case,
        action=action,
        actor_kind=actor_kind,
        actor_id=actor_id,
        now=now,
        note=note,
        media_id=media_id,
        from_status=before,
        to_status=case.status,
    )
    return case


async def case_by_number(session: AsyncSession, number: str) -> Case | None:
    return (await session.exec(select(Case).where(Case.number == number.upper()))).first()


async def get_case(session: AsyncSession, case_id: int) -> Case | None:
    return await session.get(Case, case_id)


async def get_cases(session: AsyncSession, case_ids: Collection[int]) -> list[Case]:
    """The cases with these ids (those that exist), in one query."""
    if not case_ids:
        return []
    return list((await session.exec(select(Case).where(col(Case.id).in_(list(case_ids))))).all())


async def open_cases_of_assignee(
    session: AsyncSession, *, staff_id: int, statuses: frozenset[Status] = OPEN_STATUSES
) -> list[Case]:
    return await waiting_for(session, staff_id=staff_id, pools=(("assignee_id", statuses),))


# The columns that name who a case waits for: its assignee, a 转派 target, a verifier, or whoever
# decides a 延期.
WAITING_VIA = ("assignee_id", "transfer_to_id", "verifier_id", "extension_approver_id")


async def waiting_for(
    session: AsyncSession, *, staff_id: int, pools: Sequence[tuple[str, frozenset[Status]]]
) -> list[Case]:
    """Cases waiting for this staff member in any of the pools, oldest first, in one query: a pool is
    a column that may name them (one of WAITING_VIA) and the statuses in which it counts."""
    assert all(via in WAITING_VIA for via, _ in pools)
    waiting = [and_(getattr(Case, via) == staff_id, col(Case.status).in_(list(statuses))) for via, statuses in pools]
    stmt = select(Case).where(or_(*waiting)).order_by(col(Case.created_at), col(Case.id))
    return list((await session.exec(stmt)).all())


_REFS_GIVEN = select(CaseRef.case_id, CaseRef.ref).where(
    CaseRef.staff_id == bindparam("staff_id"), col(CaseRef.case_id).in_(bindparam("case_ids", expanding=True))
)
_STAFF = table_of(Staff)
_NEXT_REFS = (
    update(_STAFF)
    .where(_STAFF.c.id == bindparam("staff_id"))
    .values(last_ref=_STAFF.c.last_ref + bindparam("count"))
    .returning(_STAFF.c.last_ref)
)


async def ref_for(session: AsyncSession, *, staff: Staff, case: Case) -> int:
    """The short reference (#N) by which `staff` may name `case`: the one they were given before,
    else the next of their own counter (never reused, so an old card can never name a new case)."""
    [ref] = await refs_for(session, staff=staff, cases=[case])
    return ref


async def refs_for(session: AsyncSession, *, staff: Staff, cases: Sequence[Case]) -> list[int]:
    """ref_for of each of `cases` (a list of someone's cases) in two or three statements, however
    many there are; new references are handed out in the order of `cases`."""
    assert staff.id is not None and all(c.id is not None for c in cases)
    if not cases:
        return []
    ids = [c.id or 0 for c in cases]
    params = {"staff_id": staff.id, "case_ids": ids}
    given = {case_id: ref for case_id, ref in (await session.exec(_REFS_GIVEN, params=params)).all()}
    new = [case_id for case_id in dict.fromkeys(ids) if case_id not in given]
    if new:
        params = {"staff_id": staff.id, "count": len(new)}
        last = int((await session.exec(_NEXT_REFS, params=params)).scalar_one())  # type: ignore[call-overload]
        set_committed_value(staff, "last_ref", last)  # what the ORM's UPDATE did for us, at a fraction of the CPU
        for ref, case_id in enumerate(new, start=last - len(new) + 1):
            given[case_id] = ref
            session.add(CaseRef(staff_id=staff.id, ref=ref, case_id=case_id))
    return [given[case_id] for case_id in ids]


async def case_by_ref(session: AsyncSession, *, staff_id: int, ref: int) -> Case | None:
    row = await session.get(CaseRef, (staff_id, ref))
    return await session.get(Case, row.case_id) if row else None


async def open_cases_for_resident(session: AsyncSession, *, resident_id: int) -> list[Case]:
    """Open cases the resident reported, or follows because they reported them again; newest first."""
    followed = select(CaseFollower.case_id).where(CaseFollower.resident_id == resident_id)
    stmt = (
        select(Case)
        .where(
            col(Case.status).in_(list(OPEN_STATUSES)),
            (col(Case.resident_id) == resident_id) | col(Case.id).in_(followed),
        )
        .order_by(col(Case.created_at).desc(), col(Case.id).desc())
        .limit(20)
    )
    return list((await session.exec(stmt)).all())


_LATEST_CASE_OF_RESIDENT = (  # built once: see _RESIDENT_BY_OPENID
    select(Case)
    .where(
        Case.resident_id == bindparam("resident_id"),
        col(Case.created_at) >= bindparam("since"),
        col(Case.status).in_([*OPEN_STATUSES, Status.DUPLICATE]),
    )
    .order_by(col(Case.created_at).desc(), col(Case.id).desc())
    .limit(1)
)


async def latest_case_of_resident(session: AsyncSession, *, resident_id: int, since: datetime) -> Case | None:
    """The resident's newest case reported since `since` that is still open (repeat reports included)."""
    params = {"resident_id": resident_id, "since": since}
    return (await session.exec(_LATEST_CASE_OF_RESIDENT, params=params)).first()


async def open_in_grids(session: AsyncSession, *, grid_ids: list[int]) -> list[Case]:
    """Open cases on any of these grid nodes, oldest first."""
    stmt = (
        select(Case)
        .where(col(Case.grid_id).in_(grid_ids), col(Case.status).in_(list(OPEN_STATUSES)))
        .order_by(col(Case.created_at), col(Case.id))
    )
    return list((await session.exec(stmt)).all())


_COUNT_REPORTED = (  # built once: see _RESIDENT_BY_OPENID
    select(func.count()).where(Case.resident_id == bindparam("resident_id"), col(Case.created_at) >= bindparam("since"))
)


async def count_reported(session: AsyncSession, *, resident_id: int, since: datetime) -> int:
    """How many cases this resident reported since `since`."""
    params = {"resident_id": resident_id, "since": since}
    return int((await session.exec(_COUNT_REPORTED, params=params)).one())


async def awaiting_rating(session: AsyncSession, *, resident_id: int) -> Case | None:
    """The reporter's case most recently sent for their rating (待评价)."""
    stmt = (
        select(Case)
        .where(Case.resident_id == resident_id, Case.status == Status.AWAITING_RATING)
        .order_by(col(Case.resolved_at).desc(), col(Case.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def suspended_until_before(session: AsyncSession, *, now: datetime, limit: int = 100) -> list[int]:
    """挂起 cases whose date has come."""
    stmt = (
        select(Case.id)
        .where(Case.status == Status.SUSPENDED, col(Case.suspended_until) <= now)
        .order_by(col(Case.suspended_until), col(Case.id))
        .limit(limit)
    )
    return [int(i) for i in (await session.exec(stmt)).all() if i is not None]


async def claim_suspended(session: AsyncSession, *, case_id: int, now: datetime) -> Case | None:
    """Lock a 挂起 case whose date has come for waking; None when another process woke it first."""
    stmt = (
        update(Case)
        .where(col(Case.id) == case_id, col(Case.status) == Status.SUSPENDED, col(Case.suspended_until) <= now)
        .values(suspended_until=None, updated_at=now)
    )
    if (await session.exec(stmt)).rowcount != 1:  # type: ignore[call-overload]
        return None
    return await session.get(Case, case_id)


async def forget_stale_leases(session: AsyncSession, *, before: datetime) -> int:
    """Drop leases that ran out before `before`: an engine died holding them and the case was never
    due again (closed meanwhile), so no later claim overwrote them. The table stays as small as the
    work in flight."""
    result = await session.exec(delete(PingLease).where(col(PingLease.lease_until) < before))  # type: ignore[call-overload]
    return int(result.rowcount or 0)


async def claim_due_pings(session: AsyncSession, *, now: datetime, lease_until: datetime, limit: int) -> list[int]:
    """Lease the cases whose follow-up is due (oldest due first) in one statement: a row in
    `ping_lease` per case, so no other engine takes them until `lease_until`, and a crashed one's
    come back after it. Served by the index on next_ping_at: the cost grows with the number due, not
    the number open; and the only table written is the narrow ping_lease."""
    stmt = due_pings_claim(session.get_bind().dialect.name, now=now, lease_until=lease_until, limit=limit)
    return [int(i) for i in (await session.exec(stmt)).scalars().all()]  # type: ignore[call-overload]


def due_pings_claim(dialect: str, *, now: datetime, lease_until: datetime, limit: int) -> Insert:
    """The statement behind claim_due_pings (apart so benchmarks/followup_tick.py can EXPLAIN it):

        INSERT INTO ping_lease (case_id, lease_until, seen_next_ping_at)
        SELECT id, :lease_until, next_ping_at FROM cases
         WHERE next_ping_at <= :now AND NOT EXISTS (a live lease on it)
         ORDER BY next_ping_at LIMIT :limit
        ON CONFLICT (case_id) DO UPDATE SET ... WHERE ping_lease.lease_until <= :now  -- expired only
        RETURNING case_id

    Two engines at once (PostgreSQL, READ COMMITTED): both may select a case, but the unique key lets
    one insert win; the other waits for it to commit, then finds a live lease, updates nothing and
    returns nothing for that case. SQLite has one writer at a time. ON CONFLICT is dialect SQL (the
    same on both): hence this one function."""
    live = select(PingLease.case_id).where(col(PingLease.case_id) == col(Case.id), col(PingLease.lease_until) > now)
    due = (
        select(col(Case.id), literal(lease_until, UTCDateTime), col(Case.next_ping_at))
        .where(col(Case.next_ping_at) <= now, ~live.exists())
        .order_by(col(Case.next_ping_at))  # the index's order: the scan stops at `limit` (with id: a sort)
        .limit(limit)
    )
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(PingLease).from_select(["case_id", "lease_until", "seen_next_ping_at"], due)
    return stmt.on_conflict_do_update(
        index_elements=[col(PingLease.case_id)],
        set_={"lease_until": stmt.excluded.lease_until, "seen_next_ping_at": stmt.excluded.seen_next_ping_at},
        where=col(PingLease.lease_until) <= now,
    ).returning(col(PingLease.case_id))


async def settle_pings(
    session: AsyncSession, *, case_id: int, lease_until: datetime, next_at: datetime | None, pinged_until: datetime
) -> bool:
    """Record a chase of a leased case and end the lease; False when the case changed since it was
    leased (a leader acted: their transition set next_ping_at anew), or the lease is no longer ours
    (it ran out and another engine took the case), and then nothing may be sent."""
    seen = (
        select(PingLease.seen_next_ping_at)
        .where(col(PingLease.case_id) == case_id, col(PingLease.lease_until) == lease_until)
        .scalar_subquery()
    )
    stmt = (
        update(Case)
        .where(col(Case.id) == case_id, col(Case.next_ping_at) == seen)
        .values(next_ping_at=next_at, pinged_until=pinged_until)
        .execution_options(synchronize_session=False)
    )
    settled = (await session.exec(stmt)).rowcount == 1  # type: ignore[call-overload]
    mine = delete(PingLease).where(col(PingLease.case_id) == case_id, col(PingLease.lease_until) == lease_until)
    await session.exec(mine)  # type: ignore[call-overload]
    return bool(settled)


async def unplaced_before(session: AsyncSession, *, before: datetime, limit: int = 100) -> list[int]:
    """Cases still without a grid (the resident never said where) reported before `before`."""
    stmt = (
        select(Case.id)
        .where(Case.status == Status.NEW, col(Case.grid_id).is_(None), col(Case.created_at) < before)
        .order_by(col(Case.id))
        .limit(limit)
    )
    return [int(i) for i in (await session.exec(stmt)).all() if i is not None]


async def claim_unplaced(session: AsyncSession, *, case_id: int, now: datetime) -> Case | None:
    """Lock the case for routing if it is still unplaced; None when another process got there first."""
    stmt = (
        update(Case)
        .where(col(Case.id) == case_id, col(Case.status) == Status.NEW, col(Case.grid_id).is_(None))
        .values(updated_at=now)
    )
    if (await session.exec(stmt)).rowcount != 1:  # type: ignore[call-overload]
        return None
    return await session.get(Case, case_id)


async def timeline(session: AsyncSession, case_id: int) -> list[CaseEvent]:
    stmt = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(col(CaseEvent.at), col(CaseEvent.id))
    return list((await session.exec(stmt)).all())


async def last_action_by(
    session: AsyncSession, *, staff_id: int, actions: tuple[Action, ...], since: datetime
) -> Case | None:
    """The case on which this staff member last took one of `actions`, if it was since `since`."""
    stmt = (
        select(CaseEvent)
        .where(
            CaseEvent.actor_kind == "staff",
            CaseEvent.actor_id == staff_id,
            col(CaseEvent.action).in_(list(actions)),
            col(CaseEvent.at) >= since,
        )
        .order_by(col(CaseEvent.at).desc(), col(CaseEvent.id).desc())
        .limit(1)
    )
    event = (await session.exec(stmt)).first()
    return await session.get(Case, event.case_id) if event else None


async def last_note(session: AsyncSession, *, case_id: int, action: Action) -> str | None:
    """The note of the case's latest event of this kind (e.g. the 办结 note a verifier confirmed)."""
    stmt = (
        select(CaseEvent.note)
        .where(CaseEvent.case_id == case_id, CaseEvent.action == action)
        .order_by(col(CaseEvent.at).desc(), col(CaseEvent.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


def window_start(now: datetime, minutes: int) -> datetime:
    return now - timedelta(minutes=minutes)


_OPEN_CASES_IN_GRID = (  # built once: see _RESIDENT_BY_OPENID
    select(Case)
    .where(
        Case.grid_id == bindparam("grid_id"),
        Case.category == bindparam("category"),
        col(Case.status).in_(list(OPEN_STATUSES)),
        col(Case.created_at) >= bindparam("since"),
    )
    .order_by(col(Case.created_at).desc())
    .limit(50)
)


async def open_cases_in_grid(session: AsyncSession, *, grid_id: int, category: str, since: datetime) -> list[Case]:
    """Open cases of one category in one grid reported since `since`, newest first (duplicate search)."""
    params = {"grid_id": grid_id, "category": category, "since": since}
    return list((await session.exec(_OPEN_CASES_IN_GRID, params=params)).all())


async def follow(session: AsyncSession, *, case: Case, resident: Resident, now: datetime) -> None:
    """The resident gets the updates of `case` from now on (once, however often they report it)."""
    assert case.id is not None and resident.id is not None
    if await session.get(CaseFollower, (case.id, resident.id)) is None:
        session.add(CaseFollower(case_id=case.id, resident_id=resident.id, since=now))


async def reporter(session: AsyncSession, case: Case) -> Resident | None:
    return await session.get(Resident, case.resident_id) if case.resident_id else None


async def audience(session: AsyncSession, case: Case) -> list[Resident]:
    """Everyone to tell about `case`: its reporter and the residents who reported it again."""
    stmt = (
        select(Resident)
        .join(CaseFollower, col(CaseFollower.resident_id) == col(Resident.id))
        .where(CaseFollower.case_id == case.id)
        .order_by(col(Resident.id))
    )
    followers = list((await session.exec(stmt)).all())
    reporter = await session.get(Resident, case.resident_id) if case.resident_id else None
    return ([reporter] if reporter else []) + [r for r in followers if reporter is None or r.id != reporter.id]


def record_example(
    session: AsyncSession, *, text: str, category: str, source: str, now: datetime, case_id: int | None = None
) -> None:
    session.add(LabelledExample(text=text, category=category, source=source, case_id=case_id, created_at=now))
