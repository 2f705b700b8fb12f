"""The rates: the one definition of every figure `gridbot report`, the console and the summaries show.

Everything here is a pure function of plain case records (`CaseRecord`) and a `Period`, so each
definition can be checked on a hand-computed example; `load` is the only part that reads the database.

A period is [start, end) in aware time, and the figures are taken *as of* a moment (`as_of`, when the
report runs; for a past period usually later than its end). What is not yet known at `as_of` is left
out, never guessed: a case whose response deadline has not come is neither on time nor late yet.

Definitions (a rate whose denominator is 0 is None, shown as "—", never 0 or 100%):

- 受理 (received): cases reported (created_at) in the period, duplicates included.
- 重复 (repeats): received cases that repeat another case (duplicate_of_id set: linked at intake, or
  marked 重复 by staff); `repeated_originals` is how many distinct cases they point to.
- 响应率 (response rate): of the cases dispatched (派遣, dispatched_at = the latest 派遣) in the period,
  the share answered by the response deadline. Response deadline = policy.response_deadline(category,
  urgent, dispatched_at) (handlers/policy.py). Answered = accepted_at (the first moment the case was in
  someone's hands: 接单, 进展, 办结 …); a case closed as 重复 or 不属实 without being accepted was answered
  when it was closed. Denominator: the dispatched cases that are answered, or whose response deadline
  has passed at `as_of`; those still inside their window are left out (`response_pending`). A case a
  leader 退回 (back to 待派遣) and nobody has dispatched again is not answered: its next 派遣 starts
  the clock anew.
- 接单用时 / 办结用时 (time to accept / resolve): median and 90th percentile of accepted_at − dispatched_at
  over the accepted cases of the response cohort, and of resolved_at − dispatched_at over the resolved
  cohort below; calendar time, including nights, weekends and 挂起. Percentiles interpolate linearly
  between ranks (p = q·(n−1) on the sorted values; the median of an even count is the mean of the two
  middle values). A case accepted before its latest 派遣 (退回, then dispatched again) counts 0.
- 按期办结率 (on-time resolution rate): of the cases resolved (办结, resolved_at) in the period, the
  share resolved by their resolution deadline (resolved_at ≤ due_at; due_at is the deadline as an
  approved 延期 moved it, or as a 重办 set it again). A case without a deadline cannot be late.
  resolved_at is the latest 办结 (after 核查 where the category needs it).
- 满意率 (satisfaction rate): of the cases rated (rated_at) in the period, the share rated 满意 or
  基本满意, as 12345 hotlines count it. 满意度 (score): the mean of 满意 5, 基本满意 4, 不满意 3 over the
  same cases. A case counts once, with its latest rating (a 不满意 that reopened it stays until the
  resident rates again). 未评价 (`unrated`): cases closed (结案) in the period without any rating (no
  answer in time, or nobody to ask); they are not in the rated count.
- 重办率 (reopen rate): of the resolved cohort, the share ever reopened by a 不满意 (reopen_count > 0).
  返工 (rework): the sum of rework_count (核查 sent the work back) over the same cohort. A reopened case
  joins the cohort when it is resolved again.
- 按期结案率 (数字城管: 按期结案数 ÷ (应结案数 − 延期数)): 应结案 (`due`): cases whose resolution deadline
  (due_at) falls in the period and has passed at `as_of`. 延期 (`extended`): those of them on which a
  延期 was approved (同意延期). 按期结案 (`closed_on_time`): the others that were finished by the
  deadline: resolved (resolved_at ≤ due_at), or closed as 重复 / 不属实 by then. A case with an approved
  延期 leaves both sides of the fraction; it is counted by `extended`.
- 超期 (overdue): cases open at the period's end (or at `as_of`, if earlier) whose deadline had passed:
  reported before then, not finished by then (finished = resolved, or closed as 重复 / 不属实), due_at
  before then. `open` counts the open ones, overdue or not.

Past periods are rebuilt from each case's current fields: a later 重办 (which clears resolved_at and sets
a new due_at) or 延期 changes what a past period shows. Every case counts in the node of its current
grid (a node's figures cover its whole subtree), for its current assignee, in its current category.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers.places import GridIndex
from handlers.policy import Policy
from storage import reports
from storage.lifecycle import Status
from storage.models import Case

SATISFIED, FAIRLY, UNSATISFIED = "满意", "基本满意", "不满意"
SCORES = {SATISFIED: 5, FAIRLY: 4, UNSATISFIED: 3}
# Closed without being worked to 办结: finished when they were closed.
_SET_ASIDE = frozenset({Status.DUPLICATE, Status.UNFOUNDED})


@dataclass(frozen=True)
class CaseRecord:
    """What the rates need of one case: its fields, its response deadline, whether a 延期 was approved."""

    id: int
    number: str
    category: str
    grid_id: int | None
    urgent: bool
    status: str
    assignee_id: int | None
    created_at: datetime
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    due_at: datetime | None = None
    response_due_at: datetime | None = None
    extended: bool = False
    rework_count: int = 0
    reopen_count: int = 0
    rating: str | None = None
    rated_at: datetime | None = None
    duplicate_of_id: int | None = None

    @classmethod
    def of(cls, case: Case, *, policy: Policy, extended: bool = False) -> CaseRecord:
        assert case.id is not None
        respond_by = (
            policy.response_deadline(case.category, case.urgent, case.dispatched_at) if case.dispatched_at else None
        )
        return cls(
            id=case.id,
            number=case.number,
            category=case.category,
            grid_id=case.grid_id,
            urgent=case.urgent,
            status=case.status,
            assignee_id=case.assignee_id,
            created_at=case.created_at,
            dispatched_at=case.dispatched_at,
            accepted_at=case.accepted_at,
            resolved_at=case.resolved_at,
            closed_at=case.closed_at,
            due_at=case.due_at,
            response_due_at=respond_by,
            extended=extended,
            rework_count=case.rework_count,
            reopen_count=case.reopen_count,
            rating=case.rating,
            rated_at=case.rated_at,
            duplicate_of_id=case.duplicate_of_id,
        )


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive
    end: datetime  # exclusive
    as_of: datetime  # when the figures are taken

    def __contains__(self, at: datetime | None) -> bool:
        return at is not None and self.start <= at < self.end

    @property
    def cutoff(self) -> datetime:
        """The moment "open" and "overdue" are counted at: the period's end, or now if that is earlier."""
        return min(self.end, self.as_of)


# Periods in office time ----------------------------------------------------------------------------


def days(first: date, last: date, zone: ZoneInfo, *, as_of: datetime) -> Period:
    """From the start of `first` to the end of `last` (both included), office time."""
    return Period(_midnight(first, zone), _midnight(last + timedelta(days=1), zone), as_of)


def last_full_week(as_of: datetime, zone: ZoneInfo) -> Period:
    """Monday to Sunday, the week before the one `as_of` falls in."""
    today = as_of.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday() + 7)
    return days(monday, monday + timedelta(days=6), zone, as_of=as_of)


def month(year: int, number: int, zone: ZoneInfo, *, as_of: datetime) -> Period:
    first = date(year, number, 1)
    following = date(year + number // 12, number % 12 + 1, 1)
    return days(first, following - timedelta(days=1), zone, as_of=as_of)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), zone)


# One case ------------------------------------------------------------------------------------------


def finished_at(r: CaseRecord) -> datetime | None:
    """When the work on the case was done: its 办结, or its closing as 重复 / 不属实; None while open."""
    if r.resolved_at is not None:
        return r.resolved_at
    if r.status in _SET_ASIDE:
        return r.closed_at or r.created_at  # a repeat linked at intake is closed from birth
    return None


def answered_at(r: CaseRecord) -> datetime | None:
    """When the case was first answered (响应): accepted, or set aside as 重复 / 不属实."""
    if r.accepted_at is not None:
        return r.accepted_at
    return r.closed_at if r.status in _SET_ASIDE else None


def answered_on_time(r: CaseRecord) -> bool | None:
    """Answered by the response deadline; None when there is no deadline (never dispatched)."""
    answered = answered_at(r)
    if r.response_due_at is None:
        return None
    return answered is not None and answered <= r.response_due_at


def late(r: CaseRecord, at: datetime) -> bool | None:
    """超期: finished after its deadline, or still open at `at` with the deadline passed; None without
    a deadline."""
    if r.due_at is None:
        return None
    done = finished_at(r)
    if done is not None and done <= at:
        return done > r.due_at
    return r.due_at < at


def is_open(r: CaseRecord, at: datetime) -> bool:
    done = finished_at(r)
    return r.created_at < at and (done is None or done > at)


# Figures of a group of cases -----------------------------------------------------------------------


def percentile(values: Sequence[timedelta], q: float) -> timedelta | None:
    """The q-quantile (0 ≤ q ≤ 1), linear between ranks: position q·(n−1) in the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Figures:
    """The counts of one group of cases in one period; the rates are derived from them (see the module
    docstring for every definition)."""

    received: int = 0
    repeats: int = 0
    repeated_originals: int = 0
    dispatched: int = 0  # the response cohort: answered, or past the response deadline
    response_pending: int = 0  # dispatched in the period, still inside the response window
    answered_on_time: int = 0
    resolved: int = 0
    resolved_on_time: int = 0
    reopened: int = 0
    rework: int = 0
    rated: int = 0
    satisfied: int = 0  # 满意 or 基本满意
    rated_satisfied: int = 0  # 满意 only
    rated_fairly: int = 0  # 基本满意
    rated_unsatisfied: int = 0
    unrated: int = 0  # 未评价
    due: int = 0  # 应结案
    extended: int = 0  # 延期 (approved) among the due
    closed_on_time: int = 0
    open: int = 0
    overdue: int = 0
    accept_times: tuple[timedelta, ...] = ()
    resolve_times: tuple[timedelta, ...] = ()

    @property
    def response_rate(self) -> float | None:
        """响应率"""
        return _ratio(self.answered_on_time, self.dispatched)

    @property
    def on_time_rate(self) -> float | None:
        """按期办结率"""
        return _ratio(self.resolved_on_time, self.resolved)

    @property
    def satisfaction_rate(self) -> float | None:
        """满意率"""
        return _ratio(self.satisfied, self.rated)

    @property
    def satisfaction_score(self) -> float | None:
        """满意度: the mean of 5 / 4 / 3."""
        points = 5 * self.rated_satisfied + 4 * self.rated_fairly + 3 * self.rated_unsatisfied
        return points / self.rated if self.rated else None

    @property
    def reopen_rate(self) -> float | None:
        """重办率"""
        return _ratio(self.reopened, self.resolved)

    @property
    def closure_rate(self) -> float | None:
        """按期结案率 = 按期结案数 ÷ (应结案数 − 延期数)"""
        return _ratio(self.closed_on_time, self.due - self.extended)

    @property
    def accept_median(self) -> timedelta | None:
        return percentile(self.accept_times, 0.5)

    @property
    def accept_p90(self) -> timedelta | None:
        return percentile(self.accept_times, 0.9)

    @property
    def resolve_median(self) -> timedelta | None:
        return percentile(self.resolve_times, 0.5)

    @property
    def resolve_p90(self) -> timedelta | None:
        return percentile(self.resolve_times, 0.9)


def _since(later: datetime, earlier: datetime) -> timedelta:
    return max(later - earlier, timedelta(0))


def figures(records: Iterable[CaseRecord], period: Period) -> Figures:
    """The figures of these cases for the period."""
    rs = list(records)
    cutoff = period.cutoff
    received = [r for r in rs if r.created_at in period]
    repeats = [r for r in received if r.duplicate_of_id is not None]

    dispatched = [r for r in rs if r.dispatched_at in period]
    decided = [
        r
        for r in dispatched
        if answered_at(r) is not None or (r.response_due_at is not None and r.response_due_at <= period.as_of)
    ]
    accept_times = [
        _since(r.accepted_at, r.dispatched_at)
        for r in decided
        if r.accepted_at is not None and r.dispatched_at is not None
    ]

    resolved = [r for r in rs if r.resolved_at in period]
    resolve_times = [
        _since(r.resolved_at, r.dispatched_at)
        for r in resolved
        if r.resolved_at is not None and r.dispatched_at is not None
    ]

    rated = [r for r in rs if r.rated_at in period and r.rating in SCORES]
    unrated = [r for r in rs if r.closed_at in period and r.status == Status.CLOSED and r.rating is None]

    due = [r for r in rs if r.due_at in period and r.due_at is not None and r.due_at <= period.as_of]
    extended = [r for r in due if r.extended]
    closed_on_time = [r for r in due if not r.extended and late(r, period.as_of) is False]

    still_open = [r for r in rs if is_open(r, cutoff)]
    return Figures(
        received=len(received),
        repeats=len(repeats),
        repeated_originals=len({r.duplicate_of_id for r in repeats}),
        dispatched=len(decided),
        response_pending=len(dispatched) - len(decided),
        answered_on_time=sum(1 for r in decided if answered_on_time(r)),
        resolved=len(resolved),
        resolved_on_time=sum(1 for r in resolved if late(r, period.as_of) is not True),
        reopened=sum(1 for r in resolved if r.reopen_count > 0),
        rework=sum(r.rework_count for r in resolved),
        rated=len(rated),
        satisfied=sum(1 for r in rated if r.rating in (SATISFIED, FAIRLY)),
        rated_satisfied=sum(1 for r in rated if r.rating == SATISFIED),
        rated_fairly=sum(1 for r in rated if r.rating == FAIRLY),
        rated_unsatisfied=sum(1 for r in rated if r.rating == UNSATISFIED),
        unrated=len(unrated),
        due=len(due),
        extended=len(extended),
        closed_on_time=len(closed_on_time),
        open=len(still_open),
        overdue=sum(1 for r in still_open if r.due_at is not None and r.due_at < cutoff),
        accept_times=tuple(accept_times),
        resolve_times=tuple(resolve_times),
    )


def involved(r: CaseRecord, period: Period) -> bool:
    """Does the case figure in any count of the period (the ledger lists exactly these)?"""
    moments = (r.created_at, r.dispatched_at, r.resolved_at, r.rated_at, r.closed_at)
    if any(m in period for m in moments):
        return True
    if r.due_at in period and r.due_at is not None and r.due_at <= period.as_of:
        return True
    return is_open(r, period.cutoff)


# Views: the same figures per node, per leader, per category -------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str  # node code, staff id, category
    name: str
    figures: Figures
    level: str = ""  # 街道 / 社区 / 网格 / 部门 for nodes
    depth: int = 0  # for nodes: indentation below the view's top node


def figures_by_node(records: Iterable[CaseRecord], grids: GridIndex, period: Period) -> dict[int, Figures]:
    """Every node's figures, each over its whole subtree (what the weekly summary needs)."""
    rs = list(records)
    return {node_id: figures((r for r in rs if grids.within(r.grid_id, node_id)), period) for node_id in grids.refs}


def by_node(records: Iterable[CaseRecord], grids: GridIndex, period: Period, top: int | None) -> list[Row]:
    """The node `top` (None: every top-level node) and every node below it, depth first; each row
    covers the node's whole subtree."""
    rs = list(records)
    tops = [top] if top is not None else sorted(i for i, ref in grids.refs.items() if ref.depth == 0)
    rows: list[Row] = []

    def walk(node_id: int, depth: int) -> None:
        ref = grids.refs[node_id]
        mine = (r for r in rs if grids.within(r.grid_id, node_id))
        rows.append(Row(ref.code, ref.name, figures(mine, period), ref.level, depth))
        children = sorted(i for i in grids.refs if grids.line(i)[1:2] == [node_id])
        for child in children:
            walk(child, depth + 1)

    for node_id in tops:
        walk(node_id, 0)
    unplaced = [r for r in rs if r.grid_id not in grids.refs]
    if top is None and any(involved(r, period) for r in unplaced):
        rows.append(Row("", "（未定网格）", figures(unplaced, period)))
    return rows


def _grouped(
    records: Iterable[CaseRecord], period: Period, key: Callable[[CaseRecord], str]
) -> dict[str, list[CaseRecord]]:
    groups: dict[str, list[CaseRecord]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return {k: v for k, v in groups.items() if any(involved(r, period) for r in v)}


def by_leader(records: Iterable[CaseRecord], period: Period, names: dict[int, str]) -> list[Row]:
    """Per assignee (the staff member the case is with now); cases with nobody on them last."""
    groups = _grouped(records, period, lambda r: str(r.assignee_id) if r.assignee_id is not None else "")
    keys = sorted(groups, key=lambda k: (k == "", int(k) if k else 0))
    return [Row(k, names.get(int(k), f"#{k}") if k else "（未指派）", figures(groups[k], period)) for k in keys]


def by_category(records: Iterable[CaseRecord], period: Period) -> list[Row]:
    """Per category, the most received first."""
    groups = _grouped(records, period, lambda r: r.category)
    rows = [Row(k, k, figures(v, period)) for k, v in groups.items()]
    return sorted(rows, key=lambda row: (-row.figures.received, row.name))


# Reading the cases ---------------------------------------------------------------------------------


async def load(
    session: AsyncSession, *, policy: Policy, period: Period, grid_ids: Collection[int] | None = None
) -> list[CaseRecord]:
    """The records of every case that can figure in the period (in these grid nodes; None: all)."""
    rows = await reports.cases_touching(session, start=period.start, end=period.end, grid_ids=grid_ids)
    return [CaseRecord.of(case, policy=policy, extended=extended) for case, extended in rows]
