"""The `gridbot` command as a user runs it: bad configuration, migrations, grid import, demo + chat."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.config import DEMO_GRID_FILE
from tests.conftest import LEADER_HP01, RESIDENT, WeChat, free_port

GRIDBOT = [sys.executable, "-m", "bot.cli"]


# The checkout under test, ahead of whichever one the virtualenv's editable install points at.
ROOT = Path(__file__).resolve().parent.parent


def _environ(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")} | {"PYTHONPATH": str(ROOT)} | env


def _run(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    full = _environ(env)
    return subprocess.run(GRIDBOT + args, env=full, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("GRIDBOT_PORT", "eighty"),
        ("GRIDBOT_WECHAT_AES_KEY", "too-short"),
        ("GRIDBOT_DATABASE_URL", "mysql://root@localhost/x"),
        ("GRIDBOT_GRID_FILE", "/nonexistent/grid.yaml"),
        ("GRIDBOT_WECHAT_API_BASE", "api.weixin.qq.com"),
        ("GRIDBOT_OUTBOX_LEASE_SECONDS", "10"),  # shorter than a delivery may take (8 × the 5 s timeout)
    ],
)
def test_bad_configuration_fails_with_one_line_naming_the_variable(var: str, value: str, tmp_path: Path) -> None:
    result = _run(["serve"], {var: value}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and var in lines[0] and "Traceback" not in result.stderr


def test_db_upgrade_then_grid_load(tmp_path: Path) -> None:
    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.sqlite3"}
    assert _run(["db", "upgrade"], env, cwd=tmp_path).returncode == 0
    result = _run(["grid", "load", str(DEMO_GRID_FILE)], env, cwd=tmp_path)
    assert result.returncode == 0 and "loaded 14 grid nodes and 15 staff" in result.stdout
    again = _run(["grid", "load", str(DEMO_GRID_FILE)], env, cwd=tmp_path)  # idempotent: updates in place
    assert again.returncode == 0 and "loaded 14 grid nodes" in again.stdout


def test_grid_load_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  - code: a\n    name: A\n", encoding="utf-8")
    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.sqlite3"}
    result = _run(["grid", "load", str(bad)], env, cwd=tmp_path)
    assert result.returncode == 1 and "nodes.0.level" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("aes_key", ["", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"], ids=["plain", "safe"])
def test_demo_and_chat_walk_through_the_loop(tmp_path: Path, aes_key: str) -> None:
    port, fake_port, fake_wecom_port = free_port(), free_port(), free_port()
    env = {
        "GRIDBOT_PORT": str(port),
        "GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.sqlite3",
        "GRIDBOT_WECHAT_AES_KEY": aes_key,
    }
    full = _environ(env)
    demo = subprocess.Popen(
        GRIDBOT + ["demo", "--no-history", "--fake-port", str(fake_port), "--fake-wecom-port", str(fake_wecom_port)],
        env=full,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert demo.stdout is not None
        banner = "".join(demo.stdout.readline() for _ in range(6))
        assert "gridbot 演示已启动" in banner and f"127.0.0.1:{port}/wechat" in banner
        assert ("安全模式" if aes_key else "明文模式") in banner
        _wait_for_port(port)
        script = (
            "\n".join(
                [
                    "幸福里小区3号楼东侧路灯坏了好几天了",
                    "/as o_demo_zhangwei_hp01",
                    "接单",
                    "办结 已更换灯泡",
                ]
            )
            + "\n"
        )
        fakes = ["--fake", f"http://127.0.0.1:{fake_port}", "--fake-wecom", f"http://127.0.0.1:{fake_wecom_port}"]
        chat = _run(["chat", *fakes], env, cwd=tmp_path, input=script)
        out = chat.stdout
        assert chat.returncode == 0, chat.stderr
        assert "已受理：道路设施" in out and "【新工单】" in out  # reply to the resident, card to 张伟
        assert "已接单" in out and "已办结" in out
        assert "推送给 居民（o_demo_resident_1）" in out  # the resident is told
    finally:
        demo.terminate()
        demo.wait(timeout=20)
        if demo.stdout is not None:
            demo.stdout.close()


def test_chat_as_a_wecom_leader_through_the_encrypted_callback(tmp_path: Path) -> None:
    port, fake_port, fake_wecom_port = free_port(), free_port(), free_port()
    env = {"GRIDBOT_PORT": str(port), "GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.sqlite3"}
    full = _environ(env)
    demo = subprocess.Popen(
        GRIDBOT + ["demo", "--no-history", "--fake-port", str(fake_port), "--fake-wecom-port", str(fake_wecom_port)],
        env=full,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert demo.stdout is not None
        banner = "".join(demo.stdout.readline() for _ in range(6))
        assert f"127.0.0.1:{port}/wecom" in banner and f"127.0.0.1:{fake_wecom_port}" in banner
        _wait_for_port(port)
        script = (
            "\n".join(
                [
                    "锦绣花园6号楼着火了，冒烟",  # urgent: posted to 春晖社区's group, 吴刚 @-mentioned
                    "/wecom wugang",
                    "接单",
                    "办结 已灭火，无人受伤",
                    "/photo",
                    "/wecom zhangsan",  # not on the staff list
                    "我的工单",
                    "/as o_demo_zhangwei_hp01",  # the Official Account identities still work
                    "我的工单",
                ]
            )
            + "\n"
        )
        fakes = ["--fake", f"http://127.0.0.1:{fake_port}", "--fake-wecom", f"http://127.0.0.1:{fake_wecom_port}"]
        chat = _run(["chat", *fakes], env, cwd=tmp_path, input=script)
        out = chat.stdout
        assert chat.returncode == 0, chat.stderr
        assert "企业微信推送给 吴刚（wugang）" in out and "【新工单】" in out  # the card, as a WeCom app message
        assert "📣 群机器人发到 春晖社区群（@吴刚）" in out and "【紧急工单】" in out
        assert "← 企业微信应用：已接单" in out and "← 企业微信应用：已办结" in out
        assert "照片已附到工单" in out
        assert "您不在本街道网格工作人员名单中" in out
        assert "推送给 居民（o_demo_resident_1）" in out  # the resident is told on the Official Account
        assert "← 公众号：您当前没有未办结的工单" in out  # 张伟, back on the Official Account
    finally:
        demo.terminate()
        demo.wait(timeout=20)
        if demo.stdout is not None:
            demo.stdout.close()


def test_serve_refuses_the_demo_credentials_against_real_wechat(tmp_path: Path) -> None:
    result = _run(["serve"], {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/s.sqlite3"}, cwd=tmp_path)
    assert result.returncode == 2 and "GRIDBOT_WECHAT_TOKEN" in result.stderr.strip()


def _serve_environ(port: int, tmp_path: Path) -> dict[str, str]:
    """`gridbot serve` on `port` with an account of its own (never the demo's) and the demo grid."""
    return _environ(
        {
            "GRIDBOT_PORT": str(port),
            "GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/s.sqlite3",
            "GRIDBOT_WECHAT_TOKEN": "serve-test-token",
            "GRIDBOT_WECHAT_APPID": "wxserve",
            "GRIDBOT_WECHAT_SECRET": "s",
            "GRIDBOT_WECHAT_API_BASE": "http://127.0.0.1:9",
            "GRIDBOT_GRID_FILE": str(DEMO_GRID_FILE),
        }
    )


def test_serve_answers_the_url_verification(tmp_path: Path) -> None:
    import urllib.request

    from bot.wechat import WeChatSimulator

    port = free_port()
    full = _serve_environ(port, tmp_path)
    server = subprocess.Popen(GRIDBOT + ["serve"], env=full, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port)
        sim = WeChatSimulator(token="serve-test-token", appid="wxserve")
        query = sim.verification_query("hello-wechat", timestamp=int(time.time()))
        url = f"http://127.0.0.1:{port}/wechat?" + "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.read() == b"hello-wechat"
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    assert "GET /wechat 200" in err and "hello-wechat" not in err  # access log without the query string


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port}")


def test_parse_reads_text_and_json_lines_and_survives_bad_ones(tmp_path: Path) -> None:
    import json

    lines = (
        "\n".join(
            [
                "幸福里小区三号楼东侧路灯坏了，电话13812345678",
                json.dumps({"text": "楼下燃气泄漏了", "lat": 39.9075, "lon": 116.4225}, ensure_ascii=False),
                '{"broken json',
                "",
                "今天天气不错",
            ]
        )
        + "\n"
    )
    result = _run(["parse"], {}, cwd=tmp_path, input=lines)
    assert result.returncode == 0, result.stderr
    first, second, bad, plain = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {
        "category": "道路设施",
        "confidence": first["confidence"],
        "urgent": False,
        "place": "幸福里小区3号楼东侧",
        "grid": {"id": "xf-hp-01", "name": "和平里第一网格"},
        "phone": "138****5678",
    }
    assert second["urgent"] is True and second["grid"] == {"id": "xf-zl-02", "name": "枣林第二网格"}
    assert "error" in bad
    assert plain["category"] == "其他" and plain["confidence"] == 0 and plain["grid"] is None


def test_train_writes_a_model_that_parse_uses(tmp_path: Path) -> None:
    import json

    history = tmp_path / "history.jsonl"
    rows = [
        ("楼下的狗整夜叫个不停", "噪音扰民"),
        ("狗叫声太吵睡不着", "噪音扰民"),
        ("隔壁的狗一直叫", "噪音扰民"),
        ("井盖松动了", "道路设施"),
        ("人行道砖块翘起", "道路设施"),
        ("马路上有个大坑", "道路设施"),
    ]
    history.write_text(
        "\n".join(json.dumps({"text": t, "category": c}, ensure_ascii=False) for t, c in rows), encoding="utf-8"
    )
    model = tmp_path / "model.joblib"
    trained = _run(["train", str(history), "--out", str(model)], {}, cwd=tmp_path)
    assert trained.returncode == 0 and "trained on 6 examples" in trained.stdout and model.is_file()
    without = _run(["parse"], {}, cwd=tmp_path, input="小区里的狗叫\n")
    with_model = _run(["parse", "--model", str(model)], {}, cwd=tmp_path, input="小区里的狗叫\n")
    before, after = json.loads(without.stdout), json.loads(with_model.stdout)
    assert after["category"] == "噪音扰民" and after["confidence"] > before["confidence"] + 0.3


def test_train_reports_an_unusable_history_in_one_line(tmp_path: Path) -> None:
    history = tmp_path / "history.txt"
    history.write_text("x", encoding="utf-8")
    result = _run(["train", str(history), "--out", str(tmp_path / "m")], {}, cwd=tmp_path)
    assert result.returncode == 1 and "history.txt" in result.stderr and "Traceback" not in result.stderr


async def test_report_prints_the_view_and_writes_the_workbook_and_csv(wechat: WeChat, tmp_path: Path) -> None:
    import openpyxl

    from bot.app import SETTINGS

    await wechat.text(RESIDENT, "幸福里小区3号楼东侧路灯坏了")  # Sunday 11-22 10:00
    await wechat.text(LEADER_HP01, "接单")
    wechat.clock.advance(hours=2)
    await wechat.text(LEADER_HP01, "办结 已更换灯泡")
    await wechat.text(RESIDENT, "1")
    env = {"GRIDBOT_DATABASE_URL": wechat.app[SETTINGS].database_url}
    args = ["report", "--from", "2026-11-16", "--to", "2026-11-22", "--node", "xf-hp", "--by", "leader"]
    out = tmp_path / "out"
    result = _run([*args, "--xlsx", str(out / "周报.xlsx"), "--csv", str(out / "周报.csv")], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    title, header, leader, total, *written = result.stdout.splitlines()
    assert title.startswith("和平里社区 2026-11-16 至 2026-11-22（按负责人")
    assert header.split()[:3] == ["名称", "受理", "重复反映"]
    # One case, answered at once, resolved in 2 h, rated 满意: every rate 100%, nothing overdue.
    assert dict(zip(header.split(), leader.split(), strict=True)) == {
        "名称": "张伟",
        "受理": "1",
        "重复反映": "0",
        "响应率": "100.0%",
        "接单中位(时)": "0.0",
        "按期办结率": "100.0%",
        "办结中位(时)": "2.0",
        "满意率": "100.0%",
        "满意度(5/4/3)": "5.00",
        "重办率": "0.0%",
        "返工": "0",
        "按期结案率": "—",  # due 11-29: not yet due in the week
        "超期": "0",
    }
    assert total.split()[0] == "合计"
    assert written == [f"已写入 {out / '周报.xlsx'}", f"已写入 {out / '周报.csv'}、{out / '周报_台账.csv'}"]
    book = openpyxl.load_workbook(out / "周报.xlsx")
    assert book.sheetnames == ["台账", "按网格", "按负责人", "按类别"] and book["台账"].max_row == 2
    assert (out / "周报_台账.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_report_names_an_unknown_node_and_a_bad_date_in_one_line(tmp_path: Path) -> None:
    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/r.sqlite3"}
    assert _run(["grid", "load", str(DEMO_GRID_FILE)], env, cwd=tmp_path).returncode == 0
    unknown = _run(["report", "--node", "nowhere"], env, cwd=tmp_path)
    assert unknown.returncode == 1 and "nowhere" in unknown.stderr and "xf-hp" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad = _run(["report", "--month", "2026-13"], env, cwd=tmp_path)
    assert bad.returncode == 2 and "2026-13" in bad.stderr and "Traceback" not in bad.stderr
    empty = _run(["report", "--month", "2026-11"], env, cwd=tmp_path)
    assert empty.returncode == 0 and "全部 2026-11-01 至 2026-11-30" in empty.stdout and "本期没有工单" in empty.stdout


def test_console_password_is_set_from_stdin_and_checked(tmp_path: Path) -> None:
    import asyncio

    from bot.console.passwords import check_password
    from storage import console
    from storage.db import create_engine, session_factory, transaction

    url = f"sqlite+aiosqlite:///{tmp_path / 'console.sqlite3'}"
    env = {"GRIDBOT_DATABASE_URL": url, "GRIDBOT_GRID_FILE": str(DEMO_GRID_FILE)}
    done = _run(["console-password", "hp01_leader", "--password-stdin"], env, input="a-long-password\n")
    assert done.returncode == 0 and "console password set for hp01_leader" in done.stdout, done.stderr
    short = _run(["console-password", "hp01_leader", "--password-stdin"], env, input="short\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    nobody = _run(["console-password", "nobody", "--password-stdin"], env, input="a-long-password\n")
    assert nobody.returncode == 1 and "no active staff member with key 'nobody'" in nobody.stderr

    async def stored() -> str | None:
        engine = create_engine(url)
        try:
            async with transaction(session_factory(engine)) as session:
                staff = await console.staff_by_key(session, "hp01_leader")
                return staff.password_hash if staff else None
        finally:
            await engine.dispose()

    stored_hash = asyncio.run(stored())
    assert stored_hash is not None and "a-long-password" not in stored_hash
    assert check_password("a-long-password", stored_hash)


def test_two_servers_share_the_port_with_reuse_port(tmp_path: Path) -> None:
    """`serve --reuse-port`: a second process binds the same port, and serves it when the first stops."""
    import urllib.request

    from bot.wechat import WeChatSimulator

    port = free_port()
    env = _serve_environ(port, tmp_path)
    sim = WeChatSimulator(token="serve-test-token", appid="wxserve")

    def verify() -> bytes:
        query = sim.verification_query("hello-wechat", timestamp=int(time.time()))
        url = f"http://127.0.0.1:{port}/wechat?" + "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bytes(resp.read())

    serve = GRIDBOT + ["serve", "--reuse-port"]
    first = subprocess.Popen(serve, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        _wait_for_port(port)
        assert verify() == b"hello-wechat"
        second = subprocess.Popen(serve, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        _wait_for_log(second, "listening")
        first.terminate()
        first.communicate(timeout=20)
        assert verify() == b"hello-wechat"  # only the second process is left to answer
        assert second.poll() is None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=20)


def _wait_for_log(proc: subprocess.Popen[str], needle: str) -> None:
    """Read the process's stderr until a line holds `needle` (it exits or 30 s pass: fail)."""
    import select

    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if needle in line:
                return
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"no {needle!r} from {proc.args} (exit {proc.poll()})")


def test_the_example_env_file_copied_as_is_is_a_valid_configuration(tmp_path: Path) -> None:
    """.env.example says "copy to .env": empty values (GRIDBOT_GRID_FILE=, …) mean "none" and every
    variable it lists is one gridbot knows."""
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    assert _run(["db", "upgrade"], {}, cwd=tmp_path).returncode == 0
    from bot.config import Settings

    listed = re.findall(r"^(?:# )?GRIDBOT_([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(encoding="utf-8"), re.M)
    names = {n.lower() for n in listed}  # set, or shown commented out with its default
    assert names == set(Settings.model_fields), names ^ set(Settings.model_fields)
