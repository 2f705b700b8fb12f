"""Leaders' chat commands, parsed forgivingly: "接单", "接单G20261122-0007", "办结：G… 已修好"."""

from __future__ import annotations

import re
from dataclasses import dataclass

VERBS = ("接单", "进展", "办结", "退回", "上报", "派遣", "改类", "我的工单", "工单", "帮助")
CASE_NUMBER = re.compile(r"[Gg]\s*(\d{8})\s*[-－—_]\s*(\d{1,6})")
_SEPARATORS = " \t:：,，、.。"


@dataclass(frozen=True)
class Command:
    verb: str
    number: str | None  # normalised, e.g. G20261122-0007
    note: str


# Full-width ASCII (Ｇ２０２６…, full-width space) to half-width, one character for one, so that
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
            pos = len(verb)
            pos += len(body[pos:]) - len(body[pos:].lstrip(_SEPARATORS))
            number = None
            m = CASE_NUMBER.match(body, pos)
            if m:
                number = f"G{m.group(1)}-{int(m.group(2)):04d}"
                pos = m.end()
            # The note keeps the leader's own punctuation (full-width commas and all).
            return Command(verb, number, original[pos:].strip(_SEPARATORS))
    if body in ("?", "help", "菜单"):
        return Command("帮助", None, "")
    return None
