"""The console's rates page (统计) through the real app: the figures it shows are those of
handlers/rates.py for hand-made cases, it is scoped to a person's part of the hierarchy (page and
downloads alike), its downloads are the files `gridbot report` writes, and its charts carry the figures.

The cases: Sunday 11-22 10:00 a resident reports a broken lamp (和平里第一网格); 张伟 accepts at once,
resolves it two hours later, the resident rates 满意. At 12:00 another resident reports rubbish in
春晖第一网格; nobody answers. The page is opened on Tuesday 11-24 10:00, so "last week" is 11-16..11-22
and the rubbish case is past its 24-hour response deadline (11-23 12:00)."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from bot.app import FACTORY, SERVICES
from bot.console import charts
from handlers import ledger_export, rate_views, rates
from handlers.rate_views import Bucket, PeriodChoice, PeriodKind
from storage.db import transaction
from tests.conftest import LEADER_HP01, RESIDENT, RESIDENT_2, WeChat
from tests.test_console import LAMP, OTHER_GRID, login

ZONE = ZoneInfo("Asia/Shanghai")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=ZONE)


async def two_cases(wechat: WeChat) -> None:
    await wechat.text(RESIDENT, LAMP)
    await wechat.text(LEADER_HP01, "接单")
    wechat.clock.advance(hours=2)
    await wechat.text(LEADER_HP01, "办结 已更换灯泡")
    await wechat.text(RESIDENT, "1")
    await wechat.text(RESIDENT_2, OTHER_GRID)
    wechat.clock.advance(days=2)  # Tuesday 11-24 12:00


async def page(wechat: WeChat, query: str = "") -> tuple[int, str]:
    resp = await wechat.client.get(f"/console/rates{query}")
    return resp.status, await resp.text()


def table(text: str) -> dict[str, dict[str, str]]:
    """The rates table: row name → header → cell, as shown."""
    found = re.search(r'<table class="rates" id="rates-table">(.*?)</table>', text, re.S)
    assert found is not None, text
    headers = [html.unescape(h) for h in re.findall(r"<th>([^<]*)</th>", found.group(1))]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(<th scope=\"row\".*?)</tr>", found.group(1), re.S):
        cells = [html.unescape(c).strip() for c in re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row)]
        rows[cells[0]] = dict(zip(headers, cells, strict=True))
    return rows


def titles(text: str, chart: str) -> list[str]:
    """The <title>s of the marks in one chart (the figure each bar or point stands for)."""
    found = re.search(rf'<svg id="{chart}".*?</svg>', text, re.S)
    assert found is not None, text
    marks = re.findall(r"<(?:rect|circle|polygon)[^>]*><title>([^<]*)</title>", found.group(0))
    return [html.unescape(t) for t in marks]


async def figures_of(wechat: WeChat, code: str, by: str = "node") -> ledger_export.Report:
    services = wechat.app[SERVICES]
    node_id = next(i for i, r in services.grids.refs.items() if r.code == code)
    period = rates.last_full_week(wechat.clock.now(), ZONE)
    async with transaction(wechat.app[FACTORY]) as session:
        return await ledger_export.collect(
            session, policy=services.policy, grids=services.grids, zone=ZONE, period=period, node_id=node_id
        )


async def test_the_page_shows_the_weeks_figures_of_handlers_rates(wechat: WeChat) -> None:
    await two_cases(wechat)
    await login(wechat, "xf_dispatcher")
    status, text = await page(wechat)
    assert status == 200
    assert "幸福街道 2026-11-16 至 2026-11-22" in text and "截至 2026-11-24 12:00" in text
    rows = table(text)
    # The street: 2 received; 响应率 1 of 2 (the rubbish case missed its deadline); 按期办结 1/1; 满意 1/1.
    assert rows["幸福街道"]["受理"] == "2" and rows["幸福街道"]["响应率"] == "50.0%"
    assert rows["和平里社区"]["响应率"] == "100.0%" and rows["和平里社区"]["满意率"] == "100.0%"
    assert rows["和平里第一网格"]["按期办结率"] == "100.0%" and rows["和平里第一网格"]["满意度(5/4/3)"] == "5.00"
    assert rows["春晖社区"]["响应率"] == "0.0%" and rows["春晖社区"]["按期办结率"] == "—"
    assert rows["枣林社区"]["受理"] == "0" and rows["枣林社区"]["满意率"] == "—"
    # Every cell is what handlers/rates computes for the node, formatted as `gridbot report` does.
    report = await figures_of(wechat, "xf")
    for row in report.views["node"]:
        for column in ledger_export.RATE_COLUMNS:
            if column.header in rows[row.name]:
                assert rows[row.name][column.header] == ledger_export.text_of(column.kind, column.get(row), ZONE)
    # The indentation says the hierarchy.
    assert re.search(r'padding-left: 2.5em">和平里第一网格<', text)


async def test_leader_and_category_tabs_split_the_same_cases(wechat: WeChat) -> None:
    await two_cases(wechat)
    await login(wechat, "xf_dispatcher")
    leaders = table((await page(wechat, "?by=leader"))[1])
    assert leaders["合计"]["受理"] == "2" and leaders["张伟"]["响应率"] == "100.0%"
    categories = table((await page(wechat, "?by=category"))[1])
    assert sum(int(r["受理"]) for name, r in categories.items() if name != "合计") == 2
    report = await figures_of(wechat, "xf")
    for row in report.views["category"]:
        shown = ledger_export.text_of(ledger_export.Kind.RATE, row.figures.response_rate, ZONE)
        assert categories[row.name]["响应率"] == shown


async def test_a_community_sees_its_grids_and_nothing_outside(wechat: WeChat) -> None:
    await two_cases(wechat)
    await login(wechat, "hp_leader")  # 张秀英, 和平里社区
    status, text = await page(wechat)
    assert status == 200
    rows = table(text)
    assert list(rows) == ["和平里社区", "和平里第一网格", "和平里第二网格", "和平里第三网格"]
    assert rows["和平里社区"]["受理"] == "1"
    options = re.findall(r'<option value="(xf[^"]*)"', text)
    assert options == ["xf-hp", "xf-hp-01", "xf-hp-02", "xf-hp-03"]
    assert (await page(wechat, "?node=xf-hp-02"))[0] == 200
    for outside in ("xf", "xf-ch", "xf-ch-01", "xf-dept-cg", "no-such-node"):
        status, body = await page(wechat, f"?node={outside}")
        assert status == 404 and "不在您的管辖范围内" in body
        assert (await wechat.client.get(f"/console/rates.xlsx?node={outside}")).status == 404
        assert (await wechat.client.get(f"/console/rates.csv?node={outside}")).status == 404


async def test_a_grid_leader_sees_only_their_grid(wechat: WeChat) -> None:
    await two_cases(wechat)
    await login(wechat, "hp01_leader")
    status, text = await page(wechat)
    assert status == 200 and list(table(text)) == ["和平里第一网格"]
    assert re.findall(r'<option value="(xf[^"]*)"', text) == ["xf-hp-01"]
    assert (await page(wechat, "?node=xf-hp"))[0] == 404


async def test_the_charts_carry_the_figures(wechat: WeChat) -> None:
    await two_cases(wechat)
    await login(wechat, "xf_dispatcher")
    text = (await page(wechat))[1]
    nodes = titles(text, "node-chart")
    # The street first, then its children: each with its three rates, the counts behind each.
    assert "幸福街道 响应率 50.0%（1/2）" in nodes
    assert "和平里社区 满意率 100.0%（1/1）" in nodes and "春晖社区 响应率 0.0%（0/1）" in nodes
    assert "枣林社区 按期办结率 —（无可计算）" in nodes
    assert not any("和平里第一网格" in t for t in nodes)  # grandchildren are in the table, not the chart
    # The trend: up to last week (the empty weeks before the first case left out, down to four);
    # that week's points and received bar carry its figures.
    trend = titles(text, "trend-chart")
    assert "幸福街道 11-16 响应率 50.0%（1/2）" in trend and "幸福街道 11-16 满意率 100.0%（1/1）" in trend
    received = titles(text, "received-chart")
    assert received[:3] == ["幸福街道 10-26 受理 0 件", "幸福街道 11-02 受理 0 件", "幸福街道 11-09 受理 0 件"]
    assert received[-1] == "幸福街道 11-16 受理 2 件"


async def test_a_bad_period_is_a_polite_400(wechat: WeChat) -> None:
    await login(wechat, "xf_dispatcher")
    status, text = await page(wechat, "?period=range&from=2026-11-20&to=2026-11-01")
    assert status == 400 and "结束日期 2026-11-01 早于开始日期 2026-11-20" in text
    status, text = await page(wechat, "?period=month&month=2026-13")
    assert status == 400 and "日期“2026-13”不正确" in text
    assert (await page(wechat, "?period=sometime"))[0] == 400
    assert (await wechat.client.get("/console/rates.xlsx?period=range&from=x&to=y")).status == 400


async def test_a_month_and_a_range_are_the_periods_they_name(wechat: WeChat) -> None:
    await two_cases(wechat)
    await login(wechat, "xf_dispatcher")
    text = (await page(wechat, "?period=month&month=2026-11"))[1]
    assert "幸福街道 2026-11-01 至 2026-11-30" in text and table(text)["幸福街道"]["受理"] == "2"
    text = (await page(wechat, "?period=range&from=2026-11-23&to=2026-11-24"))[1]
    assert "2026-11-23 至 2026-11-24" in text and table(text)["幸福街道"]["受理"] == "0"
    text = (await page(wechat, "?period=this_week"))[1]
    assert "2026-11-23 至 2026-11-24" in text


async def test_the_downloads_are_the_report_files_for_the_same_view(wechat: WeChat) -> None:
    await two_cases(wechat)
    await login(wechat, "hp_leader")
    text = (await page(wechat, "?node=xf-hp&by=category"))[1]
    links = dict(re.findall(r'<a href="(/console/rates\.(?:xlsx|csv)\?[^"]+)">([^<]+)</a>', text))
    assert set(links.values()) == {"Excel（.xlsx，台账与全部视图）", "按类别（.csv）", "台账（.csv）"}
    xlsx = next(html.unescape(k) for k, v in links.items() if v.startswith("Excel"))
    resp = await wechat.client.get(xlsx)
    assert resp.status == 200 and resp.content_type == XLSX
    assert "attachment" in resp.headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(await resp.read()))
    assert book.sheetnames == ["台账", "按网格", "按负责人", "按类别"]
    nodes = book["按网格"]
    headers = [c.value for c in nodes[1]]
    top = {h: c.value for h, c in zip(headers, nodes[2], strict=True)}
    assert top["编码"] == "xf-hp" and top["受理"] == 1 and top["响应率"] == 1.0 and top["满意度(5/4/3)"] == 5.0
    assert [row[0].value for row in book["台账"].iter_rows(min_row=2)] == [(await wechat.cases())[0].number]

    view = next(html.unescape(k) for k, v in links.items() if v == "按类别（.csv）")
    resp = await wechat.client.get(view)
    assert resp.status == 200 and resp.content_type == "text/csv"
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert lines[0][:3] == ["名称", "受理", "重复反映"]
    assert lines[1][:2] == ["和平里社区", "1"] and lines[1][lines[0].index("响应率")] == "100.0%"
    ledger = next(html.unescape(k) for k, v in links.items() if v == "台账（.csv）")
    ledger_lines = list(csv.reader((await (await wechat.client.get(ledger)).read()).decode("utf-8-sig").splitlines()))
    assert ledger_lines[0][0] == "工单编号" and len(ledger_lines) == 2


async def test_the_rates_page_is_in_the_navigation_and_needs_a_login(wechat: WeChat) -> None:
    resp = await wechat.client.get("/console/rates", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/login"
    assert (await wechat.client.get("/console/rates.xlsx", allow_redirects=False)).status == 303
    await login(wechat, "hp01_leader")
    assert '<a href="/console/rates">统计</a>' in await (await wechat.client.get("/console/cases")).text()


# The trend's periods and the chart geometry, without the app ---------------------------------------


NOW = at("11-24 12:00")


def test_a_short_period_is_shown_against_the_eleven_weeks_before_it() -> None:
    week = rates.last_full_week(NOW, ZONE)
    buckets = rate_views.trend_periods(week, ZONE)
    assert [b.label for b in buckets][-3:] == ["11-02", "11-09", "11-16"] and len(buckets) == 12
    assert buckets[0].period.start == at("08-31 00:00") and buckets[-1].period.end == at("11-23 00:00")
    month = rate_views.period_of(PeriodChoice(PeriodKind.MONTH, month=(2026, 11)), ZONE, NOW)
    labels = [b.label for b in rate_views.trend_periods(month, ZONE)]
    assert labels[-1] == "11-30" and len(labels) == 12  # the week holding the month's last day


def test_a_long_period_goes_week_by_week_and_past_a_year_month_by_month() -> None:
    half_year = PeriodChoice(PeriodKind.RANGE, first=date(2026, 1, 5), last=date(2026, 6, 28))
    half = rate_views.period_of(half_year, ZONE, NOW)
    weeks = rate_views.trend_periods(half, ZONE)
    assert (weeks[0].label, weeks[-1].label, len(weeks)) == ("01-05", "06-22", 25)
    months_18 = PeriodChoice(PeriodKind.RANGE, first=date(2025, 1, 1), last=date(2026, 6, 30))
    long = rate_views.period_of(months_18, ZONE, NOW)
    months = rate_views.trend_periods(long, ZONE)
    assert (months[0].label, months[-1].label, len(months)) == ("2025-01", "2026-06", 18)
    assert {b.unit for b in months} == {"月"} and {b.unit for b in weeks} == {"周"}


def test_weeks_before_the_first_case_are_left_out_down_to_four() -> None:
    weeks = rate_views.trend_periods(rates.last_full_week(NOW, ZONE), ZONE)  # 08-31 … 11-16
    lamp = rates.CaseRecord(1, "G1", "道路设施", 3, False, "待派遣", None, created_at=at("10-14 09:00"))
    assert [b.label for b in rate_views.trend([lamp], weeks)][:2] == ["10-12", "10-19"]
    assert [b.figures.received for b in rate_views.trend([lamp], weeks)][0] == 1
    assert [b.label for b in rate_views.trend([], weeks)] == ["10-26", "11-02", "11-09", "11-16"]


def test_a_week_with_nothing_to_divide_by_breaks_the_line_and_says_so() -> None:
    some = rates.Figures(received=3, dispatched=2, answered_on_time=1)
    none = rates.Figures(received=0)
    week = rates.last_full_week(NOW, ZONE)
    buckets = [Bucket("11-02", week, some), Bucket("11-09", week, none), Bucket("11-16", week, some)]
    chart = charts.trend_chart(buckets, "和平里社区")
    response = next(line for line in chart.lines if line.series.key == "response")
    assert len(response.segments) == 2 and [p.value for p in response.points] == ["50.0%", "50.0%"]
    assert response.points[0].title == "和平里社区 11-02 响应率 50.0%（1/2）"
    assert response.latest == "50.0%（1/2）"
    # 0 % sits on the axis, 100 % at the top; the busiest week's bar is the tallest.
    assert response.points[0].y == round((chart.top + chart.bottom) / 2, 1)
    assert [b.value for b in chart.bars] == ["3", "0", "3"] and chart.bars[1].height == 0
    satisfaction = next(line for line in chart.lines if line.series.key == "satisfaction")
    assert satisfaction.points == [] and satisfaction.latest == "—（无可计算）"


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_node_bars_are_as_long_as_their_rate_and_fit_the_width(rate: float) -> None:
    f = rates.Figures(dispatched=2, answered_on_time=int(2 * rate))
    chart = charts.node_chart([rates.Row("xf-hp", "和平里社区", f, "社区", 0)])
    (group,) = chart.groups
    series, bar = group.bars[0]
    assert series.name == "响应率" and bar.width == round(chart.bar_span * rate, 1)
    assert bar.x + chart.bar_span <= chart.width and bar.value.startswith(f"{rate:.1%}")
