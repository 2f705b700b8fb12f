"""The `gridbot` command: serve, demo, db upgrade, grid load, chat, report, fake-wechat, console-password."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date
from pathlib import Path

from aiohttp import web

from bot.config import DEMO_GRID_FILE, DEMO_WECOM, ConfigError, Settings, load_settings

DEMO_FAKE_PORT = 8081
DEMO_FAKE_WECOM_PORT = 8082
DEMO_DATABASE = "sqlite+aiosqlite:///var/demo.sqlite3"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridbot", description="网格化管理 WeChat bot")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the webhook server (migrates the database first)")
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, so that several `gridbot serve` processes share the port (Linux)",
    )
    sub.add_parser(
        "process",
        help="process the messages that `gridbot serve` stores, deliver pushes, run the schedule "
        "(with GRIDBOT_PROCESSING=separate; one such process beside any number of servers)",
    )
    demo = sub.add_parser("demo", help="run the bot with the demo street office and a local fake WeChat API")
    demo.add_argument("--fake-port", type=int, default=DEMO_FAKE_PORT)
    demo.add_argument("--fake-wecom-port", type=int, default=DEMO_FAKE_WECOM_PORT)
    demo.add_argument(
        "--no-history", action="store_true", help="start empty instead of with six weeks of past cases (first run)"
    )
    db = sub.add_parser("db", help="database commands")
    db.add_argument("action", choices=["upgrade"])
    grid = sub.add_parser("grid", help="grid definition commands")
    grid.add_argument("action", choices=["load"])
    grid.add_argument("file", type=Path)
    chat = sub.add_parser("chat", help="talk to a running bot as WeChat would (resident or leader)")
    chat.add_argument("--url", default=None, help="the bot's webhook, default http://HOST:PORT/wechat")
    chat.add_argument(
        "--fake",
        default=f"http://127.0.0.1:{DEMO_FAKE_PORT}",
        help="the local fake WeChat API whose pushes to show (loopback only)",
    )
    chat.add_argument("--wecom-url", default=None, help="the bot's WeCom callback, default: --url ending in /wecom")
    chat.add_argument(
        "--fake-wecom",
        default=f"http://127.0.0.1:{DEMO_FAKE_WECOM_PORT}",
        help="the local fake WeCom API whose app messages and robot posts to show (loopback only)",
    )
    chat.add_argument("--as", dest="identity", default="o_demo_resident_1", help="openid to start as")
    parse = sub.add_parser("parse", help="classify messages from stdin (text or JSON lines) to JSON lines")
    parse.add_argument("--categories", type=Path, help="category table (default GRIDBOT_CATEGORIES_FILE)")
    parse.add_argument("--model", type=Path, help="trained model (default GRIDBOT_MODEL_FILE)")
    parse.add_argument("--grid", type=Path, help="grid file (default GRIDBOT_GRID_FILE, else the demo)")
    train = sub.add_parser("train", help="learn a category model from labelled history (JSONL/CSV/XLSX)")
    train.add_argument("history", type=Path)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--categories", type=Path, help="category table (default GRIDBOT_CATEGORIES_FILE)")
    train.add_argument(
        "--with-corrections",
        action="store_true",
        help="also learn from leaders' 改类 corrections stored in the database",
    )
    report = sub.add_parser("report", help="case figures and rates for a period (台账, 响应率, 满意率 …), .xlsx/.csv")
    report.add_argument("--from", dest="first", type=_day, help="first day (YYYY-MM-DD); default: last full week")
    report.add_argument("--to", dest="last", type=_day, help="last day, included (default: today)")
    report.add_argument("--month", type=_month, help="a calendar month instead (YYYY-MM)")
    report.add_argument("--node", help="grid node code (default: the whole office)")
    report.add_argument("--by", choices=["node", "leader", "category"], default="node")
    report.add_argument("--xlsx", type=Path, help="write the ledger and every view to this workbook")
    report.add_argument("--csv", type=Path, help="write the view to this file and the ledger beside it")
    password = sub.add_parser("console-password", help="set a staff member's password for the web console")
    password.add_argument("staff_key", help="the staff key from the grid file (e.g. xf_dispatcher)")
    password.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    password.add_argument("--demo", action="store_true", help="the demo's database (as `gridbot demo` uses)")
    fake = sub.add_parser("fake-wechat", help="run only the local fake WeChat API")
    fake.add_argument("--port", type=int, default=DEMO_FAKE_PORT)
    args = parser.parse_args(argv)

    from bot import logs

    logs.setup()
    try:
        if args.command == "demo":
            settings = _demo_settings(args.fake_port, args.fake_wecom_port)
        elif args.command == "console-password" and args.demo:
            settings = _demo_settings(DEMO_FAKE_PORT, DEMO_FAKE_WECOM_PORT)
        else:
            settings = load_settings()
        if args.command == "process" and settings.processing != "separate":
            raise ConfigError(
                "`gridbot process` needs GRIDBOT_PROCESSING=separate, for it and for every `gridbot serve`"
                " (a server that processes itself would wait for replies this process sends elsewhere)"
            )
        if args.command in ("serve", "process"):
            settings.check_real_account()
    except ConfigError as exc:
        print(f"gridbot: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            _upgrade(settings)
            from bot.app import AccessLogger

            web.run_app(
                _app(settings),
                host=settings.host,
                port=settings.port,
                print=_log_listening,
                access_log_class=AccessLogger,
                reuse_port=args.reuse_port or None,
            )
        elif args.command == "process":
            _upgrade(settings)
            from bot.app import run_processor

            asyncio.run(run_processor(settings))
        elif args.command == "demo":
            _upgrade(settings)
            asyncio.run(_run_demo(settings, args.fake_port, args.fake_wecom_port, history=not args.no_history))
        elif args.command == "db":
            _upgrade(settings)
            print("database is at the latest schema")
        elif args.command == "grid":
            print(asyncio.run(_grid_load(settings, args.file)))
        elif args.command == "chat":
            from bot.chat import run_chat

            url = args.url or f"http://{settings.host}:{settings.port}/wechat"
            asyncio.run(
                run_chat(
                    settings,
                    url=url,
                    fake=args.fake,
                    identity=args.identity,
                    wecom_url=args.wecom_url,
                    fake_wecom=args.fake_wecom,
                )
            )
        elif args.command == "parse":
            from bot.parse import run_parse

            return run_parse(settings, categories=args.categories, model=args.model, grid=args.grid)
        elif args.command == "train":
            from bot.parse import run_train

            print(
                run_train(
                    settings,
                    history=args.history,
                    out=args.out,
                    categories=args.categories,
                    with_corrections=args.with_corrections,
                )
            )
        elif args.command == "report":
            from bot.report import ReportError, run_report

            try:
                print(asyncio.run(run_report(settings, args)))
            except ReportError as exc:
                print(f"gridbot: {exc}", file=sys.stderr)
                return 1
        elif args.command == "console-password":
            return _console_password(settings, args.staff_key, from_stdin=args.password_stdin)
        elif args.command == "fake-wechat":
            asyncio.run(_serve_fake(settings, args.port))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # one line, not a traceback, for what a user can fix
        from bot.parse import TrainError
        from storage.grids import GridFileError

        if isinstance(exc, GridFileError | TrainError | OSError):
            print(f"gridbot: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (write 2026-11-16)") from exc


def _month(text: str) -> tuple[int, int]:
    try:
        first = date.fromisoformat(f"{text}-01")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a month: {text!r} (write 2026-11)") from exc
    return first.year, first.month


def _demo_settings(fake_port: int, fake_wecom_port: int) -> Settings:
    """The demo: SQLite file, the shipped street office, the fake WeChat and WeCom APIs on loopback
    (the demo WeCom app's credentials, unless the environment sets its own)."""
    overrides: dict[str, object] = {
        "wechat_api_base": f"http://127.0.0.1:{fake_port}",
        "wecom_api_base": f"http://127.0.0.1:{fake_wecom_port}",
    }
    overrides |= {k: v for k, v in DEMO_WECOM.items() if f"GRIDBOT_{k.upper()}" not in os.environ}
    if "GRIDBOT_DATABASE_URL" not in os.environ:
        overrides["database_url"] = DEMO_DATABASE
    if "GRIDBOT_GRID_FILE" not in os.environ:
        overrides["grid_file"] = DEMO_GRID_FILE
    return load_settings(**overrides)


def _upgrade(settings: Settings) -> None:
    from storage.db import upgrade_sync

    upgrade_sync(settings.database_url)


def _log_listening(banner: str) -> None:
    """aiohttp's "Running on …" banner, once the port is bound, as a log line."""
    import logging

    first = banner.strip().splitlines()[0].strip("= ") if banner.strip() else ""
    logging.getLogger("gridbot.webhook").info("listening", extra={"on": first.removeprefix("Running on ")})


def _app(settings: Settings) -> web.Application:
    from bot.app import create_app

    return create_app(settings)


async def _grid_load(settings: Settings, path: Path) -> str:
    from storage import grids
    from storage.db import create_engine, session_factory, transaction, upgrade

    await upgrade(settings.database_url)
    grid = grids.read_grid_file(path)
    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            nodes, staff = await grids.import_grid(session, grid)
    finally:
        await engine.dispose()
    return f"loaded {nodes} grid nodes and {staff} staff from {path}"


def _console_password(settings: Settings, key: str, *, from_stdin: bool) -> int:
    from getpass import getpass

    from bot.console.passwords import MIN_LENGTH

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass("新密码: ")
        if getpass("再输一次: ") != password:
            print("gridbot: the two passwords differ", file=sys.stderr)
            return 1
    if len(password) < MIN_LENGTH:
        print(f"gridbot: a console password needs at least {MIN_LENGTH} characters", file=sys.stderr)
        return 1
    _upgrade(settings)
    if not asyncio.run(_set_password(settings, key, password)):
        print(f"gridbot: no active staff member with key {key!r}", file=sys.stderr)
        return 1
    print(f"console password set for {key}")
    return 0


async def _set_password(settings: Settings, key: str, password: str) -> bool:
    from bot.console.passwords import hash_password
    from storage import console, grids
    from storage.db import create_engine, session_factory, transaction

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            if settings.grid_file is not None:  # as the server does at start: the staff may be new
                await grids.import_grid(session, grids.read_grid_file(settings.grid_file))
            staff = await console.staff_by_key(session, key)
            if staff is None:
                return False
            await console.set_password(session, staff=staff, password_hash=hash_password(password))
            return True
    finally:
        await engine.dispose()


async def _serve_fake(settings: Settings, port: int) -> None:
    from bot.fake_wechat import FakeWeChat

    runner = web.AppRunner(FakeWeChat(settings.wechat_appid, settings.wechat_secret).app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"fake WeChat API on http://127.0.0.1:{port}")
    await asyncio.Event().wait()


async def _run_demo(settings: Settings, fake_port: int, fake_wecom_port: int, *, history: bool) -> None:
    from bot import demo_history
    from bot.app import AccessLogger, create_app
    from bot.fake_wechat import FakeWeChat
    from bot.fake_wecom import FakeWeCom

    if history and not await demo_history.has_cases(settings):
        print(
            "首次启动：正在生成六周的演示历史工单（经由真实的处理流程，约半分钟到一分钟）…", file=sys.stderr, flush=True
        )
        made = await demo_history.seed(settings)
        print(f"已生成 {made} 件历史工单。", file=sys.stderr, flush=True)

    fake = web.AppRunner(FakeWeChat(settings.wechat_appid, settings.wechat_secret).app(), access_log=None)
    await fake.setup()
    await web.TCPSite(fake, "127.0.0.1", fake_port).start()
    fake_wecom = FakeWeCom(settings.wecom_corp_id, settings.wecom_secret, settings.wecom_agent_id)
    wecom = web.AppRunner(fake_wecom.app(), access_log=None)
    await wecom.setup()
    await web.TCPSite(wecom, "127.0.0.1", fake_wecom_port).start()
    bot = web.AppRunner(create_app(settings), access_log_class=AccessLogger)
    await bot.setup()
    await web.TCPSite(bot, settings.host, settings.port).start()
    print(
        DEMO_BANNER.format(
            host=settings.host,
            port=settings.port,
            fake_port=fake_port,
            fake_wecom_port=fake_wecom_port,
            mode="安全模式（AES）" if settings.safe_mode else "明文模式",
        ),
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await bot.cleanup()
        await wecom.cleanup()
        await fake.cleanup()


DEMO_BANNER = """
gridbot 演示已启动：幸福街道（3 个社区、7 个网格、3 个职能部门、15 名工作人员）
  公众号回调地址  http://{host}:{port}/wechat   （{mode}）
  模拟微信接口    http://127.0.0.1:{fake_port}    （机器人发出的推送都到这里）
  企业微信回调地址 http://{host}:{port}/wecom    （演示自建应用，模拟企业微信接口 http://127.0.0.1:{fake_wecom_port}）

在另一个终端里和它聊天（扮演居民或网格员）：
  .venv/bin/gridbot chat
试试：
  居民发：幸福里小区3号楼东侧路灯坏了好几天了
  输入 /as o_demo_zhangwei_hp01 切换为网格员张伟，发：接单  然后：办结 已更换灯泡
  输入 /as o_demo_resident_1 切回居民，看推送
  居民发：锦绣花园6号楼门口路灯坏了；输入 /wecom wugang 用企业微信扮演网格员吴刚，发：接单
按 Ctrl+C 停止。
"""


if __name__ == "__main__":
    sys.exit(main())
