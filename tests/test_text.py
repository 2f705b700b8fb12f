"""The extractors, on the kind of text residents actually type."""

from __future__ import annotations

import pytest

from handlers.text import (
    canonical_place,
    find_phones,
    find_place_phrase,
    mask_phone,
    mask_phones_in,
    normalise,
    place_variants,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("樓道裡電梯壞了，請儘快處理", "楼道里电梯坏了,请尽快处理"),  # full-width punctuation too
        ("Ｇ２０２６１１２２－０００７　进展", "G20261122-0007 进展"),
        ("  路灯   坏了 \n\t好几天 ", "路灯 坏了 好几天"),
        ("路灯坏了😡😡", "路灯坏了😡😡"),
        ("", ""),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_normalise_survives_odd_and_long_input() -> None:
    assert normalise("坏了\ud800了") == "坏了?了"  # a lone surrogate, as broken clients send
    assert len(normalise("路灯坏了" * 25_000)) == 100_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("路灯坏了，电话13812345678", ["13812345678"]),
        ("有事打我 138 1234 5678 谢谢", ["13812345678"]),
        ("联系人王先生+86 139-1234-5678", ["13912345678"]),
        ("手机：１３７００００１１１１", ["13700001111"]),
        ("物业座机029-88886666一直没人接", ["029-88886666"]),
        ("打(0914)2345678问问", ["0914-2345678"]),
        ("联系电话88886666", ["88886666"]),
        ("身份证号610102199001011234不是电话", []),
        ("订单号2026112213812345678999", []),
        ("已经打过138****1234了", []),
        ("2026-11-22 10:30 开始停水", []),
        ("3号楼有12户停水", []),
        ("", []),
    ],
)
def test_find_phones(text: str, expected: list[str]) -> None:
    assert find_phones(normalise(text)) == expected


def test_mask_phone() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("029-88886666") == "029-****6666"
    assert mask_phone("88886666") == "****6666"


def test_mask_phones_in_leaves_no_number_readable() -> None:
    masked = mask_phones_in("王先生13812345678，物业029-88886666，门卫电话88886666")
    assert masked == "王先生138****5678，物业029-****6666，门卫电话****6666"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("三号楼", "3号楼"),
        ("3栋", "3号楼"),
        ("3幢", "3号楼"),
        ("3#楼", "3号楼"),
        ("3#", "3号楼"),
        ("３号楼", "3号楼"),
        ("第三栋", "3号楼"),
        ("十二号楼", "12号楼"),
        ("二十一栋", "21号楼"),
        ("两单元", "2单元"),
        ("幸福里小区三号楼二单元", "幸福里小区3号楼2单元"),
        ("三天没人管", "三天没人管"),  # numerals elsewhere stay
    ],
)
def test_canonical_place(text: str, expected: str) -> None:
    assert canonical_place(text) == expected


def test_place_variants_with_and_without_the_generic_suffix() -> None:
    assert place_variants("幸福里小区三号楼") == {"幸福里小区3号楼", "幸福里3号楼"}
    assert place_variants("小区") == {"小区"}  # nothing left to name a place: keep it whole


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("在建设路与光明北街交叉口东北角有个大坑", "建设路与光明北街交叉口东北角"),
        ("幸福里小区三号楼东侧路灯坏了", "幸福里小区3号楼东侧"),
        ("光明北街菜市场门口有人占道经营", "光明北街菜市场门口"),
        ("我们到金丝峡镇游玩被宰了", "金丝峡镇"),
        ("第三栋二单元漏水", "3号楼2单元"),
        ("路灯坏了好几天了", None),
        ("城市管理太差了", None),
        ("", None),
    ],
)
def test_find_place_phrase(text: str, expected: str | None) -> None:
    assert find_place_phrase(normalise(text)) == expected


def test_extractors_on_a_very_long_text() -> None:
    text = ("楼下广场舞太吵了。" * 5000) + "在幸福里小区3号楼，电话13812345678"
    assert find_phones(text) == ["13812345678"]
    assert find_place_phrase(text) is not None
