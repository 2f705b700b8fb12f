"""办结时限: the resolution deadline a case gets when it is dispatched, and again when it is reopened,
by the office's policy per category and urgency (handlers/policy.py); and how dates are shown."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from handlers.policy import Policy
from storage.models import Case


def resolution_deadline(case: Case, now: datetime, policy: Policy) -> datetime:
    return policy.resolution_deadline(case.category, case.urgent, now)


def end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """ "延期到12月5日" means through that day: 23:59 office time."""
    return datetime.combine(day, time(23, 59), zone)


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """ "挂起到12月1日" means work resumes that day: 00:00 office time."""
    return datetime.combine(day, time(0, 0), zone)


def show(at: datetime, zone: ZoneInfo) -> str:
    """11月29日 10:00, in office time."""
    local = at.astimezone(zone)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def show_day(day: date) -> str:
    return f"{day.month}月{day.day}日"
