"""Staff chat commands, parsed forgivingly: "接单", "接单G20261122-0007", "办结：#3 已修好",
"挂起 #3 到12月1日 等配件"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

# Longest first where one verb starts another ("不同意延期" before "不同意", "工单" after "我的工单").
VERBS = (
    "不同意延期",
    "同意延期",
    "解除屏蔽",
    "核查通过",
    "我的工单",
    "未送达",
    "不同意",
    "不属实",
    "接单",
    "接收",
    "进展",
    "办结",
    "退回",
    "上报",
    "派遣",
    "转派",
    "拒收",
    "挂起",
    "恢复",
    "延期",
    "同意",
    "通过",
    "返工",
    "重复",
    "重发",
    "屏蔽",
    "改类",
    "工单",
    "帮助",
)
# Other words for the same command: what a leader types without thinking.
ALIASES = {"接收": "接单", "同意": "同意延期", "不同意": "不同意延期", "通过": "核查通过"}
CASE_NUMBER = re.compile(r"[Gg]\s*(\d{8})\s*[-－—_]\s*(\d{1,6})")
# The short reference printed on a case card (#12): quoted instead of the number.
REF = re.compile(r"#\s*(\d{1,6})(?!\d)")
_SEPARATORS = " \t:：,，、.。"


@dataclass(frozen=True)
class Command:
    verb: str
    number: str | None  # normalised, e.g. G20261122-0007
    note: str
    ref: int | None = None  # #12: the staff member's short reference for a case


# Full-width ASCII (Ｇ２０２６…, ＃, full-width space) to half-width, one character for one, so that
# positions found in the normalised text are positions in the original too.
_HALF_WIDTH = {0x3000: " ", **{cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)}}


def half_width(text: str) -> str:
    """Full-width ASCII to half-width, one character for one (unlike handlers.text.normalise)."""
    return text.translate(_HALF_WIDTH)


def find_case_number(text: str) -> str | None:
    m = CASE_NUMBER.search(half_width(text))
    return f"G{m.group(1)}-{int(m.group(2)):04d}" if m else None


def parse_command(text: str) -> Command | None:
    """The command in a staff member's message, or None when it is not one."""
    original = text.strip()
    body = half_width(original)
    for verb in VERBS:
        if body.startswith(verb):
            pos = _skip(body, len(verb))
            number = ref = None
            if m := CASE_NUMBER.match(body, pos):
                number = f"G{m.group(1)}-{int(m.group(2)):04d}"
                pos = _skip(body, m.end())
            elif m := REF.match(body, pos):
                ref = int(m.group(1))
                pos = _skip(body, m.end())
            # The note keeps the leader's own punctuation (full-width commas and all).
            return Command(ALIASES.get(verb, verb), number, original[pos:].strip(_SEPARATORS), ref)
    if body in ("?", "help", "菜单"):
        return Command("帮助", None, "")
    return None


def _skip(body: str, pos: int) -> int:
    return pos + len(body[pos:]) - len(body[pos:].lstrip(_SEPARATORS))


def split_target(note: str) -> tuple[str, str]:
    """ "幸福里网格 原因…" → ("幸福里网格", "原因…"): the first word names where, the rest says why."""
    parts = re.split(f"[{re.escape(_SEPARATORS)}]+", note.strip(_SEPARATORS), maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


_DATE_LEAD = re.compile(r"(?:延期|推迟|延|挂起)?(?:到|至|截至|截止到?)?\s*")
_FULL_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")
_MONTH_DAY = re.compile(r"(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")
_DAYS = re.compile(r"(\d{1,3})\s*(?:天|日)(?:后|以后)?")
_RELATIVE = re.compile(r"明天|明日|后天")
_DATE_TAIL = re.compile(r"\s*(?:前|以前|之前|为止)?")


class DateError(ValueError):
    """No usable date: none written (or no such day), or — `past` — not after today."""

    def __init__(self, reason: str, *, past: bool = False) -> None:
        super().__init__(reason)
        self.past = past


def parse_until(note: str, *, now: datetime, zone: ZoneInfo) -> tuple[date, str]:
    """The date a 挂起 or 延期 runs to, and the rest of the note (the reason, as written).

    Understands 到12月1日, 至2026-12-01, 12.1, 12/1, 3天, 明天, 后天; a month and day without a year is in
    this year (a date behind today by more than half a year is next year's). The date must be after
    today (office time)."""
    body = half_width(note)  # one character for one: positions hold in `note` too
    lead = _DATE_LEAD.match(body, _skip(body, 0))
    pos = lead.end() if lead else 0
    today = now.astimezone(zone).date()
    day: date | None = None
    try:
        if m := _FULL_DATE.match(body, pos):
            day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif m := _MONTH_DAY.match(body, pos):
            day = date(today.year, int(m.group(1)), int(m.group(2)))
            if (today - day).days > 180:  # "1月5日" written in December: next January
                day = day.replace(year=today.year + 1)
        elif m := _DAYS.match(body, pos):
            day = today + timedelta(days=int(m.group(1)))
        elif m := _RELATIVE.match(body, pos):
            day = today + timedelta(days=2 if m.group(0) == "后天" else 1)
    except ValueError as exc:  # 2月30日
        raise DateError("no such date") from exc
    if m is None or day is None:
        raise DateError("no date")
    if day <= today:
        raise DateError("not after today", past=True)
    tail = _DATE_TAIL.match(body, m.end())
    return day, note[tail.end() if tail else m.end() :].strip(_SEPARATORS)
