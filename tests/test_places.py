"""Where a report is: pins by polygon, text by landmark; categories from the keyword table."""

from __future__ import annotations

import pytest

from bot.config import DEFAULT_CATEGORIES_FILE, DEMO_GRID_FILE
from handlers.classify import KeywordTable as Catalog
from handlers.places import GridIndex
from storage.grids import read_grid_file


@pytest.fixture(scope="module")
def index() -> GridIndex:
    return GridIndex.from_file(read_grid_file(DEMO_GRID_FILE))


@pytest.mark.parametrize(
    ("lat", "lon", "code"),
    [
        (39.92625, 116.40375, "xf-hp-01"),
        (39.92625, 116.41125, "xf-hp-02"),
        (39.91875, 116.40750, "xf-hp-03"),
        (39.92625, 116.42250, "xf-ch-01"),
        (39.91875, 116.42250, "xf-ch-02"),
        (39.90750, 116.40750, "xf-zl-01"),
        (39.90750, 116.42250, "xf-zl-02"),
    ],
)
def test_pin_lands_in_the_deepest_grid(index: GridIndex, lat: float, lon: float, code: str) -> None:
    ref = index.locate_point(lat, lon)
    assert ref is not None and ref.code == code


def test_pin_outside_the_street_is_nowhere(index: GridIndex) -> None:
    assert index.locate_point(31.23, 121.47) is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("幸福里小区3号楼东侧路灯坏了", "xf-hp-01"),
        ("春晖园小区门口垃圾没人清", "xf-ch-01"),
        ("锦绣花园有人半夜施工", "xf-ch-02"),
        ("翠微苑小区停水了", "xf-zl-02"),
    ],
)
def test_landmark_in_text_names_the_grid(index: GridIndex, text: str, code: str) -> None:
    match = index.locate_text(text)
    assert match is not None and match.grid.code == code


def test_text_without_a_place_matches_nothing(index: GridIndex) -> None:
    assert index.locate_text("路灯不亮了") is None


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("路灯不亮了", "道路设施"),
        ("垃圾堆好几天没人清", "市容环境"),
        ("楼上装修噪音太大", "噪音扰民"),
        ("楼上漏水", "物业管理"),
        ("楼道里电动车充电", "治安隐患"),
        ("今天天气不错", "其他"),
    ],
)
def test_first_category_from_the_keyword_table(text: str, category: str) -> None:
    assert Catalog.load(DEFAULT_CATEGORIES_FILE).classify(text)[0] == category


def test_danger_words_mark_a_report_urgent() -> None:
    catalog = Catalog.load(DEFAULT_CATEGORIES_FILE)
    assert catalog.is_urgent("楼下燃气泄漏了，味道很大") and not catalog.is_urgent("路灯不亮了")
