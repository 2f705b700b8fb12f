"""台账 and rate views on paper: an .xlsx workbook (one sheet per view), .csv files, a terminal table.

The figures come from handlers/rates.py; this module only lays them out. Each column is declared once
(its Chinese header, its kind, how to read it) and every output uses the same declaration. Times are
shown in office time; in the workbook they are real dates (naive, office time) with a date format,
rates real numbers with a percent format, so Excel can sort and sum them.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import rates
from handlers.places import GridIndex
from handlers.policy import Policy
from handlers.rates import CaseRecord, Period, Row
from storage import reports

NONE = "—"  # a rate with nothing to divide by


class Kind(Enum):
    TEXT = "text"
    COUNT = "count"
    RATE = "rate"  # a fraction, shown as a percentage
    SCORE = "score"
    HOURS = "hours"  # a duration, in hours
    TIME = "time"  # an aware datetime, shown in office time
    FLAG = "flag"  # 是 / 否


T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    header: str
    kind: Kind
    get: Callable[[T], Any]
    width: int = 10


def _hours(d: timedelta | None) -> float | None:
    return None if d is None else d.total_seconds() / 3600


# The rate views (按网格 / 按负责人 / 按类别): one row per node, leader or category.
RATE_COLUMNS: list[Column[Row]] = [
    Column("名称", Kind.TEXT, lambda r: r.name, 16),
    Column("受理", Kind.COUNT, lambda r: r.figures.received),
    Column("重复反映", Kind.COUNT, lambda r: r.figures.repeats),
    Column("涉及原工单", Kind.COUNT, lambda r: r.figures.repeated_originals),
    Column("应响应", Kind.COUNT, lambda r: r.figures.dispatched),
    Column("按时响应", Kind.COUNT, lambda r: r.figures.answered_on_time),
    Column("响应率", Kind.RATE, lambda r: r.figures.response_rate),
    Column("待响应", Kind.COUNT, lambda r: r.figures.response_pending),
    Column("接单用时中位数(小时)", Kind.HOURS, lambda r: _hours(r.figures.accept_median), 12),
    Column("接单用时P90(小时)", Kind.HOURS, lambda r: _hours(r.figures.accept_p90), 12),
    Column("办结", Kind.COUNT, lambda r: r.figures.resolved),
    Column("按期办结", Kind.COUNT, lambda r: r.figures.resolved_on_time),
    Column("按期办结率", Kind.RATE, lambda r: r.figures.on_time_rate),
    Column("办结用时中位数(小时)", Kind.HOURS, lambda r: _hours(r.figures.resolve_median), 12),
    Column("办结用时P90(小时)", Kind.HOURS, lambda r: _hours(r.figures.resolve_p90), 12),
    Column("参评", Kind.COUNT, lambda r: r.figures.rated),
    Column("满意", Kind.COUNT, lambda r: r.figures.rated_satisfied),
    Column("基本满意", Kind.COUNT, lambda r: r.figures.rated_fairly),
    Column("不满意", Kind.COUNT, lambda r: r.figures.rated_unsatisfied),
    Column("满意率", Kind.RATE, lambda r: r.figures.satisfaction_rate),
    Column("满意度(5/4/3)", Kind.SCORE, lambda r: r.figures.satisfaction_score),
    Column("未评价", Kind.COUNT, lambda r: r.figures.unrated),
    Column("重办", Kind.COUNT, lambda r: r.figures.reopened),
    Column("重办率", Kind.RATE, lambda r: r.figures.reopen_rate),
    Column("返工", Kind.COUNT, lambda r: r.figures.rework),
    Column("应结案", Kind.COUNT, lambda r: r.figures.due),
    Column("延期", Kind.COUNT, lambda r: r.figures.extended),
    Column("按期结案", Kind.COUNT, lambda r: r.figures.closed_on_time),
    Column("按期结案率", Kind.RATE, lambda r: r.figures.closure_rate),
    Column("期末未办结", Kind.COUNT, lambda r: r.figures.open),
    Column("超期", Kind.COUNT, lambda r: r.figures.overdue),
]
NODE_COLUMNS: list[Column[Row]] = [
    Column("编码", Kind.TEXT, lambda r: r.key, 12),
    Column("层级", Kind.TEXT, lambda r: r.level, 6),
    *RATE_COLUMNS,
]
# What the terminal has room for.
TABLE_HEADERS = frozenset(
    {
        "名称",
        "受理",
        "重复反映",
        "响应率",
        "按期办结率",
        "满意率",
        "满意度(5/4/3)",
        "重办率",
        "返工",
        "按期结案率",
        "超期",
    }
    | {"接单用时中位数(小时)", "办结用时中位数(小时)"}
)


@dataclass(frozen=True)
class LedgerLine:
    case: CaseRecord
    grid: str
    within: str  # the nodes above the grid: 幸福街道 / 和平里社区
    leader: str
    original: str  # the number of the case a repeat points to
    late: bool | None


LEDGER_COLUMNS: list[Column[LedgerLine]] = [
    Column("工单编号", Kind.TEXT, lambda x: x.case.number, 16),
    Column("类别", Kind.TEXT, lambda x: x.case.category, 12),
    Column("紧急", Kind.FLAG, lambda x: x.case.urgent, 6),
    Column("网格", Kind.TEXT, lambda x: x.grid, 14),
    Column("所属", Kind.TEXT, lambda x: x.within, 20),
    Column("状态", Kind.TEXT, lambda x: x.case.status, 8),
    Column("上报时间", Kind.TIME, lambda x: x.case.created_at, 17),
    Column("派遣时间", Kind.TIME, lambda x: x.case.dispatched_at, 17),
    Column("响应时限", Kind.TIME, lambda x: x.case.response_due_at, 17),
    Column("接单时间", Kind.TIME, lambda x: x.case.accepted_at, 17),
    Column("按时响应", Kind.FLAG, lambda x: rates.answered_on_time(x.case), 8),
    Column("办结时间", Kind.TIME, lambda x: x.case.resolved_at, 17),
    Column("结案时间", Kind.TIME, lambda x: x.case.closed_at, 17),
    Column("办结时限", Kind.TIME, lambda x: x.case.due_at, 17),
    Column("延期", Kind.FLAG, lambda x: x.case.extended, 6),
    Column("是否超期", Kind.FLAG, lambda x: x.late, 8),
    Column("评价", Kind.TEXT, lambda x: x.case.rating or "", 8),
    Column("评价时间", Kind.TIME, lambda x: x.case.rated_at, 17),
    Column("重办次数", Kind.COUNT, lambda x: x.case.reopen_count, 8),
    Column("返工次数", Kind.COUNT, lambda x: x.case.rework_count, 8),
    Column("重复于", Kind.TEXT, lambda x: x.original, 16),
    Column("负责人", Kind.TEXT, lambda x: x.leader, 8),
]


@dataclass
class Report:
    """One period's ledger and rate views, for one node of the grid (None: the whole office)."""

    scope: str
    period: Period
    zone: ZoneInfo
    total: Row
    ledger: list[LedgerLine]
    views: dict[str, list[Row]] = field(default_factory=dict)  # by: node | leader | category

    @property
    def title(self) -> str:
        first = self.period.start.astimezone(self.zone).date()
        last = (self.period.end - timedelta(seconds=1)).astimezone(self.zone).date()
        return f"{self.scope} {first:%Y-%m-%d} 至 {last:%Y-%m-%d}"


VIEW_NAMES = {"node": "按网格", "leader": "按负责人", "category": "按类别"}


async def collect(
    session: AsyncSession, *, policy: Policy, grids: GridIndex, zone: ZoneInfo, period: Period, node_id: int | None
) -> Report:
    """Read the cases and lay out every view of the period for the node (None: the whole office)."""
    scope = grids.subtree(node_id) if node_id is not None else None
    records = await rates.load(session, policy=policy, period=period, grid_ids=scope)
    names = await reports.staff_names(session)
    involved = [r for r in records if rates.involved(r, period)]
    originals = await reports.case_numbers(session, {r.duplicate_of_id for r in involved if r.duplicate_of_id})
    scope_name = grids.refs[node_id].name if node_id is not None else "全部"
    ledger = [
        LedgerLine(
            case=r,
            grid=grids.refs[r.grid_id].name if r.grid_id in grids.refs else "",  # type: ignore[index]
            within=" / ".join(grids.refs[i].name for i in reversed(grids.line(r.grid_id)[1:])),
            leader=names.get(r.assignee_id, "") if r.assignee_id is not None else "",
            original=originals.get(r.duplicate_of_id, "") if r.duplicate_of_id is not None else "",
            late=rates.late(r, period.cutoff),
        )
        for r in sorted(involved, key=lambda r: (r.created_at, r.number))
    ]
    return Report(
        scope=scope_name,
        period=period,
        zone=zone,
        total=Row(grids.refs[node_id].code if node_id is not None else "", scope_name, rates.figures(records, period)),
        ledger=ledger,
        views={
            "node": rates.by_node(records, grids, period, node_id),
            "leader": rates.by_leader(records, period, names),
            "category": rates.by_category(records, period),
        },
    )


# Cells --------------------------------------------------------------------------------------------


def _office(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def text_of(kind: Kind, value: Any, zone: ZoneInfo) -> str:
    """How a value reads in a csv file or on the terminal."""
    if kind is Kind.RATE:
        return NONE if value is None else f"{value:.1%}"
    if kind in (Kind.SCORE, Kind.HOURS):
        return NONE if value is None else f"{value:.2f}" if kind is Kind.SCORE else f"{value:.1f}"
    if kind is Kind.TIME:
        return "" if value is None else f"{_office(value, zone):%Y-%m-%d %H:%M}"
    if kind is Kind.FLAG:
        return "" if value is None else "是" if value else "否"
    return str(value)


_FORMATS = {Kind.RATE: "0.0%", Kind.SCORE: "0.00", Kind.HOURS: "0.0", Kind.TIME: "yyyy-mm-dd hh:mm"}


def _cell(kind: Kind, value: Any, zone: ZoneInfo) -> Any:
    """How a value goes into a worksheet: numbers and dates as such, a missing rate as "—"."""
    if kind in (Kind.RATE, Kind.SCORE, Kind.HOURS):
        return NONE if value is None else value
    if kind is Kind.TIME:
        return None if value is None else _office(value, zone)
    if kind is Kind.FLAG:
        return text_of(kind, value, zone)
    return value


# Outputs ------------------------------------------------------------------------------------------


def _sheets(report: Report) -> list[tuple[str, Sequence[Column[Any]], Sequence[Any]]]:
    node_rows = report.views["node"]
    return [
        ("台账", LEDGER_COLUMNS, report.ledger),
        (VIEW_NAMES["node"], NODE_COLUMNS, [_indented(r) for r in node_rows]),
        (VIEW_NAMES["leader"], RATE_COLUMNS, [report.total, *report.views["leader"]]),
        (VIEW_NAMES["category"], RATE_COLUMNS, [report.total, *report.views["category"]]),
    ]


def _indented(row: Row) -> Row:
    return Row(row.key, "　" * row.depth + row.name, row.figures, row.level, row.depth)


def workbook(report: Report) -> Any:
    """One sheet per view, Chinese headers in bold, the header row frozen (an openpyxl Workbook)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    bold = Font(bold=True)
    for title, columns, rows in _sheets(report):
        sheet = book.create_sheet(title)
        sheet.append([c.header for c in columns])
        for cell in sheet[1]:
            cell.font = bold
        for item in rows:
            sheet.append([_cell(c.kind, c.get(item), report.zone) for c in columns])
        for index, column in enumerate(columns, start=1):
            letter = get_column_letter(index)
            sheet.column_dimensions[letter].width = max(column.width, len(column.header) * 2 + 2)
            fmt = _FORMATS.get(column.kind)
            if fmt:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell.number_format = fmt
        sheet.freeze_panes = "A2"
    book.properties.title = report.title
    return book


def write_xlsx(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook(report).save(path)


def xlsx_bytes(report: Report) -> bytes:
    """The workbook as a download."""
    out = io.BytesIO()
    workbook(report).save(out)
    return out.getvalue()


def _write_rows(columns: Sequence[Column[Any]], rows: Sequence[Any], out: IO[str], zone: ZoneInfo) -> None:
    writer = csv.writer(out)
    writer.writerow([c.header for c in columns])
    for item in rows:
        writer.writerow([text_of(c.kind, c.get(item), zone) for c in columns])


def write_csv(columns: Sequence[Column[Any]], rows: Sequence[Any], path: Path, zone: ZoneInfo) -> None:
    """UTF-8 with a byte-order mark, so that Excel reads the Chinese right."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        _write_rows(columns, rows, f, zone)


def csv_bytes(columns: Sequence[Column[Any]], rows: Sequence[Any], zone: ZoneInfo) -> bytes:
    """The same as `write_csv`, as a download."""
    out = io.StringIO(newline="")
    _write_rows(columns, rows, out, zone)
    return out.getvalue().encode("utf-8-sig")


def view_rows(report: Report, by: str) -> tuple[Sequence[Column[Row]], list[Row]]:
    """A view's columns and rows as the files show them: the nodes indented under the view's top node;
    leaders and categories after the total."""
    view = report.views[by]
    if by == "node":
        return NODE_COLUMNS, [_indented(r) for r in view]
    return RATE_COLUMNS, [report.total, *view]


def write_csvs(report: Report, by: str, path: Path) -> list[Path]:
    """The chosen view to `path`, the ledger beside it (name_台账.csv). Returns both paths."""
    ledger = path.with_name(f"{path.stem}_台账{path.suffix or '.csv'}")
    columns, rows = view_rows(report, by)
    write_csv(columns, rows, path, report.zone)
    write_csv(LEDGER_COLUMNS, report.ledger, ledger, report.zone)
    return [path, ledger]


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, *, left: bool) -> str:
    gap = " " * max(width - _width(text), 0)
    return text + gap if left else gap + text


def table(report: Report, by: str) -> str:
    """The view as an aligned text table (wide characters count double), the total last."""
    columns = [c for c in RATE_COLUMNS if c.header in TABLE_HEADERS]
    view = report.views[by]
    rows = [_indented(r) for r in view] if by == "node" else [*view, report.total]
    if by != "node":
        rows[-1] = Row(report.total.key, "合计", report.total.figures)
    headers = [c.header.replace("(小时)", "(时)").replace("用时中位数", "中位") for c in columns]
    cells = [[text_of(c.kind, c.get(r), report.zone) for c in columns] for r in rows]
    widths = [max(_width(h), *(_width(line[i]) for line in cells)) for i, h in enumerate(headers)]
    lines = [
        f"{report.title}（{VIEW_NAMES[by]}，截至 {_office(report.period.as_of, report.zone):%Y-%m-%d %H:%M}）",
        "  ".join(_pad(h, w, left=i == 0) for i, (h, w) in enumerate(zip(headers, widths, strict=True))),
    ]
    for line in cells:
        lines.append("  ".join(_pad(v, w, left=i == 0) for i, (v, w) in enumerate(zip(line, widths, strict=True))))
    if not report.ledger:
        lines.append("（本期没有工单）")
    return "\n".join(lines)
