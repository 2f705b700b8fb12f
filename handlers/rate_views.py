"""What the console's rates page asks of the rates: the period a person picked, and the same figures
over time (the trend chart). Every figure is `handlers.rates.figures`; this module only chooses the
periods it is taken over.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import rates
from handlers.policy import Policy
from handlers.rates import CaseRecord, Figures, Period

TREND_WEEKS = 12  # a short period is shown against the weeks before it
MIN_POINTS = 4  # leading empty weeks are dropped down to this many
MAX_WEEKLY_POINTS = 53  # beyond a year of weeks, the trend goes by month


class PeriodKind(Enum):
    LAST_WEEK = "last_week"  # 上周 (Monday to Sunday): the default, as `gridbot report`
    THIS_WEEK = "this_week"  # 本周 so far
    THIS_MONTH = "this_month"  # 本月 so far
    MONTH = "month"  # a calendar month
    RANGE = "range"  # from a day to a day, both included


@dataclass(frozen=True)
class PeriodChoice:
    """A period as the page's selector names it (already checked: dates exist, first ≤ last)."""

    kind: PeriodKind = PeriodKind.LAST_WEEK
    month: tuple[int, int] | None = None  # (year, month) for MONTH
    first: date | None = None  # for RANGE
    last: date | None = None


def period_of(choice: PeriodChoice, zone: ZoneInfo, now: datetime) -> Period:
    """The [start, end) the choice means in office time, with the figures taken now."""
    today = now.astimezone(zone).date()
    if choice.kind is PeriodKind.THIS_WEEK:
        return rates.days(today - timedelta(days=today.weekday()), today, zone, as_of=now)
    if choice.kind is PeriodKind.THIS_MONTH:
        return rates.days(today.replace(day=1), today, zone, as_of=now)
    if choice.kind is PeriodKind.MONTH and choice.month is not None:
        return rates.month(*choice.month, zone, as_of=now)
    if choice.kind is PeriodKind.RANGE and choice.first is not None and choice.last is not None:
        return rates.days(choice.first, choice.last, zone, as_of=now)
    return rates.last_full_week(now, zone)


@dataclass(frozen=True)
class Bucket:
    """One point of the trend: a week (labelled by its Monday) or a month."""

    label: str
    period: Period
    figures: Figures = Figures()
    unit: str = "周"  # 周 | 月


def trend_periods(period: Period, zone: ZoneInfo) -> list[Bucket]:
    """The periods of the trend around `period`: up to 12 weeks, the picked period's last week last; a
    longer period week by week; beyond a year, month by month."""
    first = period.start.astimezone(zone).date()
    last = (period.end - timedelta(microseconds=1)).astimezone(zone).date()
    last_monday = last - timedelta(days=last.weekday())
    first_monday = first - timedelta(days=first.weekday())
    weeks = (last_monday - first_monday).days // 7 + 1
    if weeks > MAX_WEEKLY_POINTS:
        buckets = []
        year, number = first.year, first.month
        while (year, number) <= (last.year, last.month):
            month = rates.month(year, number, zone, as_of=period.as_of)
            buckets.append(Bucket(f"{year}-{number:02d}", month, unit="月"))
            year, number = (year + 1, 1) if number == 12 else (year, number + 1)
        return buckets
    start = min(first_monday, last_monday - timedelta(weeks=TREND_WEEKS - 1))
    count = (last_monday - start).days // 7 + 1
    mondays = [start + timedelta(weeks=i) for i in range(count)]
    return [Bucket(f"{m:%m-%d}", rates.days(m, m + timedelta(days=6), zone, as_of=period.as_of)) for m in mondays]


def trend(records: Iterable[CaseRecord], buckets: list[Bucket], *, keep: int = MIN_POINTS) -> list[Bucket]:
    """Each bucket's figures over the same cases; weeks before the node's first case (not a single
    case counted in them) are left out, down to `keep` points, so a new office's chart is not half
    empty."""
    rs = list(records)
    filled = [Bucket(b.label, b.period, rates.figures(rs, b.period), b.unit) for b in buckets]
    first = next((i for i, b in enumerate(filled) if b.figures != Figures()), len(filled))
    return filled[min(first, max(len(filled) - keep, 0)) :]


async def load_trend(
    session: AsyncSession,
    *,
    policy: Policy,
    zone: ZoneInfo,
    period: Period,
    grid_ids: Collection[int] | None,
) -> list[Bucket]:
    """The trend of the cases in these grid nodes (None: the whole office), read in one query."""
    buckets = trend_periods(period, zone)
    span = Period(buckets[0].period.start, buckets[-1].period.end, period.as_of)
    return trend(await rates.load(session, policy=policy, period=span, grid_ids=grid_ids), buckets)
