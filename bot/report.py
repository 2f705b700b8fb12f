"""`gridbot report`: the figures of a period for one node of the grid, on the terminal and to files."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bot.config import Settings
from handlers import ledger_export, rates
from handlers.places import GridIndex
from handlers.policy import Policy


class ReportError(Exception):
    """Something the user asked for that cannot be (an unknown node, a backwards period)."""


def period_of(args: argparse.Namespace, settings: Settings, now: datetime) -> rates.Period:
    """--month, or --from [--to], or by default the last full week (Monday to Sunday), office time."""
    zone = settings.zone
    if args.month is not None:
        if args.first or args.last:
            raise ReportError("--month 与 --from/--to 只能选一种")
        year, number = args.month
        return rates.month(year, number, zone, as_of=now)
    if args.first is None:
        if args.last is not None:
            raise ReportError("--to 需要同时给出 --from")
        return rates.last_full_week(now, zone)
    last = args.last or now.astimezone(zone).date()
    if last < args.first:
        raise ReportError(f"--to {last} 早于 --from {args.first}")
    return rates.days(args.first, last, zone, as_of=now)


async def run_report(settings: Settings, args: argparse.Namespace, *, now: datetime | None = None) -> str:
    """Print the chosen view; write the workbook and csv files asked for. Returns what to print."""
    from storage import grids
    from storage.db import create_engine, session_factory, transaction, upgrade

    now = now or datetime.now(UTC)
    period = period_of(args, settings, now)
    policy = Policy.load(settings.policy_file, settings.zone)
    await upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            index = GridIndex(await grids.all_nodes(session))
            node_id = None
            if args.node:
                node_id = next((i for i, ref in index.refs.items() if ref.code == args.node), None)
                if node_id is None:
                    known = "、".join(ref.code for ref in sorted(index.refs.values(), key=lambda r: r.id))
                    raise ReportError(f"没有编码为 {args.node} 的网格节点（已有：{known or '无，请先 grid load'}）")
            report = await ledger_export.collect(
                session, policy=policy, grids=index, zone=settings.zone, period=period, node_id=node_id
            )
    finally:
        await engine.dispose()
    out = [ledger_export.table(report, args.by)]
    if args.xlsx is not None:
        ledger_export.write_xlsx(report, args.xlsx)
        out.append(f"已写入 {args.xlsx}")
    if args.csv is not None:
        written = ledger_export.write_csvs(report, args.by, args.csv)
        out.append("已写入 " + "、".join(str(p) for p in written))
    return "\n".join(out)
