"""Extractors for what residents type: normalised text, phone numbers, building numbers, places.

Small pure functions over precompiled patterns, no I/O. Used by `handlers.understand` (reading a
report), `handlers.places` (the gazetteer) and the pushes to staff (masking phones).
"""

from __future__ import annotations

import re

import opencc
import rjieba

_T2S = opencc.OpenCC("t2s")

# --- normalising ---------------------------------------------------------------------------------
# Full-width ASCII (Ｇ２０２６, ＋８６, ＃) and the ideographic space to half-width, keeping the
# full-width marks that are ordinary Chinese punctuation (，！？：；（）): they read as Chinese.
_CHINESE_PUNCTUATION = "，！？：；（）"
_NARROW = {chr(cp): chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)} | {"\u3000": " "}
_WIDE = re.compile(f"[{''.join(re.escape(ch) for ch in _NARROW if ch not in _CHINESE_PUNCTUATION)}]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def _to_narrow(match: re.Match[str]) -> str:
    return _NARROW[match.group()]


def normalise(text: str) -> str:
    """Half-width ASCII, simplified characters, one space for each run of whitespace, stripped."""
    if _SURROGATE.search(text):
        # Broken clients send lone surrogates, which opencc cannot encode: a proper pair becomes its
        # character again (an emoji), a lone one becomes U+FFFD.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    # re.sub beats str.translate by far here: most messages have no full-width ASCII, or little.
    text = _WIDE.sub(_to_narrow, text)
    return _SPACES.sub(" ", _T2S.convert(text)).strip()


# --- phones --------------------------------------------------------------------------------------
# Matched on a half-width copy of the text (one character for one, so spans are the original's), so
# that raw text works as well as normalised. No number is taken from inside a longer run of digits
# (ID cards, order numbers) nor next to a mask (138****1234).
_PHONE_WIDE = re.compile("[０-９＋－（）＊：\u3000]")
_SEP = r"(?:[ \t]*[-—–·][ \t]*|[ \t]+)?"
_AREA = r"0(?:10|2\d|[3-9]\d\d)"  # 010, 02x, then four-digit codes: 0914, 0371 …
_PHONE = re.compile(
    # The lookahead lets the regex engine skip to where a number or a cue can begin: 6x faster.
    r"(?=[\d(+电手座热联tTpP])(?<![\d*])(?:"
    # A mobile, 1[3-9]x xxxx xxxx, maybe after +86 / 0086 / 86.
    rf"(?:\(?(?:\+|00)?86\)?{_SEP})?(?P<mobile>1[3-9]\d{_SEP}\d{{4}}{_SEP}\d{{4}})"
    # A landline with its area code: 029-88888888, (029)88888888, 09142345678.
    rf"|(?:\((?P<area1>{_AREA})\)|(?P<area2>{_AREA}))[ \t]*[-—–]?[ \t]*(?P<landline>[2-9]\d{{6,7}})"
    # A local number, only where the resident says it is a phone: 电话：88886666.
    r"|(?P<cue>(?:联系)?(?:电话|手机|座机|热线|联系方式|联系|(?i:tel|phone))(?:号码|号)?[ \t:：是为(]{0,3})"
    r"(?P<local>[2-9]\d{6,7})"
    r")(?![\d*])"
)
_NOT_DIGIT = re.compile(r"\D")
_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


def _narrow(text: str) -> str:
    """The text with full-width digits and the marks around them half-width, one for one."""
    return _PHONE_WIDE.sub(_to_narrow, text)


def _phone(match: re.Match[str]) -> str | None:
    """The number as stored: 13812345678, 029-88888888, 88886666; None for a local one that reads
    as a date (电话20240301)."""
    if mobile := match["mobile"]:
        return _NOT_DIGIT.sub("", mobile)
    if landline := match["landline"]:
        return f"{match['area1'] or match['area2']}-{landline}"
    local = match["local"]
    return None if _DATE.fullmatch(local) else local


def find_phones(text: str) -> list[str]:
    """Phone numbers in the text: mobiles first (a resident's own number is nearly always one), then
    landlines (029-88888888) and local numbers, each kind in order of appearance, without repeats."""
    mobiles: list[str] = []
    others: list[str] = []
    for match in _PHONE.finditer(_narrow(text)):
        if phone := _phone(match):
            (mobiles if match["mobile"] else others).append(phone)
    return list(dict.fromkeys(mobiles + others))


def mask_phone(phone: str) -> str:
    """138****1234 for a mobile; the area code and the last four for a landline: 029-****8888."""
    area, _, number = phone.strip().rpartition("-")
    digits = _NOT_DIGIT.sub("", number)
    if area:
        return f"{area}-****{digits[-4:]}"
    if len(digits) >= 11 and digits[-11] == "1":
        return f"{digits[-11:-8]}****{digits[-4:]}"
    return f"****{digits[-4:]}" if len(digits) > 4 else "****"


def mask_phones_in(text: str) -> str:
    """The text with every phone number in it masked and the rest as it was (for pushes to staff)."""
    pieces: list[str] = []
    done = 0
    for match in _PHONE.finditer(_narrow(text)):
        if (phone := _phone(match)) is None:
            continue
        # What comes before the number itself stays: +86, 电话：
        start = match.start("mobile") if match["mobile"] else match.end("cue") if match["local"] else match.start()
        pieces += [text[done:start], mask_phone(phone)]
        done = match.end()
    return "".join(pieces) + text[done:]


# --- buildings -----------------------------------------------------------------------------------
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# Up to three digits, or 1–99 in Chinese; never the tail of a longer number (一百零三, 2023).
_NUMBER = (
    r"(?<![\d０-９〇零一二三四五六七八九十两百千万几])(第)?[ \t]?"
    r"([\d０-９]{1,3}|[二三四五六七八九]?十[一二三四五六七八九]?|[一二三四五六七八九两])[ \t]?"
)
# 3号楼, 3号栋, 3#楼 and 3# are always a building; 3栋, 3幢 (and 3栋楼) too with digits or after 第,
# but 两栋 / 三栋楼 say "two / three buildings" as often, so there Chinese numerals are left alone.
_BUILDING = re.compile(
    _NUMBER + r"(?:(?P<numbered>[号號](?:楼|樓|栋|棟|幢)|[#＃](?:楼|樓)?)"
    r"|(?P<counted>(?:栋|棟|幢)(?:[楼樓](?![道梯层顶下上房里内前后外]))?))"
)
_UNIT = re.compile(_NUMBER + r"(?:单元|單元)")
_BUILDING_WORD = re.compile("[楼樓栋棟幢#＃]")  # most texts have none: skip the slower patterns


def _arabic(token: str) -> int:
    """3, ３, 三, 十二, 二十一 → the number."""
    if token.isdigit():
        return int(token)
    if "十" not in token:
        return _NUMERALS[token]
    tens, _, ones = token.partition("十")
    return _NUMERALS.get(tens, 1) * 10 + _NUMERALS.get(ones, 0)


def _building(match: re.Match[str]) -> str:
    ordinal, number = match.group(1, 2)
    counted = match["counted"]
    if counted and not ordinal and not number.isdigit():
        quantity = number == "两" or counted.endswith(("楼", "樓"))
        if quantity or match.string[match.end() : match.end() + 1] in ("楼", "樓"):
            return match.group()
    return f"{_arabic(number)}号楼"


def canonical_place(text: str) -> str:
    """Buildings and units written one way: 三号楼 / 3栋 / 3幢 / 3#楼 / 3# / ３号楼 / 第三栋 → 3号楼,
    二单元 / 第2单元 → 2单元. The rest of the text is left as it is."""
    if _BUILDING_WORD.search(text):
        text = _BUILDING.sub(_building, text)
    if "单元" in text or "單元" in text:
        text = _UNIT.sub(lambda m: f"{_arabic(m.group(2))}单元", text)
    return text


_CHINESE_DIGITS = "一二三四五六七八九"
_SPELLABLE = re.compile(r"(?<!\d)([1-9]\d?)(号楼|单元)")
_GENERIC_SUFFIX = re.compile("小区|社区")


def _spelled(match: re.Match[str]) -> str:
    """3号楼 → 三号楼, 21单元 → 二十一单元: how residents write numbers up to 99."""
    tens, ones = divmod(int(match[1]), 10)
    head = "" if tens == 0 else "十" if tens == 1 else _CHINESE_DIGITS[tens - 1] + "十"
    return head + (_CHINESE_DIGITS[ones - 1] if ones else "") + match[2]


def place_variants(landmark: str) -> set[str]:
    """The spellings of a landmark: its canonical form, the same without 小区/社区 (when at least two
    characters of name are left), and each with its numbers in Chinese (三号楼, 二单元).
    canonical_place of every variant is one of the canonical ones."""
    canonical = canonical_place(landmark.strip())
    if not canonical:
        return set()
    forms = {canonical}
    for match in _GENERIC_SUFFIX.finditer(canonical):
        if len(canonical[: match.start()].strip()) >= 2:
            forms.add(canonical[: match.start()] + canonical[match.end() :])
    return forms | {_SPELLABLE.sub(_spelled, form) for form in forms}


# --- place phrases -------------------------------------------------------------------------------
# A place phrase is a chain of parts, each a name and a place word (商州区 御园小区 3号楼; 建设路 与
# 光明北街), maybe ending in a spot (交叉口 东北角, 门口). Names are made of characters other than the
# particles, pronouns and common verbs that glue a sentence together, so that a phrase starts at its
# name: "我们到金丝峡镇" → "金丝峡镇".
_STOP = (
    "的了在到住是与及或另我你您他她它们这那哪此其请从对把被给为于等有没不就都也还要说让由因但而又很将已会能可想该所之个"
    "啊吧呢吗呀哦么啥谁每各某本现原时去来得着过再才并且如若即便使却只仅更最修年自以予全几多盼"
)
_NAME = rf"[^\W_{_STOP}]"
_PLACE_WORDS = (
    *"小区 花园 家园 公寓 大厦 广场 公园 苑 家属院 社区 街道办事处 街道办 街道 办事处 菜市场 市场 超市 商场".split(),
    *"火车站 汽车站 车站 幼儿园 小学(?![业生]) 中学(?![业生]) 大学(?![业生]) 学校 卫生院 医院".split(),
    *"大道 大街 胡同 国道 省道 县道 路口 路(?![灯面况费线局]) 街(?![道办]) 巷".split(),
    *"省(?![级委政长内外钱事心力]) 市(?![场民长委政里区级容镇]) 县(?![长委政级城里]) 区(?![域别长委政级])".split(),
    *"镇(?![长政委]) 乡(?![长政村镇亲下]) 村(?![民委长里子干部级务组镇]) 院(?![长子内里])".split(),
)
_PLACE_WORD = f"(?:{'|'.join(_PLACE_WORDS)})"
_BUILDING_PART = r"\d{1,4}(?:号楼|单元|号院|号|室|层|楼|组|期)|[一二三四五六七八九十]{1,3}(?:组|期)"
_SPOT = (
    "(?:十字路口|丁字路口|交叉口|交口|路口|[东南西北]{1,2}(?:角|侧|面|门|段|口)"
    "|门口|对面|旁边|附近|楼下|楼道|入口|出口)"
)
_NUMBERED_BUILDING = r"\d{1,4}(?:号楼|单元)"
_LONGEST_NAME = 6
_LONGEST_PHRASE = 40
_PART = rf"{_NAME}{{1,{_LONGEST_NAME}}}?{_PLACE_WORD}|{_BUILDING_PART}"
_PLACE = re.compile(
    rf"(?:{_NAME}{{2,{_LONGEST_NAME}}}?(?:{_PLACE_WORD}|{_NUMBERED_BUILDING})|{_NUMBERED_BUILDING})"
    rf"(?:[与和跟]?(?:{_PART}))*(?P<spot>{_SPOT}{{1,2}})?"
)
# Where to look: a place word, or a building or unit number (found far faster than whole phrases).
# (The lookahead lets the regex engine skip to the characters that can begin one: 4x faster.)
_ANCHOR = re.compile(rf"(?=[\d{''.join({word[0] for word in _PLACE_WORDS})}])(?:{_PLACE_WORD}|{_NUMBERED_BUILDING})")
_PARTS = re.compile(_PART)
_NAME_BEFORE = re.compile(rf"{_NAME}+\Z")  # searched with endpos at a place word
# Words that come before a place without being part of it: "反映光明北街" is about 光明北街.
_LEADING_WORDS = re.compile(
    "^(?:反映|投诉|举报|咨询|请问|问|关于|位于|地址|地点|住址|家住|居住|现住|目前|现在|今天|昨天|前天|最近|近期|近日|"
    "本人|市民|居民|村民|业主|领导|您好|你好|尊敬|市长|县长|书记|经过|路过|途经|前往|来到|回到|就在|所在|地处|当地|"
    "一直|已经|发现|看到|听说|知道|希望|要求|建议|强烈|恳请|请求|属于|今年|去年|每天|晚上|早上|中午|下午|上午|"
    "楼下|楼上|门口|附近|周边|对面|旁边|隔壁|"
    r"\d+(?:年|月|日|号(?![楼院室])|点|时|天))+"
)
# Parts that name a kind of place rather than a place: 新农村, 大城市, 水泥路, 住院.
_GENERIC = re.compile(
    "^(?:城乡|家乡|老家|市区|城区|郊区|辖区|景区|园区|片区|县区|县城|水泥路|柏油路|硬化路|公路|铁路|大路|小路|土路|山路"
    "|大街|小巷|街巷)$"
    "|(?:修|走|铁|挡|占|绕|堵|铺|断|迷|出|思|线|电|网|水|活|生|一|半|岔|套|退|后|上|沿|逛|临|满|过|条|整)[路街]$"
    "|(?:住|出|入|病|大|小|庭)院$|(?:老|家|城|下)乡$|(?:城市|乡镇|城镇|[农乡]村|道路|马路|地区)$"
)
# Word classes (rjieba's tags) that do not begin a place name: verbs, prepositions, adverbs,
# pronouns, conjunctions, particles, directions, measure words, time words.
_NOT_A_NAME_START = frozenset("v vd vg p d dg r rr rz c u ud ug uj ul uv uz f q t tg y e o zg ad".split())
# rjieba reads some names as verbs (牧护|关镇, 创新|路): a verb just before a road or settlement
# word stays.
_NAMED_AFTER = ("路", "街", "道", "镇", "乡", "村")
_VERB = ("v", "vd")


def _name_words(phrase: str) -> str:
    """The phrase without the words before its name nor from the first verb on: "报名后学校" → "学校",
    "洛南县老城区改造大楼" → "洛南县老城区"."""
    words = rjieba.tag(phrase)

    def named(i: int) -> bool:
        return i + 1 < len(words) and len(words[i + 1][0]) <= 2 and words[i + 1][0].endswith(_NAMED_AFTER)

    start = 0
    while start < len(words) and words[start][1] in _NOT_A_NAME_START and not words[start][0].isdigit():
        if words[start][1] in _VERB and named(start):
            break
        start += 1
    kept: list[str] = []
    for i in range(start, len(words)):
        if words[i][1] in _VERB and i > start and not named(i):
            break
        kept.append(words[i][0])
    return "".join(kept)


def _candidate(phrase: str) -> tuple[int, str] | None:
    """The phrase, trimmed to its place, with how many parts it has; None when it is not a place."""
    phrase = _LEADING_WORDS.sub("", phrase)
    match = _PLACE.match(_name_words(phrase))
    if match is None:
        return None
    phrase = match.group()
    parts = _PARTS.findall(phrase)
    if any(_GENERIC.search(part) for part in parts) or not 3 <= len(phrase) <= _LONGEST_PHRASE:
        return None
    if len(parts) == 1 and not match["spot"] and phrase[-1] in "省市":
        return None  # a province or a city alone says little, and 城市/超市-like words abound
    return _score(match), phrase


def _score(match: re.Match[str]) -> int:
    """How much a phrase says: its parts, and its spot."""
    return len(_PARTS.findall(match.group())) + (1 if match["spot"] else 0)


def find_place_phrase(text: str) -> str | None:
    """A place as the resident described it ("建设路与光明北街交叉口东北角", "XX小区3号楼2单元"),
    or None when nothing looks like one. Precision over recall: the phrase with the most parts wins,
    and a name whose start is unclear (a long run of characters before the place word) is not taken."""
    best: tuple[int, str] | None = None
    text = canonical_place(text)
    end = 0
    for anchor in _ANCHOR.finditer(text):
        start = anchor.start()
        if start < end or (start > 0 and text[start - 1].isdigit()):
            continue  # inside the phrase already read, or the tail of a longer number
        name = _NAME_BEFORE.search(text, max(0, start - _LONGEST_NAME - 1), start)
        if name is not None and 2 <= len(name.group()) <= _LONGEST_NAME:
            start = name.start()
        elif not text[start].isdigit():
            continue  # no name, or one that may begin further left: we cannot tell where
        match = _PLACE.match(text, start)
        if match is None:
            continue
        end = match.end()
        if len(match.group()) > _LONGEST_PHRASE * 2 or (best is not None and _score(match) <= best[0]):
            continue  # a run-on, or one that cannot win: trimming only takes parts away
        candidate = _candidate(match.group())
        if candidate and (best is None or candidate[0] > best[0]):
            best = candidate
    return best[1] if best else None
