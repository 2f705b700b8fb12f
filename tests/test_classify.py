"""What a report is about: the keyword table matched on words, the trained model, and reading an
office's labelled history."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import joblib
import openpyxl
import pytest

from bot.config import DEFAULT_CATEGORIES_FILE
from handlers.classify import Classifier, KeywordTable, Model, normalise_text, read_history, train

UTILITIES = "供水供电供气"


@pytest.fixture(scope="module")
def table() -> KeywordTable:
    return KeywordTable.load(DEFAULT_CATEGORIES_FILE)


@pytest.fixture(scope="module")
def keywords(table: KeywordTable) -> Classifier:
    return Classifier(table)


def test_a_keyword_matches_as_a_word(keywords: Classifier) -> None:
    assert keywords.classify("小区停电了").category == UTILITIES
    assert keywords.classify("这里在施工").category == "噪音扰民"


@pytest.mark.parametrize("text", ["请暂停电话服务", "这项实施工程很顺利"])
def test_letters_across_a_word_boundary_do_not_match(keywords: Classifier, text: str) -> None:
    # 停电 and 施工 are in the text as strings (暂停|电话, 实施|工程) but not as words.
    assert keywords.classify(text).category == "其他"


def test_a_keyword_matches_inside_a_longer_word(keywords: Classifier) -> None:
    assert keywords.classify("物业公司不作为").category == "物业管理"


def test_a_keyword_split_by_the_segmenter_still_matches() -> None:
    # rjieba cuts 3·15 into 3|·|15 even with 3·15 in its dictionary: the run of words still matches.
    table = KeywordTable.from_dict({"categories": [{"name": "商贸旅游", "keywords": ["3·15"]}]})
    assert table._matcher.jieba.cut("今年3·15晚会曝光了这家店")[1:4] == ["3", "·", "15"]
    assert Classifier(table).classify("今年3·15晚会曝光了这家店").category == "商贸旅游"


def test_weights_decide_between_categories() -> None:
    data = {
        "categories": [
            {"name": "市容环境", "keywords": ["垃圾", "臭味"]},
            {"name": "物业管理", "keywords": [{"word": "物业不管", "weight": 3}]},
        ]
    }
    prediction = Classifier(KeywordTable.from_dict(data)).classify("垃圾有臭味，物业不管")
    assert prediction.category == "物业管理"
    assert prediction.scores["物业管理"] == 3 and prediction.scores["市容环境"] == 2
    assert 0 < prediction.confidence < 1


@pytest.mark.parametrize("text", ["今天天气不错", "", "😀🙏", "   "])
def test_nothing_matched_is_the_default_with_no_confidence(keywords: Classifier, text: str) -> None:
    prediction = keywords.classify(text)
    assert (prediction.category, prediction.confidence) == ("其他", 0.0)


def test_a_stronger_keyword_is_more_confident(keywords: Classifier) -> None:
    weak, strong = keywords.classify("路灯"), keywords.classify("电梯困人了")
    assert strong.confidence > weak.confidence > 0


def test_traditional_and_full_width_text_is_understood(keywords: Classifier) -> None:
    assert normalise_text("ＡＢＣ１２３，（路燈）") == "ABC123,(路灯)"
    assert keywords.classify("電梯壞了！！").category == "物业管理"
    assert keywords.classify("停電了").category == UTILITIES


def test_emoji_and_very_long_text(keywords: Classifier) -> None:
    assert keywords.classify("路灯坏了😡😡").category == "道路设施"
    assert keywords.classify("好" * 50_000 + "路灯坏了").category == "道路设施"
    assert keywords.classify("x" * 100_000 + " 路灯坏了").category == "道路设施"


def test_danger_words_are_found_even_across_words(keywords: Classifier) -> None:
    assert keywords.is_urgent("楼下燃气泄漏了") and keywords.is_urgent("厨房煤氣洩漏，有煤气味")
    assert not keywords.is_urgent("路灯不亮了")


# --- the trained model --------------------------------------------------------------------------

PLACES = ["幸福里小区", "春晖园", "锦绣花园", "翠微苑", "枣林小区", "和平里", "东四胡同"]


def _history() -> list[tuple[str, str]]:
    """A made-up office history: it files shared bikes under 市容环境 (the table says 道路设施) and
    has a category the table does not know (文明养犬)."""
    examples = []
    for p in PLACES:
        examples += [
            (f"{p}门口共享单车乱停，堆成一片", "市容环境"),
            (f"{p}旁边路上的共享单车乱放没人管", "市容环境"),
            (f"{p}有人遛狗不牵绳，吓到孩子了", "文明养犬"),
            (f"{p}的路灯坏了好几天，晚上很黑", "道路设施"),
        ]
    return examples


@pytest.fixture(scope="module")
def model() -> Model:
    return train(_history(), table=KeywordTable.load(DEFAULT_CATEGORIES_FILE))


def test_a_trained_model_learns_the_office_s_habits(table: KeywordTable, model: Model) -> None:
    bikes = "锦绣花园北门共享单车乱停，堆成一片了"
    assert Classifier(table).classify(bikes).category == "道路设施"
    with_model = Classifier(table, model)
    assert with_model.classify(bikes).category == "市容环境"
    dog = with_model.classify("楼下有人遛狗不牵绳")
    assert dog.category == "文明养犬" and 0 < dog.confidence <= 1
    assert abs(sum(dog.scores.values()) - 1) < 1e-9
    assert "文明养犬" in with_model.category_names() and "其他" in with_model.category_names()


def test_a_saved_model_loads_and_predicts_the_same(table: KeywordTable, model: Model, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    model.save(path)
    loaded = Model.load(path)
    text = "春晖园门口的共享单车太多了"
    assert loaded.categories == model.categories and loaded.examples == len(_history())
    assert Classifier(table, loaded).classify(text) == Classifier(table, model).classify(text)


def test_a_model_with_nothing_to_go_on_falls_back_to_the_table(table: KeywordTable, model: Model) -> None:
    with_model = Classifier(table, model)
    assert with_model.classify("").confidence == 0.0
    assert with_model.classify("🙏🙏").category == "其他"
    assert with_model.classify("小区停电了😡" * 2_000).category in with_model.category_names()


def test_training_needs_two_categories() -> None:
    with pytest.raises(ValueError, match="two categories"):
        train([("路灯坏了", "道路设施"), ("", "市容环境"), ("垃圾没人清", "")])


def test_a_model_trains_from_a_few_examples_without_a_table() -> None:
    model = train([("路灯坏了", "道路设施"), ("垃圾没人清", "市容环境"), ("路灯不亮", "道路设施")])
    probabilities = model.probabilities("路灯又坏了")
    assert max(probabilities, key=lambda c: probabilities[c]) == "道路设施"


def test_a_foreign_file_is_not_loaded_as_a_model(tmp_path: Path) -> None:
    path = tmp_path / "other.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)
    with pytest.raises(ValueError, match="not a gridbot category model"):
        Model.load(path)


# --- labelled history ---------------------------------------------------------------------------


def test_history_from_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    rows = [
        {"text": "路灯坏了", "category": "道路设施"},
        {"text": "", "category": "市容环境"},
        {"text": "垃圾没人清", "category": " "},
        {"text": "楼上漏水", "category": "物业管理", "id": 3},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    assert read_history(path) == [("路灯坏了", "道路设施"), ("楼上漏水", "物业管理")]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
def test_history_from_csv_with_chinese_headers(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "history.csv"
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["编号", "留言主题", "留言详情", "一级分类"])
        writer.writerow(["1", "路灯不亮", "幸福里3号楼东侧路灯坏了，晚上很黑", "道路设施"])
        writer.writerow(["2", "", "垃圾堆了好几天", "市容环境"])
        writer.writerow(["3", "无内容", "", "市容环境"])
    assert read_history(path) == [
        ("路灯不亮。幸福里3号楼东侧路灯坏了，晚上很黑", "道路设施"),
        ("垃圾堆了好几天", "市容环境"),
    ]


def test_history_from_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "history.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [("诉求内容", "类别"), ("楼上装修噪音太大", "噪音扰民"), (None, "市容环境"), (12345, "其他")]:
        sheet.append(row)
    book.save(path)
    assert read_history(path) == [("楼上装修噪音太大", "噪音扰民"), ("12345", "其他")]


def test_history_without_a_text_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("标题,类别\n路灯,道路设施\n", encoding="utf-8")
    with pytest.raises(ValueError, match="text column"):
        read_history(path)
