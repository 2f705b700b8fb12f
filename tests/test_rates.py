"""The rates (handlers/rates.py) on hand-computed examples, with the arithmetic written out; then the
same figures from cases worked through the chat, and the .xlsx/.csv exports.

Times are office time (Asia/Shanghai). The period is the week Monday 11-16 00:00 to Monday 11-23 00:00;
the figures are taken Monday 11-23 09:00, when the weekly summary goes out."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from bot.app import FACTORY, SERVICES
from handlers import ledger_export, rates
from handlers.places import GridIndex
from handlers.rates import CaseRecord, Period
from storage.lifecycle import Status
from storage.models import GridNode
from tests.conftest import LEADER_HP, LEADER_HP01, RESIDENT, RESIDENT_2, WeChat

ZONE = ZoneInfo("Asia/Shanghai")
S = Status


def at(text: str) -> datetime:
    """ "11-17 09:00" in 2026, office time."""
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=ZONE)


def hours(h: float) -> timedelta:
    return timedelta(hours=h)


WEEK = Period(at("11-16 00:00"), at("11-23 00:00"), as_of=at("11-23 09:00"))


def case(id: int, status: str, created: str, **kw: Any) -> CaseRecord:
    times = {k: at(v) if isinstance(v, str) and k.endswith("_at") else v for k, v in kw.items()}
    return CaseRecord(
        id=id,
        number=f"G{id:04d}",
        category=kw.pop("category", "道路设施"),
        grid_id=times.pop("grid_id", 3),
        urgent=False,
        status=status,
        assignee_id=times.pop("assignee_id", 7),
        created_at=at(created),
        **{k: v for k, v in times.items() if k != "category"},
    )


# A: answered in 1 h, resolved in 48 h well before its deadline, rated 满意.
A = case(1, S.CLOSED, "11-16 09:00", dispatched_at="11-16 09:00", response_due_at="11-17 09:00",
         accepted_at="11-16 10:00", resolved_at="11-18 09:00", due_at="11-22 09:00", closed_at="11-19 09:00",
         rating="满意", rated_at="11-19 09:00")  # fmt: skip
# B: accepted 2 h after its response deadline, resolved a day late, 返工 twice on the way, 基本满意.
B = case(2, S.CLOSED, "11-17 09:00", dispatched_at="11-17 09:00", response_due_at="11-18 09:00",
         accepted_at="11-18 11:00", resolved_at="11-20 09:00", due_at="11-19 09:00", closed_at="11-21 09:00",
         rework_count=2, rating="基本满意", rated_at="11-21 09:00")  # fmt: skip
# C: never accepted; its deadline (11-22) passed while open.
C = case(3, S.DISPATCHED, "11-18 09:00", dispatched_at="11-18 09:00", response_due_at="11-19 09:00",
         due_at="11-22 09:00")  # fmt: skip
# D: dispatched Sunday evening; at 11-23 09:00 its response window (to 11-23 20:00) is still open.
D = case(4, S.DISPATCHED, "11-22 20:00", dispatched_at="11-22 20:00", response_due_at="11-23 20:00",
         due_at="11-29 20:00")  # fmt: skip
# E, F: two more residents reported A's problem (linked at intake: closed from birth).
E = case(5, S.DUPLICATE, "11-19 09:00", duplicate_of_id=1)
F = case(6, S.DUPLICATE, "11-20 09:00", duplicate_of_id=1)
# G: reported the week before, rated 不满意 this week (重办), resolved again, waiting for a new rating.
G = case(7, S.AWAITING_RATING, "11-10 09:00", dispatched_at="11-10 09:00", response_due_at="11-11 09:00",
         accepted_at="11-10 10:00", resolved_at="11-21 09:00", due_at="11-24 09:00", reopen_count=1,
         rating="不满意", rated_at="11-17 09:00")  # fmt: skip
# H: an approved 延期 moved its deadline to 11-20 23:59; still not done.
H = case(8, S.IN_PROGRESS, "11-05 09:00", dispatched_at="11-05 09:00", response_due_at="11-06 09:00",
         accepted_at="11-05 10:00", due_at="11-20 23:59", extended=True)  # fmt: skip
# K: resolved the week before, due Monday 08:00, closed 未评价 on Monday.
K = case(9, S.CLOSED, "11-09 09:00", dispatched_at="11-09 09:00", response_due_at="11-10 09:00",
         accepted_at="11-09 10:00", resolved_at="11-13 09:00", due_at="11-16 08:00",
         closed_at="11-16 09:00")  # fmt: skip
# J: checked and found 不属实 three hours after dispatch, without a 接单.
J = case(10, S.UNFOUNDED, "11-17 09:00", dispatched_at="11-17 09:00", response_due_at="11-18 09:00",
         due_at="11-24 09:00", closed_at="11-17 12:00")  # fmt: skip
WEEKS_CASES = [A, B, C, D, E, F, G, H, K, J]


def test_the_weeks_figures_by_hand() -> None:
    f = rates.figures(WEEKS_CASES, WEEK)
    # Received: reported in the week: A B C D E F J = 7 (G, H, K came earlier). Repeats E, F of one case (A).
    assert (f.received, f.repeats, f.repeated_originals) == (7, 2, 1)
    # 响应率: dispatched in the week: A B C D J; D is still inside its window → 4 decided.
    # On time: A (10:00 ≤ 11-17 09:00), J (closed 12:00 ≤ 11-18 09:00); B late (11:00 > 09:00), C never.
    assert (f.dispatched, f.response_pending, f.answered_on_time) == (4, 1, 2)
    assert f.response_rate == 2 / 4
    # Time to accept: A 1 h, B 26 h (J was never accepted). Median (1 + 26) / 2 = 13.5 h;
    # p90 at position 0.9 × (2 − 1) = 0.9: 1 + 0.9 × (26 − 1) = 23.5 h.
    assert (f.accept_median, f.accept_p90) == (hours(13.5), hours(23.5))
    # 按期办结率: resolved in the week: A (by 11-22), B (after 11-19: late), G (by 11-24) → 2 / 3.
    assert (f.resolved, f.resolved_on_time) == (3, 2)
    assert f.on_time_rate == 2 / 3
    # Time to resolve: A 48 h, B 72 h, G 11 days = 264 h. Median 72 h; p90 at 0.9 × 2 = 1.8:
    # 72 + 0.8 × (264 − 72) = 225.6 h.
    assert f.resolve_median == hours(72)
    assert f.resolve_p90 == hours(225.6)
    # 重办率: of the 3 resolved, G was reopened → 1 / 3. 返工: B's 2.
    assert (f.reopened, f.reopen_rate, f.rework) == (1, 1 / 3, 2)
    # 满意率: rated in the week: A 满意, B 基本满意, G 不满意 → (1 + 1) / 3; score (5 + 4 + 3) / 3 = 4.
    assert (f.rated, f.satisfied, f.satisfaction_rate, f.satisfaction_score) == (3, 2, 2 / 3, 4.0)
    # 未评价: K, closed without a rating; not among the rated.
    assert f.unrated == 1
    # 按期结案率: due in the week (and past by 11-23 09:00): A B C H K = 5; H has an approved 延期 → 4.
    # Finished by the deadline: A (11-18 ≤ 11-22), K (11-13 ≤ 11-16 08:00); B late, C open → 2 / (5 − 1).
    assert (f.due, f.extended, f.closed_on_time) == (5, 1, 2)
    assert f.closure_rate == 2 / 4
    # At the week's end (11-23 00:00): open C, D, H (G was resolved, J closed); overdue C (11-22), H (11-20).
    assert (f.open, f.overdue) == (3, 2)


def test_a_rate_with_nothing_to_divide_by_is_none_never_zero_or_one() -> None:
    for f in (rates.figures([], WEEK), rates.figures([E, F], WEEK)):
        assert f.response_rate is None and f.on_time_rate is None and f.satisfaction_rate is None
        assert f.satisfaction_score is None and f.reopen_rate is None and f.closure_rate is None
        assert f.accept_median is None and f.resolve_p90 is None
    # Only H is due, and it was extended: 0 / (1 − 1) has no meaning.
    assert rates.figures([H], WEEK).closure_rate is None
    row = rates.Row("", "x", rates.figures([], WEEK))
    assert ledger_export.text_of(ledger_export.Kind.RATE, row.figures.response_rate, ZONE) == "—"


def test_unrated_closures_are_not_rated_and_basic_satisfaction_counts_as_satisfied() -> None:
    fairly = replace(B, id=11, number="G0011", rating="基本满意")
    unsatisfied = replace(A, id=12, number="G0012", rating="不满意")
    f = rates.figures([fairly, unsatisfied, K], WEEK)
    # Rated: 基本满意 (satisfied) and 不满意 → 1 / 2; score (4 + 3) / 2 = 3.5. K is 未评价, not rated.
    assert (f.rated, f.satisfaction_rate, f.satisfaction_score, f.unrated) == (2, 0.5, 3.5, 1)


def test_a_reopened_case_waits_for_its_second_resolution() -> None:
    # Rated 不满意 on 11-17 (resolved_at cleared, new deadline), not resolved again yet: not in the resolved
    # cohort (nothing to count it against), open and not yet overdue at the week's end.
    reopened = replace(G, status=S.DISPATCHED, resolved_at=None, due_at=at("11-24 09:00"))
    f = rates.figures([reopened], WEEK)
    assert (f.resolved, f.reopened, f.reopen_rate, f.open, f.overdue) == (0, 0, None, 1, 0)
    assert f.rated == 1 and f.satisfaction_rate == 0.0


def test_a_case_resolved_after_the_week_was_open_and_overdue_at_its_end() -> None:
    late = replace(C, resolved_at=at("11-23 08:00"), status=S.AWAITING_RATING, accepted_at=at("11-22 10:00"))
    f = rates.figures([late], WEEK)
    # Open at 11-23 00:00 (resolved 08:00), due 11-22 09:00 → overdue then; due in the week and resolved late.
    assert (f.open, f.overdue, f.due, f.closed_on_time, f.closure_rate) == (1, 1, 1, 0, 0.0)
    assert rates.late(late, WEEK.cutoff) is True


def test_percentiles_interpolate_between_ranks() -> None:
    values = [hours(h) for h in (4, 1, 3, 2)]
    assert rates.percentile(values, 0.5) == hours(2.5)  # (2 + 3) / 2
    assert rates.percentile(values, 0.9) == hours(3.7)  # position 2.7: 3 + 0.7 × (4 − 3)
    assert rates.percentile([hours(5)], 0.9) == hours(5)
    assert rates.percentile([], 0.5) is None


def test_periods_in_office_time() -> None:
    week = rates.last_full_week(at("11-23 09:00"), ZONE)
    assert (week.start, week.end) == (at("11-16 00:00"), at("11-23 00:00"))
    sunday = rates.last_full_week(at("11-22 23:00"), ZONE)  # still the week of 11-16: the one before it
    assert (sunday.start, sunday.end) == (at("11-09 00:00"), at("11-16 00:00"))
    december = rates.month(2026, 12, ZONE, as_of=at("11-23 09:00"))
    assert (december.start, december.end) == (at("12-01 00:00"), datetime(2027, 1, 1, tzinfo=ZONE))


def _index() -> GridIndex:
    """街道 1 → 社区 2 → 网格 3, 4; 社区 5 (no cases)."""
    nodes = [
        GridNode(id=1, code="s", name="幸福街道", level="街道", path="/1/"),
        GridNode(id=2, code="s-a", name="和平里社区", level="社区", parent_id=1, path="/1/2/"),
        GridNode(id=3, code="s-a-1", name="第一网格", level="网格", parent_id=2, path="/1/2/3/"),
        GridNode(id=4, code="s-a-2", name="第二网格", level="网格", parent_id=2, path="/1/2/4/"),
        GridNode(id=5, code="s-b", name="枣林社区", level="社区", parent_id=1, path="/1/5/"),
    ]
    return GridIndex(nodes)


def test_a_node_counts_its_whole_subtree_and_leaders_and_categories_split_the_same_cases() -> None:
    grids = _index()
    in_second = replace(B, grid_id=4, assignee_id=8, category="噪音扰民")
    cases = [A, in_second, C]
    rows = rates.by_node(cases, grids, WEEK, top=None)
    assert [(r.name, r.depth, r.figures.received) for r in rows] == [
        ("幸福街道", 0, 3),
        ("和平里社区", 1, 3),
        ("第一网格", 2, 2),  # A, C
        ("第二网格", 2, 1),  # B
        ("枣林社区", 1, 0),
    ]
    # The 社区's rates are over the pooled cases, not an average of its grids' rates:
    # answered on time A only, of A B C → 1 / 3 (the grids: 1 / 2 and 0 / 1).
    assert rows[1].figures.response_rate == 1 / 3
    assert rows[4].figures.response_rate is None
    per_node = rates.figures_by_node(cases, grids, WEEK)
    assert per_node[2] == rows[1].figures and per_node[5].received == 0
    leaders = rates.by_leader(cases, WEEK, {7: "张伟", 8: "赵敏"})
    assert [(r.name, r.figures.received) for r in leaders] == [("张伟", 2), ("赵敏", 1)]
    categories = rates.by_category(cases, WEEK)
    assert [(r.name, r.figures.received) for r in categories] == [("道路设施", 2), ("噪音扰民", 1)]


# Through the chat ---------------------------------------------------------------------------------


LAMP = "幸福里小区3号楼东侧路灯坏了"


async def _report(wechat: WeChat, first: str, last: str, as_of: datetime, node: str | None = None) -> Any:
    services = wechat.app[SERVICES]
    period = rates.days(at(first).date(), at(last).date(), ZONE, as_of=as_of)
    node_id = next((i for i, r in services.grids.refs.items() if r.code == node), None) if node else None
    from storage.db import transaction

    async with transaction(wechat.app[FACTORY]) as session:
        return await ledger_export.collect(
            session, policy=services.policy, grids=services.grids, zone=ZONE, period=period, node_id=node_id
        )


async def test_cases_worked_through_the_chat_give_the_hand_computed_figures(wechat: WeChat, tmp_path: Path) -> None:
    # Sunday 11-22 10:00. Case 1: accepted at once, resolved the same day, rated 满意.
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(LEADER_HP01, "接单")
    wechat.clock.advance(hours=2)
    await wechat.text(LEADER_HP01, "办结 已更换灯泡")
    await wechat.text(RESIDENT, "1")
    # Case 2 (12:00): the lamp again; accepted 30 h later (response deadline 24 h: late), then a 延期.
    await wechat.text(RESIDENT_2, "幸福里小区3号楼东侧路灯又坏了")
    wechat.clock.advance(hours=30)  # Monday 11-23 18:00
    await wechat.text(LEADER_HP01, "接单")
    await wechat.text(LEADER_HP01, "延期 到12月10日 等配件")
    await wechat.text(LEADER_HP, "同意")
    # The first resident reports it too: the same place and category as open case 2, linked at intake.
    await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯还是不亮")
    one, two, repeat = await wechat.cases()
    assert (one.status, one.rating) == (Status.CLOSED, "满意")
    assert two.requested_due_at is None and two.due_at is not None and two.due_at > at("12-10 00:00")
    assert repeat.duplicate_of_id == two.id

    report = await _report(wechat, "11-16", "12-31", as_of=at("12-31 12:00"), node="xf-hp")
    f = report.total.figures
    # Received 3 (one a repeat of case 2). 响应率: dispatched 2 (the repeat never is); case 1 on time,
    # case 2 accepted after 30 h > 24 h → 1 / 2. Time to accept: 0 h and 30 h → median 15 h.
    assert (f.received, f.repeats, f.repeated_originals) == (3, 1, 1)
    assert (f.dispatched, f.answered_on_time, f.response_rate) == (2, 1, 0.5)
    assert f.accept_median == hours(15)
    # 按期办结率: case 1 only, in 2 h → 1 / 1. 满意率 1 / 1, score 5.
    assert (f.resolved, f.on_time_rate, f.resolve_median) == (1, 1.0, hours(2))
    assert (f.rated, f.satisfaction_rate, f.satisfaction_score) == (1, 1.0, 5.0)
    # 按期结案率: due by 12-31: case 1 (done) and case 2 (extended to 12-10, still open) → 1 / (2 − 1).
    assert (f.due, f.extended, f.closed_on_time, f.closure_rate) == (2, 1, 1, 1.0)
    # Case 2 still open at 12-31 and past its extended deadline.
    assert (f.open, f.overdue) == (1, 1)
    # The ledger lists all three; the 台账 says who and when.
    numbers = [line.case.number for line in report.ledger]
    assert numbers == [one.number, two.number, repeat.number]
    assert report.ledger[2].original == two.number and report.ledger[1].case.extended
    assert report.ledger[0].leader == "张伟" and report.ledger[0].grid == "和平里第一网格"
    assert report.ledger[0].within == "幸福街道 / 和平里社区"

    # Another 社区 has none of them; the street has them all.
    assert (await _report(wechat, "11-16", "12-31", at("12-31 12:00"), node="xf-ch")).total.figures.received == 0
    street = await _report(wechat, "11-16", "12-31", at("12-31 12:00"))
    assert street.total.figures == f

    # The workbook: one sheet per view, Chinese headers, the header row frozen, real dates and numbers.
    path = tmp_path / "report.xlsx"
    ledger_export.write_xlsx(report, path)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["台账", "按网格", "按负责人", "按类别"]
    for sheet in book.worksheets:
        assert sheet.freeze_panes == "A2"
    ledger = book["台账"]
    headers = [c.value for c in ledger[1]]
    assert headers[:4] == ["工单编号", "类别", "紧急", "网格"] and "办结时限" in headers and "负责人" in headers
    row = {h: c for h, c in zip(headers, ledger[2], strict=True)}
    assert row["工单编号"].value == one.number
    assert isinstance(row["上报时间"].value, datetime) and row["上报时间"].value == datetime(2026, 11, 22, 10, 0)
    assert row["上报时间"].is_date and row["上报时间"].number_format == "yyyy-mm-dd hh:mm"
    assert row["派遣时间"].value == datetime(2026, 11, 22, 10, 0) and row["评价"].value == "满意"
    assert row["是否超期"].value == "否" and row["重办次数"].value == 0
    nodes = book["按网格"]
    node_headers = [c.value for c in nodes[1]]
    assert node_headers[:3] == ["编码", "层级", "名称"]
    top = {h: c for h, c in zip(node_headers, nodes[2], strict=True)}
    assert top["编码"].value == "xf-hp" and top["受理"].value == 3
    assert top["响应率"].value == 0.5 and top["响应率"].number_format == "0.0%"
    assert top["接单用时中位数(小时)"].value == 15.0
    grid2 = {h: c for h, c in zip(node_headers, nodes[4], strict=True)}  # 和平里第二网格: nothing
    assert grid2["名称"].value.strip("　") == "和平里第二网格" and grid2["响应率"].value == "—"
    assert [c.value for c in book["按负责人"]["A"]][1:] == ["和平里社区", "张伟", "（未指派）"]

    # csv: the view and the ledger, UTF-8 with a BOM for Excel.
    written = ledger_export.write_csvs(report, "category", tmp_path / "rates.csv")
    assert [p.name for p in written] == ["rates.csv", "rates_台账.csv"]
    raw = written[0].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(written[0].read_text(encoding="utf-8-sig").splitlines()))
    assert lines[0][:3] == ["名称", "受理", "重复反映"]
    assert lines[2][0] == "道路设施" and lines[2][lines[0].index("响应率")] == "50.0%"
    ledger_lines = list(csv.reader(written[1].read_text(encoding="utf-8-sig").splitlines()))
    assert ledger_lines[1][ledger_lines[0].index("上报时间")] == "2026-11-22 10:00"


@pytest.mark.parametrize("by", ["node", "leader", "category"])
async def test_the_terminal_table_names_every_row_in_chinese(wechat: WeChat, by: str) -> None:
    await wechat.text(RESIDENT, LAMP)
    report = await _report(wechat, "11-16", "11-22", at("11-23 09:00"), node="xf-hp")
    text = ledger_export.table(report, by)
    first, header, *rows = text.splitlines()
    assert first.startswith("和平里社区 2026-11-16 至 2026-11-22") and "截至 2026-11-23 09:00" in first
    assert header.split()[:3] == ["名称", "受理", "重复反映"]
    expected = {"node": "和平里第一网格", "leader": "张伟", "category": "道路设施"}[by]
    assert any(expected in row and "—" in row for row in rows)  # dispatched, not yet due: no rate yet
