"""The office's time policy: deadlines per kind of case, in calendar hours or working days, and quiet
hours. Read from bot/data/policy.yaml (GRIDBOT_POLICY_FILE to use your own); pure functions of time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

_SPAN = re.compile(r"^\s*(\d+)\s*(m|h|d|wd)\s*$")


class PolicyError(ValueError):
    """The policy file says something that cannot be meant; the message names the place."""


@dataclass(frozen=True)
class Calendar:
    """Which days are working days: Monday to Friday, minus holidays, plus 调休 working weekends."""

    zone: ZoneInfo
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The same office-clock time, `days` working days later. Starting on a day off counts from
        the start of the next working day (a report on Saturday is due as if it came Monday 00:00)."""
        local = start.astimezone(self.zone)
        if not self.is_working_day(local.date()):
            day = local.date()
            while not self.is_working_day(day):
                day += timedelta(days=1)
            local = datetime.combine(day, time(0, 0), self.zone)
        day = local.date()
        left = days
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return datetime.combine(day, local.timetz().replace(tzinfo=None), self.zone)


@dataclass(frozen=True)
class Span:
    """A length of time as the office counts it: 30m, 2h, 3d (calendar) or 5wd (working days)."""

    amount: int
    unit: str  # m | h | d | wd

    @classmethod
    def parse(cls, text: str) -> Span:
        m = _SPAN.match(str(text))
        if m is None:
            raise PolicyError(f"not a span: {text!r} (write 30m, 2h, 3d or 5wd)")
        return cls(int(m.group(1)), m.group(2))

    def after(self, start: datetime, calendar: Calendar) -> datetime:
        if self.unit == "wd":
            return calendar.add_working_days(start, self.amount)
        return start + self._delta()

    def before(self, end: datetime, calendar: Calendar) -> datetime:
        """The moment this span ends at `end` (for reminders ahead of a deadline)."""
        if self.unit == "wd":
            # Walk back working days: the latest moment whose `after` is not past `end`.
            local = end.astimezone(calendar.zone)
            day, left = local.date(), self.amount
            while left > 0:
                day -= timedelta(days=1)
                if calendar.is_working_day(day):
                    left -= 1
            return datetime.combine(day, local.timetz().replace(tzinfo=None), calendar.zone)
        return end - self._delta()

    def _delta(self) -> timedelta:
        return {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}[self.unit] * self.amount

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass(frozen=True)
class Timing:
    """The deadlines and follow-up rhythm of one class of case."""

    respond: Span
    resolve: Span
    remind_before: tuple[Span, ...]
    escalate_every: Span
    stall: Span


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight: 22:00–07:30

    def defer(self, at: datetime, zone: ZoneInfo) -> datetime:
        """`at`, or the end of the quiet hours it falls in (office time)."""
        local = at.astimezone(zone)
        if not self.contains(local.time()):
            return at
        day = local.date() if local.time() < self.end else local.date() + timedelta(days=1)
        return datetime.combine(day, self.end, zone)


@dataclass(frozen=True)
class Policy:
    calendar: Calendar
    quiet: QuietHours
    classes: dict[str, Timing]
    categories: dict[str, str]  # category → class
    urgent_class: str
    default_class: str
    # How long a resident has to rate a 办结 before the case closes as 未评价.
    rating_wait: Span = Span(3, "d")
    # The daily digest to each staff member with open cases (office time), and the weekly summary to
    # each 社区 and 街道 (ISO weekday, 1 = Monday).
    digest_at: time = time(8, 30)
    weekly_day: int = 1
    weekly_at: time = time(9, 0)

    def class_of(self, category: str, urgent: bool) -> str:
        if urgent:
            return self.urgent_class
        return self.categories.get(category, self.default_class)

    def timing(self, category: str, urgent: bool) -> Timing:
        return self.classes[self.class_of(category, urgent)]

    def resolution_deadline(self, category: str, urgent: bool, start: datetime) -> datetime:
        return self.timing(category, urgent).resolve.after(start, self.calendar)

    def response_deadline(self, category: str, urgent: bool, start: datetime) -> datetime:
        return self.timing(category, urgent).respond.after(start, self.calendar)

    @classmethod
    def load(cls, path: Path, zone: ZoneInfo) -> Policy:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        try:
            return cls.from_dict(data, zone)
        except PolicyError as exc:
            raise PolicyError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, data: dict[str, Any], zone: ZoneInfo) -> Policy:
        classes = {str(name): _timing(str(name), spec) for name, spec in (data.get("classes") or {}).items()}
        if not classes:
            raise PolicyError("no classes")
        categories = {str(k): str(v) for k, v in (data.get("categories") or {}).items()}
        urgent, default = str(data.get("urgent", "")), str(data.get("default", ""))
        named = [("urgent", urgent), ("default", default), *(("categories", v) for v in categories.values())]
        for where, name in named:
            if name not in classes:
                raise PolicyError(f"{where}: no class {name!r} (classes: {', '.join(classes)})")
        quiet = data.get("quiet_hours") or {"start": "00:00", "end": "00:00"}
        weekly = data.get("weekly_summary") or {}
        weekly_day = weekly.get("day", 1)
        if weekly_day not in range(1, 8):
            raise PolicyError(f"weekly_summary: day is 1 (Monday) to 7 (Sunday), not {weekly_day!r}")
        return cls(
            calendar=Calendar(zone, _days(data.get("holidays")), _days(data.get("workdays"))),
            quiet=QuietHours(_clock(quiet.get("start")), _clock(quiet.get("end"))),
            classes=classes,
            categories=categories,
            urgent_class=urgent,
            default_class=default,
            rating_wait=Span.parse(data.get("rating_wait", "3d")),
            digest_at=_clock(data.get("daily_digest", "08:30")),
            weekly_day=weekly_day,
            weekly_at=_clock(weekly.get("at", "09:00")),
        )


def _timing(name: str, spec: dict[str, Any]) -> Timing:
    try:
        timing = Timing(
            respond=Span.parse(spec["respond"]),
            resolve=Span.parse(spec["resolve"]),
            remind_before=tuple(Span.parse(s) for s in spec.get("remind_before") or []),
            escalate_every=Span.parse(spec["escalate_every"]),
            stall=Span.parse(spec["stall"]),
        )
        if timing.escalate_every.amount == 0:  # escalation would repeat without time passing
            raise PolicyError("escalate_every must be longer than 0")
        return timing
    except KeyError as exc:
        raise PolicyError(f"class {name}: missing {exc.args[0]}") from exc
    except PolicyError as exc:
        raise PolicyError(f"class {name}: {exc}") from exc


def _clock(text: Any) -> time:
    try:
        return time.fromisoformat(str(text))
    except ValueError as exc:
        raise PolicyError(f"not a time of day: {text!r} (write 22:00)") from exc


def _days(entries: Any) -> frozenset[date]:
    """Dates and ranges: 2026-10-01 or 2026-10-01..2026-10-07 (YAML may hand over date objects)."""
    days: set[date] = set()
    for entry in entries or []:
        first, _, last = str(entry).partition("..")
        try:
            start = date.fromisoformat(first.strip())
            end = date.fromisoformat(last.strip()) if last else start
        except ValueError as exc:
            raise PolicyError(f"not a date or range: {entry!r}") from exc
        if end < start:
            raise PolicyError(f"range ends before it starts: {entry!r}")
        days.update(start + timedelta(days=i) for i in range((end - start).days + 1))
    return frozenset(days)
