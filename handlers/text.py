"""Extractors for what residents type: normalised text, phone numbers, building numbers, places.

Small pure functions with precompiled patterns; no I/O. Used by `handlers.understand`.
"""

from __future__ import annotations

import re

from handlers.classify import normalise_text

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Full-width to half-width, traditional to simplified, whitespace runs to one space."""
    return _SPACES.sub(" ", normalise_text(text)).strip()


# --- phones ---------------------------------------------------------------------------------------
# A mobile: 1[3-9] and 9 more digits, allowing the separators people type (space, -, ·), an optional
# +86/86 prefix; never part of a longer digit run (ID cards, order numbers) nor a masked number.
_MOBILE = re.compile(r"(?<![\d*])(?:\+?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?![\d*])")
_LANDLINE = re.compile(r"(?<![\d*])(?:\(|（)?(0\d{2,3})(?:\)|）|-|\s)?\s?([2-9]\d{6,7})(?![\d*])")
_LOCAL = re.compile(r"(?:电话|联系|手机|座机|tel|Tel|TEL)[^\d]{0,4}([2-9]\d{6,7})(?![\d*])")


def find_phones(text: str) -> list[str]:
    """Phone numbers in the text, normalised: mobiles as 11 digits, landlines as 029-88888888."""
    found: list[str] = []
    for m in _MOBILE.finditer(text):
        found.append("".join(m.groups()))
    for m in _LANDLINE.finditer(text):
        number = f"{m.group(1)}-{m.group(2)}"
        if not any(number.replace("-", "") in f for f in found):
            found.append(number)
    for m in _LOCAL.finditer(text):
        if not any(f.endswith(m.group(1)) for f in found):
            found.append(m.group(1))
    return list(dict.fromkeys(found))


def mask_phone(phone: str) -> str:
    """138****1234 for a mobile; the area code and the last four for a landline (029-****8888)."""
    if len(phone) == 11 and phone.isdigit():
        return f"{phone[:3]}****{phone[-4:]}"
    area, _, number = phone.rpartition("-")
    return f"{area + '-' if area else ''}****{number[-4:]}"


def mask_phones_in(text: str) -> str:
    """The text with every phone number masked (for pushes to staff)."""
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    text = _LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(2)[-4:]}", text)
    return _LOCAL.sub(lambda m: m.group(0)[: -len(m.group(1))] + "****" + m.group(1)[-4:], text)


# --- buildings and places -------------------------------------------------------------------------
_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_NUMBER = "[零〇一二两三四五六七八九十]{1,4}"
_BUILDING = re.compile(rf"第?(\d{{1,3}}|{_CN_NUMBER})\s*(?:号楼|号栋|栋楼|栋|幢|#楼|#|号院楼)")
_UNIT = re.compile(rf"第?(\d{{1,2}}|{_CN_NUMBER})\s*单元")


def _arabic(token: str) -> str:
    """ "三" → "3", "十二" → "12", "二十一" → "21"; digits pass through."""
    if token.isdigit():
        return str(int(token))
    if "十" not in token:
        return "".join(str(_DIGITS.get(ch, ch)) for ch in token)
    tens, _, ones = token.partition("十")
    return str((_DIGITS.get(tens, 1) if tens else 1) * 10 + (_DIGITS.get(ones, 0) if ones else 0))


def canonical_place(text: str) -> str:
    """One way of writing buildings and units: 三号楼 / 3栋 / 3幢 / 3#楼 / 第三栋 → 3号楼; 二单元 → 2单元."""
    text = _BUILDING.sub(lambda m: f"{_arabic(m.group(1))}号楼", text)
    return _UNIT.sub(lambda m: f"{_arabic(m.group(1))}单元", text)


_GENERIC_SUFFIXES = ("小区", "社区")


def place_variants(landmark: str) -> set[str]:
    """The forms a landmark is written in, in canonical building form: with and without 小区/社区."""
    canonical = canonical_place(landmark)
    variants = {canonical}
    for suffix in _GENERIC_SUFFIXES:
        head, sep, tail = canonical.partition(suffix)
        if sep and len(head) >= 2:
            variants.add(head + tail)
    return variants


_PLACE_WORD = (
    r"(?:[省市县](?![场民长委政里区])|区(?![域别])|镇|乡|路(?![灯面边况上])|街(?!道办)|巷|大道|胡同|小区|花园|苑|院|村|社区|广场|公园|小学|中学|学校|医院|市场|菜市场|超市|"
    r"号楼|单元|大厦|公寓|商场|车站|桥|门口|交叉口|路口)"
)
# Characters a place name is made of: not the particles and verbs that glue a sentence together, so a
# match starts at the name ("我们到金丝峡镇" → "金丝峡镇"), not somewhere before it.
_NAME_CHAR = r"[^\W_的是到让在住向给了和与我们他她你请申关乎能理解全对把被从为于及等这那有没不就都也还要]"
_PLACE = re.compile(
    rf"(?:在|位于|地址[:：]?|地点[:：]?)?"
    rf"({_NAME_CHAR}{{1,8}}?{_PLACE_WORD}"
    rf"(?:(?:{_NAME_CHAR}|[与和]){{0,8}}?{_PLACE_WORD})*"
    rf"(?:[东南西北]{{1,2}}(?:侧|角|面|门)?)?)"
)
_NOT_A_PLACE_START = re.compile(
    r"^(?:(?:关于|对|在|位于|我|我们|我家|他们|你们|有人|这个|那个|这里|那里|请|希望|因为|尽快|修理|反映)+)"
)


def find_place_phrase(text: str) -> str | None:
    """A place description in free text ("建设路与光明北街交叉口东北角", "XX小区3号楼2单元"),
    or None. Conservative: the first plausible phrase of 3–40 characters."""
    for m in _PLACE.finditer(canonical_place(text)):
        phrase = _NOT_A_PLACE_START.sub("", m.group(1))
        if 3 <= len(phrase) <= 40:
            return phrase
    return None
