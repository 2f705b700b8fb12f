"""The time policy: spans in hours and working days over the 2026 holidays, quiet hours, the shipped
presets, and refusals of a policy file that cannot be meant."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.app import create_app
from bot.config import DEFAULT_CATEGORIES_FILE, DEFAULT_POLICY_FILE, Settings
from bot.fake_wechat import FakeWeChat
from handlers.classify import KeywordTable
from handlers.policy import Calendar, Policy, PolicyError, QuietHours, Span
from tests.conftest import LEADER_HP01, RESIDENT, RESIDENT_2, FakeClock, WeChat

ZONE = ZoneInfo("Asia/Shanghai")
POLICY = Policy.load(DEFAULT_POLICY_FILE, ZONE)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


def test_the_shipped_presets_follow_12345_practice() -> None:
    start = at("2026-11-23 10:00")  # a Monday
    assert POLICY.resolution_deadline("燃气", True, start) == at("2026-11-23 12:00")  # danger to life: 2 h
    assert POLICY.resolution_deadline("供水供电供气", False, start) == at("2026-11-24 10:00")  # 24 h
    assert POLICY.resolution_deadline("道路设施", False, start) == at("2026-11-30 10:00")  # general: 7 days
    assert POLICY.resolution_deadline("矛盾纠纷", False, start) == at("2026-12-14 10:00")  # 15 working days
    assert POLICY.response_deadline("道路设施", False, start) == at("2026-11-24 10:00")
    assert POLICY.response_deadline("道路设施", True, start) == at("2026-11-23 10:30")


def test_the_shipped_policy_names_only_categories_of_the_shipped_table() -> None:
    """A misspelt category in policy.yaml would silently fall back to the default class."""
    names = {c.name for c in KeywordTable.load(DEFAULT_CATEGORIES_FILE).categories}
    assert POLICY.categories and set(POLICY.categories) <= names


def test_working_days_skip_weekends_and_holidays_and_count_adjusted_working_weekends() -> None:
    cal = POLICY.calendar
    # 国庆: 10月1日–7日 off, 9月30日 (Wed) + 1 working day is 10月8日 (Thu).
    assert cal.add_working_days(at("2026-09-30 15:00"), 1) == at("2026-10-08 15:00")
    # 10月10日 is a Saturday worked in exchange (调休): counted.
    assert cal.add_working_days(at("2026-10-09 09:00"), 1) == at("2026-10-10 09:00")
    # An ordinary weekend is skipped: Friday + 1 is Monday.
    assert cal.add_working_days(at("2026-11-27 17:00"), 1) == at("2026-11-30 17:00")
    # A report on Saturday counts from Monday 00:00.
    assert cal.add_working_days(at("2026-11-28 11:00"), 2) == at("2026-12-02 00:00")
    # 春节 (2月15日–23日) in the middle of a longer span: 2月13日 (Fri) + 3 = 2月14日 (调休 Sat), 24日, 25日.
    assert cal.add_working_days(at("2026-02-13 10:00"), 3) == at("2026-02-25 10:00")


def test_span_before_walks_back_over_the_same_calendar() -> None:
    cal = POLICY.calendar
    assert Span.parse("2wd").before(at("2026-10-08 15:00"), cal) == at("2026-09-29 15:00")
    assert Span.parse("4h").before(at("2026-11-24 10:00"), cal) == at("2026-11-24 06:00")


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-11-23 21:59", "2026-11-23 21:59"),  # before quiet hours: now
        ("2026-11-23 22:00", "2026-11-24 07:30"),  # evening: next morning
        ("2026-11-24 03:00", "2026-11-24 07:30"),  # after midnight: this morning
        ("2026-11-24 07:30", "2026-11-24 07:30"),  # the end itself is not quiet
    ],
)
def test_quiet_hours_move_a_ping_to_the_morning(moment: str, expected: str) -> None:
    assert POLICY.quiet.defer(at(moment), ZONE) == at(expected)


def test_quiet_hours_within_one_day_and_none() -> None:
    lunch = QuietHours(time(12, 0), time(13, 30))
    assert lunch.defer(at("2026-11-23 12:10"), ZONE) == at("2026-11-23 13:30")
    assert lunch.defer(at("2026-11-23 23:00"), ZONE) == at("2026-11-23 23:00")
    never = QuietHours(time(0, 0), time(0, 0))
    assert never.defer(at("2026-11-23 03:00"), ZONE) == at("2026-11-23 03:00")


def test_deadlines_are_computed_in_office_time_whatever_zone_the_start_is_in() -> None:
    utc_start = at("2026-11-27 17:00").astimezone(ZoneInfo("UTC"))  # Friday evening in Beijing
    assert Calendar(ZONE).add_working_days(utc_start, 1) == at("2026-11-30 17:00")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": {}}, "no classes"),
        ({"default": "normal"}, "default: no class 'normal'"),
        ({"categories": {"噪音扰民": "loud"}}, "categories: no class 'loud'"),
        ({"classes": {"general": {"respond": "1 week"}}}, "class general: not a span"),
        ({"classes": {"general": {"respond": "1h"}}}, "class general: missing resolve"),
        (
            {"classes": {"general": {"respond": "1h", "resolve": "1d", "escalate_every": "0h", "stall": "1d"}}},
            "class general: escalate_every must be longer than 0",
        ),
        ({"holidays": ["2026-10-07..2026-10-01"]}, "range ends before it starts"),
        ({"holidays": ["国庆"]}, "not a date or range"),
        ({"quiet_hours": {"start": "10pm", "end": "07:30"}}, "not a time of day"),
        ({"weekly_summary": {"day": 8, "at": "09:00"}}, "day is 1 .Monday. to 7"),
        ({"daily_digest": "8.30"}, "not a time of day"),
    ],
)
def test_a_policy_that_cannot_be_meant_is_refused_with_the_place(change: dict, message: str) -> None:
    data = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    data.update(change)
    with pytest.raises(PolicyError, match=message):
        Policy.from_dict(data, ZONE)


def test_the_file_name_is_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("classes: {}\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="policy.yaml: no classes"):
        Policy.load(path, ZONE)


async def test_a_dispatched_case_gets_its_deadline_from_the_policy(wechat: WeChat) -> None:
    """Through the webhook: the card shows the deadline of the category's class (water: 24 h)."""
    await wechat.text(RESIDENT, "幸福里小区3号楼停水了")
    await wechat.text(RESIDENT_2, "幸福里小区3号楼东侧路灯坏了")
    water, light = await wechat.cases()
    start = wechat.clock.now()
    assert water.due_at == start + timedelta(hours=24)
    assert light.due_at == start + timedelta(days=7)
    await wechat.deliver()
    assert "办结时限：11月23日 10:00" in wechat.pushes_to(LEADER_HP01)[0]


async def test_the_office_can_ship_its_own_policy(
    aiohttp_client: Any, settings: Settings, clock: FakeClock, fake_wechat: FakeWeChat, tmp_path: Path
) -> None:
    data = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    data["classes"]["general"]["resolve"] = "3wd"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    own = settings.model_copy(update={"policy_file": path})
    client = await aiohttp_client(create_app(own, clock=clock, background=False))
    wechat = WeChat(client, clock, fake_wechat, "")
    await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了")
    (case,) = await wechat.cases()
    # Sunday 22 Nov counts from Monday 00:00: three whole working days, Monday to Wednesday.
    assert case.due_at == at("2026-11-26 00:00")
