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

# --- normalise -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("樓道裡電梯壞了，請儘快處理", "楼道里电梯坏了，请尽快处理"),
        ("Ｇ２０２６１１２２－０００７　进展", "G20261122-0007 进展"),
        ("３号楼＃２单元，电话１３８", "3号楼#2单元，电话138"),
        ("停水了！！什么时候来水？（急）", "停水了！！什么时候来水？（急）"),  # Chinese punctuation stays
        ("“井盖”没了。、……", "“井盖”没了。、……"),
        ("  路灯   坏了 \n\t好几天 ", "路灯 坏了 好几天"),
        ("路灯\xa0\u3000坏了", "路灯 坏了"),
        ("路灯坏了😡😡", "路灯坏了😡😡"),
        ("ABC小區wifi斷了", "ABC小区wifi断了"),
        ("", ""),
        (" \n ", ""),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("坏了\ud800了", "坏了\ufffd了"),  # a lone surrogate, as broken clients send
        ("太吵了\ud83d\ude21", "太吵了😡"),  # an emoji split into its surrogate pair
        ("门\x00牌", "门\x00牌"),
    ],
)
def test_normalise_survives_odd_unicode(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_normalise_keeps_a_long_text_whole() -> None:
    assert normalise("路燈壞了" * 25_000) == "路灯坏了" * 25_000


@pytest.mark.parametrize("text", ["樓道裡　電梯壞了！！", "Ｇ２０２６  进展", "3号楼 2单元"])
def test_normalise_twice_changes_nothing(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


# --- phones --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("路灯坏了，电话13812345678", ["13812345678"]),
        ("有事打我 138 1234 5678 谢谢", ["13812345678"]),
        ("有事打我138-1234-5678", ["13812345678"]),
        ("联系人王先生+86 139-1234-5678", ["13912345678"]),
        ("(+86)139 1234 5678", ["13912345678"]),
        ("0086-13912345678", ["13912345678"]),
        ("8613912345678", ["13912345678"]),
        ("手机：１３７００００１１１１", ["13700001111"]),
        ("手机：＋８６１３７００００１１１１", ["13700001111"]),
        ("物业座机029-88886666一直没人接", ["029-88886666"]),
        ("打(0914)2345678问问", ["0914-2345678"]),
        ("打（029）88886666问问", ["029-88886666"]),
        ("物业电话09148067118", ["0914-8067118"]),
        ("010 62345678", ["010-62345678"]),
        ("联系电话88886666", ["88886666"]),
        ("门卫电话：2345678", ["2345678"]),
        ("Tel: 88886666", ["88886666"]),
        ("物业电话029-88886666不接，我手机13812345678", ["13812345678", "029-88886666"]),
        ("13812345678，再说一遍13812345678", ["13812345678"]),
        ("13812345678@163.com", ["13812345678"]),
    ],
)
def test_find_phones(text: str, expected: list[str]) -> None:
    assert find_phones(normalise(text)) == expected
    assert find_phones(text) == expected  # raw text too: pushes mask what the resident typed


@pytest.mark.parametrize(
    "text",
    [
        "身份证号610102199001011234不是电话",
        "身份证13010219900101123X",
        "订单号2026112213812345678999",
        "1381234567少了一位，138123456789多了一位",
        "已经打过138****1234了",
        "已经打过138＊＊＊＊1234了",
        "2026-11-22 10:30 开始停水",
        "2026年11月22日停水",
        "信件编号20200612006",
        "联系时间20240301",  # a date after a cue
        "他家门牌88886666号",  # eight digits without a cue
        "罚款13800元，3号楼有12户停水",
        "打12345热线",
        "",
    ],
)
def test_no_phone_is_found_in(text: str) -> None:
    assert find_phones(normalise(text)) == []


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812345678", "138****5678"),
        ("029-88886666", "029-****6666"),
        ("0914-2345678", "0914-****5678"),
        ("88886666", "****6666"),
        ("8613812345678", "138****5678"),
        ("123", "****"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "王先生13812345678，物业029-88886666，门卫电话88886666",
            "王先生138****5678，物业029-****6666，门卫电话****6666",
        ),
        ("手机１３８１２３４５６７８快来", "手机138****5678快来"),
        ("联系+86 139-1234-5678", "联系+86 139****5678"),
        ("打（029）88886666", "打029-****6666"),
        ("身份证610102199001011234，已打138****1234", "身份证610102199001011234，已打138****1234"),
        ("路灯坏了", "路灯坏了"),
        ("", ""),
    ],
)
def test_mask_phones_in(text: str, masked: str) -> None:
    assert mask_phones_in(text) == masked
    assert find_phones(mask_phones_in(text)) == []


# --- buildings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["三号楼", "3栋", "3幢", "3#楼", "3#", "3号楼", "３号楼", "第三栋", "第3幢", "3號樓", "3 号楼", "03号楼"]
)
def test_a_building_is_written_one_way(text: str) -> None:
    assert canonical_place(text) == "3号楼"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("十号楼", "10号楼"),
        ("十二号楼", "12号楼"),
        ("二十一号楼", "21号楼"),
        ("第九十九栋", "99号楼"),
        ("小区七栋漏水", "小区7号楼漏水"),
        ("二单元", "2单元"),
        ("第2单元", "2单元"),
        ("两单元", "2单元"),
        ("幸福里小区三号楼二单元", "幸福里小区3号楼2单元"),
        ("3栋楼2单元", "3号楼2单元"),
        ("3栋楼道灯坏了", "3号楼楼道灯坏了"),
        ("3#2单元402", "3号楼2单元402"),
    ],
)
def test_canonical_place(text: str, expected: str) -> None:
    assert canonical_place(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "三天没人管",
        "3楼漏水",  # a floor, not a building
        "两栋楼之间",  # two buildings
        "三栋楼都停电了",
        "2023号楼",
        "一百零三号楼",
        "路灯坏了",
        "",
    ],
)
def test_canonical_place_leaves_the_rest_alone(text: str) -> None:
    assert canonical_place(text) == text


def test_place_variants_with_and_without_the_generic_suffix() -> None:
    assert place_variants("幸福里小区三号楼") == {"幸福里小区3号楼", "幸福里3号楼", "幸福里小区三号楼", "幸福里三号楼"}
    assert place_variants("春晖园社区") == {"春晖园社区", "春晖园"}
    assert place_variants("锦绣花园") == {"锦绣花园"}  # 花园 is part of the name
    assert place_variants("东区小区") == {"东区小区", "东区"}


@pytest.mark.parametrize(
    ("landmark", "expected"), [("小区", {"小区"}), ("新小区", {"新小区"}), ("", set()), (" ", set())]
)
def test_place_variants_keep_a_name(landmark: str, expected: set[str]) -> None:
    assert place_variants(landmark) == expected


@pytest.mark.parametrize("landmark", ["幸福里小区三号楼二单元", "翠微苑3栋", "第十二栋", "春晖园社区"])
def test_place_variants_agree_with_canonical_place(landmark: str) -> None:
    variants = place_variants(landmark)
    assert canonical_place(landmark) in variants
    assert {canonical_place(v) for v in variants} <= variants


# --- place phrases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("在建设路与光明北街交叉口东北角有个大坑", "建设路与光明北街交叉口东北角"),
        ("解放路和人民路交叉口西南角井盖丢了", "解放路和人民路交叉口西南角"),
        ("XX小区3号楼2单元", "XX小区3号楼2单元"),
        ("我家住在幸福里小区三号楼二单元，楼道灯不亮", "幸福里小区3号楼2单元"),
        ("幸福里小区三号楼东侧路灯坏了", "幸福里小区3号楼东侧"),
        ("光明北街菜市場門口有人占道經營", "光明北街菜市场门口"),
        ("反映光明北街菜市场门口占道", "光明北街菜市场门口"),
        ("盼东背街早日通气", "东背街"),
        ("建设路12号门口有个井盖没了", "建设路12号门口"),
        ("我们到金丝峡镇游玩被宰了", "金丝峡镇"),
        ("锦绣花园有人半夜施工😡", "锦绣花园"),
        ("东关街道办事处不作为", "东关街道办事处"),
        ("家住丹凤县龙驹镇张家村五组", "丹凤县龙驹镇张家村五组"),
        ("第三栋二单元漏水", "3号楼2单元"),
        ("洛南县老城区改造大楼", "洛南县老城区"),  # not the works that follow
        ("老家原住于牧护关镇", "牧护关镇"),
        ("创新路路口没有红绿灯", "创新路路口"),
        ("三号楼门口有人烧垃圾", "3号楼门口"),
        ("在人民公园南门", "人民公园南门"),
        ("金桥花园2期5号楼", "金桥花园2期5号楼"),
    ],
)
def test_find_place_phrase(text: str, expected: str) -> None:
    assert find_place_phrase(normalise(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "路灯坏了好几天了",
        "城市管理太差了",
        "修路修了半年",
        "农村医保怎么交",
        "搬迁到另一乡镇",
        "只硬化了一条道路",
        "进入小区要扫码",
        "我要去医院",
        "住院报销问题",
        "精神疾病严重敬老院不收",  # where would the name start?
        "楼下广场舞太吵了",
        "学校门口有人卖三无食品",
        "太吵了😡",
        "",
    ],
)
def test_no_place_phrase_in(text: str) -> None:
    assert find_place_phrase(normalise(text)) is None


def test_extractors_on_a_very_long_text() -> None:
    text = normalise("楼下广场舞太吵了。" * 5000 + "在幸福里小区3号楼，电话13812345678")
    assert find_phones(text) == ["13812345678"]
    assert find_place_phrase(text) == "幸福里小区3号楼"
    assert canonical_place(text) == text
