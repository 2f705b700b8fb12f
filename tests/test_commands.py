"""Leaders type commands as they like; the parser forgives the usual variants."""

from __future__ import annotations

import pytest

from handlers.commands import Command, find_case_number, parse_command


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
