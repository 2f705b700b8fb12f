"""Extractors for what residents type: normalised text, phone numbers, building numbers, places.

Small pure functions over precompiled patterns, no I/O. Used by `handlers.understand` (reading a
report), `handlers.places` (the gazetteer) and the pushes to staff (masking phones).
"""

from __future__ import annotations

import re

import opencc

_T2S = opencc.OpenCC("t2s")

# --- normalising ---------------------------------------------------------------------------------
# Full-width ASCII (Ｇ２０２６, ＋８６, ＃) and the ideographic space to half-width, keeping the
# full-width marks that are ordinary Chinese punctuation (，！？：；（）): they read as Chinese.
_CHINESE_PUNCTUATION = "，！？：；（）"
_WIDE_TO_NARROW = {cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)} | {0x3000: " "}
_TO_NARROW = {cp: ch for cp, ch in _WIDE_TO_NARROW.items() if chr(cp) not in _CHINESE_PUNCTUATION}
_WIDE = re.compile("[\uff01-\uff5e\u3000]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Half-width ASCII, simplified characters, one space for each whitespace run, stripped."""
    if _SURROGATE.search(text):
        # Broken clients send lone surrogates, which opencc cannot encode; a proper pair becomes its
        # character again (an emoji), a lone one becomes U+FFFD.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if _WIDE.search(text):
        text = text.translate(_TO_NARROW)
    return _SPACES.sub(" ", _T2S.convert(text)).strip()


# --- phones --------------------------------------------------------------------------------------
# Matched on a half-width copy of the text (one character for one, so spans are the original's).
# Neither kind is taken from inside a longer run of digits (ID cards, order numbers) nor next to a
# mask (138****1234).
_ALL_NARROW = str.maketrans(_WIDE_TO_NARROW)
_SEP = r"(?:[ \t]*[-—–·][ \t]*|[ \t]+)?"
_AREA = r"0(?:10|2\d|[3-9]\d\d)"  # 010, 02x, then four-digit codes: 0914, 0371 …
_PHONE = re.compile(
    r"(?<![\d*])(?:"
    # A mobile: 1[3-9]x xxxx xxxx, maybe after +86 / 0086 / 86.
    rf"(?:\(?(?:\+|00)?86\)?{_SEP})?(?P<mobile>1[3-9]\d{_SEP}\d{{4}}{_SEP}\d{{4}})"
    # A landline with its area code: 029-88888888, (029)88888888, 09142345678.
    rf"|(?:\((?P<area1>{_AREA})\)|(?P<area2>{_AREA}))[ \t]*[-—–]?[ \t]*(?P<landline>[2-9]\d{{6,7}})"
    # A local number, only where the resident says it is one: 电话：88886666.
    r"|(?P<cue>(?:联系)?(?:电话|手机|座机|热线|联系方式|联系|(?i:tel|phone))(?:号码|号)?[ \t:：是为(]{0,3})"
    r"(?P<local>[2-9]\d{6,7})"
    r")(?![\d*])"
)
_DIGIT_RUN = re.compile(r"\D")
_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


def _phone(match: re.Match[str]) -> str | None:
    """The number as stored: 13812345678, 029-88888888, 88886666 — None for a date-like local."""
    if mobile := match["mobile"]:
        return _DIGIT_RUN.sub("", mobile)
    if landline := match["landline"]:
        return f"{match['area1'] or match['area2']}-{landline}"
    local = match["local"]
    return None if _DATE.fullmatch(local) else local


def find_phones(text: str) -> list[str]:
    """Phone numbers in the text: mobiles first (a resident's own number is nearly always one), then
    landlines as 029-88888888 and local numbers, each in order of appearance, without repeats."""
    mobiles: list[str] = []
    others: list[str] = []
    for match in _PHONE.finditer(text.translate(_ALL_NARROW)):
        if phone := _phone(match):
            (mobiles if match["mobile"] else others).append(phone)
    return list(dict.fromkeys(mobiles + others))


def mask_phone(phone: str) -> str:
    """138****1234 for a mobile; the area code and the last four for a landline: 029-****8888."""
    area, _, number = phone.strip().rpartition("-")
    digits = _DIGIT_RUN.sub("", number)
    if area:
        return f"{area}-****{digits[-4:]}"
    if len(digits) >= 11 and digits[-11] == "1":
        return f"{digits[-11:-8]}****{digits[-4:]}"
    return f"****{digits[-4:]}" if len(digits) > 4 else "****"


def mask_phones_in(text: str) -> str:
    """The text with every phone number in it masked, the rest as it was (for pushes to staff)."""
    narrow = text.translate(_ALL_NARROW)
    pieces: list[str] = []
    done = 0
    for match in _PHONE.finditer(narrow):
        phone = _phone(match)
        if phone is None:
            continue
        # Keep what comes before the number itself: +86, 电话：
        start = match.start("mobile") if match["mobile"] else match.end("cue") if match["local"] else match.start()
        pieces += [text[done:start], mask_phone(phone)]
        done = match.end()
    return "".join(pieces) + text[done:]


# --- buildings -----------------------------------------------------------------------------------
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# 1–99 in Chinese, or up to three digits; never the tail of a longer number (一百零三, 2023).
_NUMBER = r"(?<![\d０-９〇零一二三四五六七八九十两百千万几])(第)?[ \t]?([\d０-９]{1,3}|[二三四五六七八九]?十[一二三四五六七八九]?|[一二三四五六七八九两])[ \t]?"
# 3号楼 3号栋 3#楼 3# are always a building; 3栋 3幢 (and 3栋楼) too with digits or after 第, but
# 两栋 / 三栋楼 are as often "two buildings", so Chinese numerals there are left alone.
_BUILDING = re.compile(
    _NUMBER + r"(?:(?P<numbered>[号號](?:楼|樓|栋|棟|幢)|[#＃](?:楼|樓)?)"
    r"|(?P<counted>(?:栋|棟|幢)(?:[楼樓](?![道梯层顶下上房里内前后外]))?))"
)
_UNIT = re.compile(_NUMBER + r"(?:单元|單元)")


def _arabic(token: str) -> int:
    """"3" / "３" / "三" / "十二" / "二十一" → the number."""
    if token.isdigit():
        return int(token)
    if "十" not in token:
        return _NUMERALS[token]
    tens, _, ones = token.partition("十")
    return _NUMERALS.get(tens, 1) * 10 + _NUMERALS.get(ones, 0)


def _building(match: re.Match[str]) -> str:
    ordinal, number = match.group(1, 2)
    if match["counted"] and not ordinal and not number.isdigit():
        if number == "两" or match["counted"].endswith(("楼", "樓")) or match.string[match.end() : match.end() + 1] in "楼樓":
            return match.group()
    return f"{_arabic(number)}号楼"


def canonical_place(text: str) -> str:
    """Buildings and units written one way: 三号楼 / 3栋 / 3幢 / 3#楼 / 3# / ３号楼 / 第三栋 → 3号楼,
    二单元 / 第2单元 → 2单元. The rest of the text is left as it is."""
    text = _BUILDING.sub(_building, text)
    return _UNIT.sub(lambda m: f"{_arabic(m.group(2))}单元", text)


_CHINESE_DIGITS = "一二三四五六七八九"
_NUMBERED = re.compile(r"(?<!\d)(\d{1,2})(号楼|单元)")


def _chinese(number: int) -> str:
    """1–99 in Chinese numerals, as residents write building numbers: 3 → 三, 21 → 二十一."""
    tens, ones = divmod(number, 10)
    head = "" if tens == 0 else "十" if tens == 1 else _CHINESE_DIGITS[tens - 1] + "十"
    return head + (_CHINESE_DIGITS[ones - 1] if ones else "")


_GENERIC_SUFFIX = re.compile("小区|社区")


def place_variants(landmark: str) -> set[str]:
    """The spellings of a landmark: its canonical form, the same without 小区/社区 (when at least
    two characters of name are left) and both with the numbers in Chinese (三号楼, 二单元).
    canonical_place of every variant is one of the canonical variants."""
    canonical = canonical_place(landmark.strip())
    if not canonical:
        return set()
    forms = {canonical}
    for match in _GENERIC_SUFFIX.finditer(canonical):
        if len(canonical[: match.start()].strip()) >= 2:
            forms.add(canonical[: match.start()] + canonical[match.end() :])
    spelled = {_NUMBERED.sub(lambda m: _chinese(int(m[1])) + m[2] if 0 < int(m[1]) < 100 else m[0], f) for f in forms}
    return forms | spelled


# --- place phrases -------------------------------------------------------------------------------
# A place phrase is a chain of components, each a name and a place word (商州区 御园小区 3号楼,
# 建设路 与 光明北街), maybe ending in a spot (交叉口东北角, 门口). Names are made of characters
# that are not the particles, pronouns and common verbs that glue a sentence together, so a phrase
# starts at the name: "我们到金丝峡镇" → "金丝峡镇".
_STOP = "的了在到住是和与及或我你您他她它们这那哪此其请从对把被给向为于等有没不就都也还要说让由因但而又很太将已会能可想该所之个啊吧呢吗呀哦么啥谁每各某本现原时去来得着过再才并且如若即便使却只仅更最修"
_NAME = rf"[^\W_{_STOP}]"
_PLACE_WORD = (
    "(?:小区|花园|家园|公寓|大厦|广场|公园|苑|家属院|社区|街道(?:办事处|办)?"
    "|菜市场|市场|超市|商场|火车站|汽车站|车站|幼儿园|小学|中学|大学|学校|卫生院|医院"
    "|大道|大街|胡同|国道|省道|县道|路(?![灯面况费线])|街(?![道办])|巷"
    "|省|市(?![场民长委政里区级容镇])|县(?![长委政级城里])|区(?![域别长委政级])|镇(?![长政委])|乡(?![长政村镇亲下])"
    "|村(?![民委长里子干部级务组级])|院(?![长子内里])"
    ")"
)
_BUILDING_PART = r"\d{1,4}(?:号楼|单元|号院|号|室|层|楼|组|期)|[一二三四五六七八九十]{1,3}(?:组|期)"
_SPOT = (
    "(?:十字路口|丁字路口|交叉口|路口|[东南西北]{1,2}(?:角|侧|面|门|段|口)|门口|对面|旁边|附近|楼下|楼道|入口|出口)"
)
_PLACE = re.compile(
    rf"(?P<head>{_NAME}{{2,6}}?{_PLACE_WORD}|\d{{1,4}}(?:号楼|单元))"
    rf"(?P<rest>(?:[与和跟、]?{_NAME}{{1,8}}?{_PLACE_WORD}|{_BUILDING_PART})*)"
    rf"(?P<spot>{_SPOT}{{1,2}})?"
)
_PART = re.compile(rf"{_NAME}{{1,8}}?{_PLACE_WORD}|{_BUILDING_PART}")
# Words that come before a place without being part of it: "反映光明北街" is about 光明北街.
_LEADING_WORDS = re.compile(
    "^(?:反映|投诉|举报|咨询|请问|关于|位于|地址|地点|住址|家住|居住|现住|目前|现在|今天|昨天|前天|最近|近期|近日|"
    "本人|市民|居民|村民|业主|领导|您好|你好|尊敬|市长|县长|书记|经过|路过|途经|前往|来到|回到|就在|所在|地处|当地|"
    "一直|已经|发现|看到|听说|知道|希望|要求|建议|强烈|恳请|请求|属于|今年|去年|每天|晚上|早上|中午|下午|上午|"
    r"\d+(?:年|月|日|号(?![楼院室])|点|时|天))+"
)
# Whole phrases that are a kind of place, not a place: 新农村, 大城市, 水泥路.
_GENERIC = re.compile(
    "^(?:新农村|美丽乡村|大城市|小城市|全省|全市|全县|全区|全镇|全村|城乡|乡镇|城镇|农村|家乡|老家|市区|城区|郊区|"
    "辖区|地区|景区|园区|片区|县区|县城|水泥路|柏油路|硬化路|马路|道路|公路|铁路|大路|小路|土路|山路|大街|小巷|街巷)$"
    "|(?:修|走|绕|堵|铺|断|迷|出|思|线|电|网|水|活|生|一|半|岔|套|退|后|上|沿|逛|临|满|过|条|整)[路街]$"
    "|(?:住|出|入|病|大|小|庭)院$"
)


def find_place_phrase(text: str) -> str | None:
    """A place as the resident described it ("建设路与光明北街交叉口东北角", "XX小区3号楼2单元"),
    or None when nothing looks like one. Precision over recall: the phrase with the most parts;
    a name whose start is unclear (a long run of characters before the place word) is not taken."""
    best: tuple[int, str] | None = None
    text = canonical_place(text)
    for match in _PLACE.finditer(text):
        start = match.start()
        if start > 0 and re.match(_NAME, text[start - 1]) and not match["head"][0].isdigit():
            continue  # the name may start further left: we cannot tell where
        phrase = _LEADING_WORDS.sub("", match.group())
        parts = _PART.findall(phrase)
        if not parts or _GENERIC.search(parts[0]):
            continue
        score = len(parts) + (1 if match["spot"] else 0)
        if len(parts) == 1 and re.fullmatch(rf"{_NAME}+[省市]", phrase):
            continue  # a province or a city alone says little, and 城市/超市-like words abound
        if 3 <= len(phrase) <= 40 and (best is None or score > best[0]):
            best = (score, phrase)
    return best[1] if best else None
