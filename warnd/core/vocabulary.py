"""The words every stage shares: hazards, levels, audiences, dispatch priority, and how a
hazard or a level is recognised in the free text of a warning (event, headline, parameters)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# Every text of an exercise carries this mark, so nobody takes a drill for a live warning.
EXERCISE_MARK: Final = "【演练】"


class Level(StrEnum):
    """The four colour levels (CMA Order No. 16): blue IV … red I."""

    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def zh(self) -> str:
        return _LEVEL_ZH[self]

    @property
    def rank(self) -> int:
        """0 for red … 3 for blue: lower goes first."""
        return _LEVEL_RANK[self]


_LEVEL_ZH = {Level.BLUE: "蓝色", Level.YELLOW: "黄色", Level.ORANGE: "橙色", Level.RED: "红色"}
_LEVEL_RANK = {Level.RED: 0, Level.ORANGE: 1, Level.YELLOW: 2, Level.BLUE: 3}

SEVERITY_LEVEL = {
    "Extreme": Level.RED,
    "Severe": Level.ORANGE,
    "Moderate": Level.YELLOW,
    "Minor": Level.BLUE,
}


@dataclass(frozen=True)
class Hazard:
    """A hazard type: its code, its Chinese name, and the responder speciality it calls on."""

    code: str
    zh: str
    speciality: str | None  # None: every responder, whatever their speciality


HAZARDS: dict[str, Hazard] = {
    h.code: h
    for h in [
        Hazard("rainstorm", "暴雨", "flood"),
        Hazard("gale", "大风", None),
        Hazard("thunder", "雷电", None),
        Hazard("heat", "高温", None),
        Hazard("cold_wave", "寒潮", None),
        Hazard("blizzard", "暴雪", None),
        Hazard("fog", "大雾", None),
        Hazard("hail", "冰雹", None),
        Hazard("frost", "霜冻", None),
        Hazard("haze", "霾", None),
        Hazard("road_icing", "道路结冰", None),
        Hazard("typhoon", "台风", "flood"),
        Hazard("drought", "干旱", None),
        Hazard("sandstorm", "沙尘暴", None),
        Hazard("flood", "洪水", "flood"),
        Hazard("waterlogging", "内涝", "flood"),
        Hazard("flash_flood", "山洪", "flood"),
        Hazard("geological", "地质灾害", "geological"),
        Hazard("earthquake", "地震", "earthquake"),
        Hazard("forest_fire", "森林火灾", "forest_fire"),
        Hazard("hazardous_chemicals", "危险化学品", None),
        Hazard("other", "突发事件", None),
    ]
}

SPECIALITIES = ("flood", "forest_fire", "geological", "earthquake", "all")


class Audience(StrEnum):
    """Who a delivery is for; the order is the order planning writes them and dispatch sends."""

    RESPONDER = "responder"
    BROADCAST = "broadcast"
    FACILITY = "facility"
    HELPER = "helper"
    HOUSEHOLD = "household"


def priority(hazard: str, level: Level, audience_rank: int) -> int:
    """Dispatch priority, lower first: seismic before everything, then by level, then by the
    audience's place in the policy's send order (responders first unless the policy says)."""
    tier = 0 if hazard == "earthquake" else 1 + level.rank
    return tier * 10 + audience_rank


# Hazard names as feeds write them in event and headline. Chinese names are plain substrings;
# English ones are whole words, optionally plural. Where names overlap (暴雨/雷雨大风,
# flood/flash flood) the longest match wins.
_ZH_HAZARD_NAMES: Final[dict[str, str]] = {
    **{hazard.zh: code for code, hazard in HAZARDS.items() if code != "other"},
    # CMA's thunderstorm-gale signal: the thunderstorm is the hazard, the gale its symptom.
    "雷雨大风": "thunder",
    "滑坡": "geological",
    "泥石流": "geological",
    "崩塌": "geological",
    "森林火险": "forest_fire",
}
_EN_HAZARD_NAMES: Final[dict[str, str]] = {
    "rainstorm": "rainstorm",
    "heavy rain": "rainstorm",
    "heavy rainfall": "rainstorm",
    "gale": "gale",
    "thunderstorm": "thunder",
    "thunder": "thunder",
    "lightning": "thunder",
    "heat": "heat",
    "heat wave": "heat",
    "heatwave": "heat",
    "high temperature": "heat",
    "cold wave": "cold_wave",
    "blizzard": "blizzard",
    "snowstorm": "blizzard",
    "fog": "fog",
    "hail": "hail",
    "frost": "frost",
    "haze": "haze",
    "icing": "road_icing",
    "road icing": "road_icing",
    "typhoon": "typhoon",
    "drought": "drought",
    "sandstorm": "sandstorm",
    "dust": "sandstorm",
    "dust storm": "sandstorm",
    "flood": "flood",
    "waterlogging": "waterlogging",
    "flash flood": "flash_flood",
    "landslide": "geological",
    "debris flow": "geological",
    "geological": "geological",
    "earthquake": "earthquake",
    "forest fire": "forest_fire",
    "chemical": "hazardous_chemicals",
    "hazardous chemical": "hazardous_chemicals",
}
_EN_HAZARD_PATTERNS: Final = [
    (re.compile(rf"\b{re.escape(name)}(?:e?s)?\b", re.IGNORECASE), len(name), code)
    for name, code in _EN_HAZARD_NAMES.items()
]


_COLOUR: Final = re.compile(r"红色|橙色|黄色|蓝色|\b(?:red|orange|yellow|blue)\b", re.IGNORECASE)
_COLOUR_LEVEL: Final = {
    "红色": Level.RED,
    "橙色": Level.ORANGE,
    "黄色": Level.YELLOW,
    "蓝色": Level.BLUE,
    "red": Level.RED,
    "orange": Level.ORANGE,
    "yellow": Level.YELLOW,
    "blue": Level.BLUE,
}
_ROMAN_LEVEL: Final = {
    "I": Level.RED,
    "Ⅰ": Level.RED,
    "II": Level.ORANGE,
    "Ⅱ": Level.ORANGE,
    "III": Level.YELLOW,
    "Ⅲ": Level.YELLOW,
    "IV": Level.BLUE,
    "Ⅳ": Level.BLUE,
}
_ROMAN_GRADE: Final = re.compile(r"(?<![IVX])(IV|III|II|I|Ⅳ|Ⅲ|Ⅱ|Ⅰ)\s*级")
_BARE_ROMAN: Final = re.compile(r"(IV|III|II|I|Ⅳ|Ⅲ|Ⅱ|Ⅰ)(?:\s*级)?")
# The grade words of CMA Order No. 16, accepted as the whole value of a level parameter only:
# in free text "严重" is an ordinary word.
_GRADE_WORD_LEVEL: Final = {
    "特别严重": Level.RED,
    "严重": Level.ORANGE,
    "较重": Level.YELLOW,
    "一般": Level.BLUE,
}
_LEVEL_PARAMETER_WORDS: Final = ("level", "colour", "color", "级别", "等级", "颜色")
_CHANGE: Final = re.compile(
    r"升级为|降级为|调整为|变更为|改为|(?:upgraded|downgraded|raised|lowered|changed) to",
    re.IGNORECASE,
)


def hazard_in(text: str) -> str | None:
    """The hazard a text names, by its longest (then earliest) hazard word; None if none."""
    best: tuple[int, int, str] | None = None  # (length, -position, code): max() is the winner
    for name, code in _ZH_HAZARD_NAMES.items():
        position = text.find(name)
        if position >= 0:
            best = max(best or (0, 0, ""), (len(name), -position, code))
    for pattern, length, code in _EN_HAZARD_PATTERNS:
        match = pattern.search(text)
        if match:
            best = max(best or (0, 0, ""), (length, -match.start(), code))
    return best[2] if best else None


def is_level_parameter(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _LEVEL_PARAMETER_WORDS)


def parameter_level(name: str, value: str) -> Level | None:
    if is_level_parameter(name):
        if value in _GRADE_WORD_LEVEL:
            return _GRADE_WORD_LEVEL[value]
        bare = _BARE_ROMAN.fullmatch(value)
        if bare:
            return _ROMAN_LEVEL[bare.group(1)]
    return level_in(value, roman=True)


def level_in(text: str, *, roman: bool) -> Level | None:
    found = [
        (match.start(), _COLOUR_LEVEL[match.group().lower()]) for match in _COLOUR.finditer(text)
    ]
    if roman:
        found += [
            (match.start(), _ROMAN_LEVEL[match.group(1)]) for match in _ROMAN_GRADE.finditer(text)
        ]
    if not found:
        return None
    found.sort()
    levels = {level for _, level in found}
    if len(levels) == 1:
        return found[0][1]
    # "将暴雨红色预警信号降级为橙色": the level after the last change verb is the current one.
    changes = list(_CHANGE.finditer(text))
    if changes:
        after = [level for position, level in found if position >= changes[-1].end()]
        if after:
            return after[0]
    # Several levels and no word saying which is current: over-warning is the safer mistake.
    return min(levels, key=lambda level: level.rank)
