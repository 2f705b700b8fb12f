"""Leaders type commands as they like; the parser forgives the usual variants."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from handlers.commands import Command, DateError, find_case_number, parse_command, parse_until, split_target
from handlers.pushes import robot_markdowns, robot_texts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("接单", Command("接单", None, "")),
        ("接单 G20261122-0007", Command("接单", "G20261122-0007", "")),
        ("接单G20261122-7", Command("接单", "G20261122-0007", "")),
        ("接单 ｇ２０２６１１２２－０００７", Command("接单", "G20261122-0007", "")),
        (
            "办结：G20261122-0007，已更换灯泡，恢复照明",
            Command("办结", "G20261122-0007", "已更换灯泡，恢复照明"),
        ),
        ("办结 已清理完毕", Command("办结", None, "已清理完毕")),
        ("  我的工单 ", Command("我的工单", None, "")),
        ("帮助", Command("帮助", None, "")),
        ("?", Command("帮助", None, "")),
        ("接单 #3", Command("接单", None, "", 3)),
        ("办结＃１２：已修好", Command("办结", None, "已修好", 12)),
        ("接收", Command("接单", None, "")),
        ("同意 G20261122-7", Command("同意延期", "G20261122-0007", "")),
        ("不同意延期 #2 理由不足", Command("不同意延期", None, "理由不足", 2)),
        ("不同意 #2 理由不足", Command("不同意延期", None, "理由不足", 2)),
        ("通过", Command("核查通过", None, "")),
        ("核查通过 #4", Command("核查通过", None, "", 4)),
        ("不属实 #1 现场无此情况", Command("不属实", None, "现场无此情况", 1)),
        ("解除屏蔽 #5", Command("解除屏蔽", None, "", 5)),
        ("转派#3 城管，占道经营", Command("转派", None, "城管，占道经营", 3)),
        ("挂起 #4 到12月1日 等配件", Command("挂起", None, "到12月1日 等配件", 4)),
    ],
)
def test_commands(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["路灯坏了", "请接单", "", "G20261122-0007"])
def test_not_commands(text: str) -> None:
    assert parse_command(text) is None


def test_case_number_found_in_free_text() -> None:
    assert find_case_number("查询 g20261122-12 怎么样了") == "G20261122-0012"
    assert find_case_number("查询") is None


NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 11-22 10:00 in Shanghai
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("note", "day", "reason"),
    [
        ("到 12月1日 等配件，下周到", date(2026, 12, 1), "等配件，下周到"),
        ("至2026-12-01前 等物业", date(2026, 12, 1), "等物业"),
        ("到１２月５日，施工队排期", date(2026, 12, 5), "施工队排期"),
        ("12.5 需要协调", date(2026, 12, 5), "需要协调"),
        ("12/1", date(2026, 12, 1), ""),
        ("3天 等天晴", date(2026, 11, 25), "等天晴"),
        ("明天 等人", date(2026, 11, 23), "等人"),
        ("到1月5日 元旦后施工", date(2027, 1, 5), "元旦后施工"),
    ],
)
def test_dates_for_suspend_and_extension(note: str, day: date, reason: str) -> None:
    assert parse_until(note, now=NOW, zone=ZONE) == (day, reason)


@pytest.mark.parametrize("note", ["等配件", "到11月20日 过去了", "到11月22日 今天", "到2月30日 没有这天", ""])
def test_no_usable_date(note: str) -> None:
    with pytest.raises(DateError):
        parse_until(note, now=NOW, zone=ZONE)


def test_target_and_reason() -> None:
    assert split_target("幸福里网格 原因是这样") == ("幸福里网格", "原因是这样")
    assert split_target("城管，占道经营") == ("城管", "占道经营")
    assert split_target("城管") == ("城管", "")


def test_robot_messages_are_split_within_the_byte_limit_and_lose_nothing() -> None:
    lines = [f"> G20261122-{i:04d} 处理中 · 道路设施 · 幸福里小区{i}号楼东侧路灯不亮 <@zhangwei>" for i in range(120)]
    content = "\n".join(lines)
    chunks = robot_markdowns(content)
    assert len(chunks) > 1
    assert all(len(c["markdown"]["content"].encode()) <= 4096 for c in chunks)
    assert "\n".join(c["markdown"]["content"] for c in chunks) == content
    texts = robot_texts("路" * 3000, userids=["zhangwei"], mobiles=[])
    assert [len(t["text"]["content"].encode()) <= 2048 for t in texts] == [True, True, True, True, True]
    assert "".join(t["text"]["content"] for t in texts) == "路" * 3000
    assert texts[0]["text"]["mentioned_list"] == ["zhangwei"] and "mentioned_list" not in texts[1]["text"]
