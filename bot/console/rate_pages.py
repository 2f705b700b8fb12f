"""统计 (the rates page): the figures of `gridbot report` for a period and a node of the person's part
of the hierarchy, as tables per node / leader / category, two charts, and the same view as .xlsx/.csv.

The query string is parsed here into a `PeriodChoice` and a node; a node outside the person's part
does not exist for them (404, the same as a wrong code), in the page and in the downloads alike.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import MultiMapping

from bot.console import charts
from bot.console.auth import db, staff_of
from bot.console.pages import _now, _services, render
from handlers import console, ledger_export
from handlers import messages as m
from handlers.ledger_export import TABLE_HEADERS, Kind, Report
from handlers.rate_views import PeriodChoice, PeriodKind, load_trend, period_of
from handlers.rates import Row

VIEWS = {"node": "按网格", "leader": "按负责人", "category": "按类别"}
# The columns `gridbot report` prints on the terminal; the downloads carry every column.
COLUMNS = [c for c in ledger_export.RATE_COLUMNS if c.header in TABLE_HEADERS]
MAX_DAYS = 3 * 366
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)


class BadQuery(Exception):
    """A query string the page cannot show (its text is shown to the person)."""


@dataclass(frozen=True)
class RatesQuery:
    choice: PeriodChoice
    node_id: int
    code: str  # the node's code, as URLs name it
    by: str

    def params(self, **change: str) -> str:
        """This view's query string, for tabs and downloads."""
        c = self.choice
        values = {"period": c.kind.value}
        if c.month is not None:
            values["month"] = f"{c.month[0]}-{c.month[1]:02d}"
        if c.first is not None and c.last is not None:
            values |= {"from": c.first.isoformat(), "to": c.last.isoformat()}
        return urlencode(values | {"node": self.code, "by": self.by} | change)


def _day(text: str, shown: str | None = None) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or not EARLIEST <= day <= LATEST:
        raise BadQuery(m.CONSOLE_RATES_BAD_DATE.format(text=(shown if shown is not None else text)[:20]))
    return day


def parse_choice(q: MultiMapping[str]) -> PeriodChoice:
    kind_text = q.get("period", PeriodKind.LAST_WEEK.value)
    try:
        kind = PeriodKind(kind_text)
    except ValueError:
        raise BadQuery(m.CONSOLE_RATES_BAD_PERIOD) from None
    if kind is PeriodKind.MONTH:
        first = _day(f"{q.get('month', '')[:7]}-01", q.get("month", ""))
        return PeriodChoice(kind, month=(first.year, first.month))
    if kind is PeriodKind.RANGE:
        first, last = _day(q.get("from", "")), _day(q.get("to", ""))
        if last < first:
            raise BadQuery(m.CONSOLE_RATES_BACKWARDS.format(first=first, last=last))
        if (last - first).days > MAX_DAYS:
            raise BadQuery(m.CONSOLE_RATES_TOO_LONG)
        return PeriodChoice(kind, first=first, last=last)
    return PeriodChoice(kind)


def parse_query(request: web.Request) -> RatesQuery:
    """The period, node and view a query names; a node outside the person's part is not found."""
    services, staff, q = _services(request), staff_of(request), request.query
    allowed = console.rate_nodes(staff, services)
    code = q.get("node", "")
    if code:
        node_id = next((i for i in allowed if services.grids.refs[i].code == code), None)
        if node_id is None:
            raise web.HTTPNotFound(text=m.CONSOLE_RATES_NO_NODE)
    elif allowed:
        node_id = allowed[0]
    else:
        raise web.HTTPNotFound(text=m.CONSOLE_RATES_NO_NODE)
    by = q.get("by", "node")
    choice = parse_choice(q)
    return RatesQuery(choice, node_id, services.grids.refs[node_id].code, by if by in VIEWS else "node")


async def _report(request: web.Request, query: RatesQuery) -> Report:
    services = _services(request)
    period = period_of(query.choice, services.zone, _now(request))
    return await ledger_export.collect(
        db(request), policy=services.policy, grids=services.grids, zone=services.zone, period=period,
        node_id=query.node_id,
    )  # fmt: skip


def _cells(row: Row, report: Report) -> list[str]:
    return [ledger_export.text_of(c.kind, c.get(row), report.zone) for c in COLUMNS]


def _table(report: Report, by: str) -> list[dict[str, Any]]:
    """The rows of a view as the page shows them: the top node (or the total) first and bold."""
    if by == "node":
        rows = report.views["node"]
        return [{"cells": _cells(r, report), "depth": r.depth, "total": r.depth == 0} for r in rows]
    total = Row(report.total.key, "合计", report.total.figures)
    return [{"cells": _cells(total, report), "depth": 0, "total": True}] + [
        {"cells": _cells(r, report), "depth": 0, "total": False} for r in report.views[by]
    ]


def _tiles(report: Report) -> list[tuple[str, str, str]]:
    """The headline figures of the selected node: (name, figure, what it is out of)."""
    f, zone = report.total.figures, report.zone
    return [
        ("受理", str(f.received), f"其中重复 {f.repeats}"),
        ("响应率", ledger_export.text_of(Kind.RATE, f.response_rate, zone), f"{f.answered_on_time}/{f.dispatched}"),
        ("按期办结率", ledger_export.text_of(Kind.RATE, f.on_time_rate, zone), f"{f.resolved_on_time}/{f.resolved}"),
        ("满意率", ledger_export.text_of(Kind.RATE, f.satisfaction_rate, zone), f"{f.satisfied}/{f.rated}"),
        ("满意度", ledger_export.text_of(Kind.SCORE, f.satisfaction_score, zone), "满分 5"),
        ("超期", str(f.overdue), f"期末未办结 {f.open}"),
    ]


async def rates_page(request: web.Request) -> web.StreamResponse:
    services, staff = _services(request), staff_of(request)
    nodes = [services.grids.refs[i] for i in console.rate_nodes(staff, services)]
    top_depth = nodes[0].depth if nodes else 0
    node_choices = [(r.code, "　" * (r.depth - top_depth) + r.name) for r in nodes]
    today = _now(request).astimezone(services.zone).date()
    try:
        query = parse_query(request)
    except BadQuery as exc:
        context = {"error": str(exc), "nodes": node_choices, "form": _form(request.query, today)}
        return render(request, "rates.html", context, status=400)
    report = await _report(request, query)
    scope = services.grids.subtree(query.node_id)
    buckets = await load_trend(
        db(request), policy=services.policy, zone=services.zone, period=report.period, grid_ids=scope
    )
    period = report.period
    return render(
        request,
        "rates.html",
        {
            "error": None,
            "nodes": node_choices,
            "form": _form(request.query, today) | {"node": services.grids.refs[query.node_id].code},
            "title": report.title,
            "scope": report.scope,
            "as_of": f"{period.as_of.astimezone(services.zone):%Y-%m-%d %H:%M}",
            "tiles": _tiles(report),
            "trend": charts.trend_chart(buckets, report.scope),
            "trend_unit": buckets[0].unit if buckets else "周",
            "by_node": charts.node_chart(report.views["node"]),
            "headers": [c.header for c in COLUMNS],
            "table": _table(report, query.by),
            "tabs": [(key, name, query.params(by=key)) for key, name in VIEWS.items()],
            "by": query.by,
            "view_name": VIEWS[query.by],
            "empty": not report.ledger,
            "xlsx": f"/console/rates.xlsx?{query.params()}",
            "csv": f"/console/rates.csv?{query.params()}",
            "ledger_csv": f"/console/rates.csv?{query.params(by='ledger')}",
        },
    )


def _form(q: MultiMapping[str], today: date) -> dict[str, str]:
    """What the selector shows: the query as given, sensible defaults where it says nothing."""
    return {
        "period": q.get("period", PeriodKind.LAST_WEEK.value),
        "month": q.get("month", f"{today:%Y-%m}")[:7],
        "from": q.get("from", today.replace(day=1).isoformat())[:10],
        "to": q.get("to", today.isoformat())[:10],
        "node": q.get("node", ""),
    }


def _attachment(body: bytes, content_type: str, filename: str) -> web.Response:
    return web.Response(
        body=body,
        content_type=content_type,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )


def _filename(report: Report, suffix: str) -> str:
    return f"{report.title.replace(' ', '_')}{suffix}"


async def _download_report(request: web.Request) -> tuple[RatesQuery, Report]:
    """The query and report behind a download: a 400 for a bad query (no page to show it on)."""
    try:
        query = parse_query(request)
    except BadQuery as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return query, await _report(request, query)


async def rates_xlsx(request: web.Request) -> web.StreamResponse:
    """The workbook `gridbot report --xlsx` writes: 台账 and every view, for the page's node and period."""
    _, report = await _download_report(request)
    body = await asyncio.to_thread(ledger_export.xlsx_bytes, report)
    return _attachment(
        body, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", _filename(report, ".xlsx")
    )


async def rates_csv(request: web.Request) -> web.StreamResponse:
    """The page's view (or, with by=ledger, the 台账) as `gridbot report --csv` writes it."""
    query, report = await _download_report(request)
    if request.query.get("by") == "ledger":
        body = ledger_export.csv_bytes(ledger_export.LEDGER_COLUMNS, report.ledger, report.zone)
        name = _filename(report, "_台账.csv")
    else:
        columns, rows = ledger_export.view_rows(report, query.by)
        body = ledger_export.csv_bytes(columns, rows, report.zone)
        name = _filename(report, f"_{VIEWS[query.by]}.csv")
    return _attachment(body, "text/csv", name)
