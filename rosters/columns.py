"""The roster file format: record types, their columns (English and Chinese headers) and values.

One file (or one worksheet) per record type, recognised by its header row. ``FORMAT.md`` beside
this module describes the same thing for the people who fill the spreadsheets in; a test keeps the
two in step. Import (``rosters.importer``) reads any of the accepted headers and values; export
(``rosters.export``) writes the first Chinese header and the first Chinese value of each.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property


class Kind(StrEnum):
    """How a column's text is read."""

    TEXT = "text"  # free text, stripped
    REF = "ref"  # a record's stable key
    VILLAGE_CODE = "village_code"  # a 12-digit village or community code
    DIVISION_CODE = "division_code"  # a 6-, 9- or 12-digit code of any level
    MOBILE = "mobile"  # one mobile number
    PHONE = "phone"  # one mobile or fixed-line number
    PHONES = "phones"  # one or more numbers, mobile or fixed line
    BOOL = "bool"  # 是/否, 1/0, true/false …
    LAT = "lat"
    LON = "lon"
    LEVEL = "level"
    SPECIALITIES = "specialities"
    CATEGORY = "category"
    FACILITY_KIND = "facility_kind"


@dataclass(frozen=True)
class Column:
    """A column: its key (the English header), Chinese header, other accepted headers."""

    key: str
    zh: str
    kind: Kind
    required: bool = False
    aliases: tuple[str, ...] = ()
    note: str = ""

    def headers(self) -> tuple[str, ...]:
        return (self.key, self.zh, *self.aliases)


@dataclass(frozen=True)
class RecordType:
    """A kind of roster record, the table it lands in, and its columns."""

    key: str  # also the export file's stem
    zh: str
    table: str
    columns: tuple[Column, ...]

    @cached_property
    def by_key(self) -> dict[str, Column]:
        return {c.key: c for c in self.columns}

    def column(self, key: str) -> Column:
        return self.by_key[key]

    def required(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.required)


def _flag(key: str, zh: str, *aliases: str, note: str = "") -> Column:
    return Column(key, zh, Kind.BOOL, aliases=aliases, note=note)


EXERCISE = _flag("exercise", "演练", "参加演练", "演练人员", note="takes part in exercises")
REF_ALIASES = ("编码", "id", "唯一编号")

DIVISIONS = RecordType(
    "divisions",
    "村（社区）",
    "divisions",
    (
        Column(
            "code",
            "行政区划代码",
            Kind.VILLAGE_CODE,
            required=True,
            aliases=(
                "区划代码",
                "代码",
                "村代码",
                "村（社区）代码",
                "division_code",
                "统计用区划代码",
            ),
            note="12 digits: town code + 001–199 (community) or 200–399 (village)",
        ),
        Column(
            "name", "名称", Kind.TEXT, required=True, aliases=("村名", "村（社区）名称", "村名称")
        ),
        Column(
            "level",
            "级别",
            Kind.LEVEL,
            aliases=("层级",),
            note="optional; only villages and communities can be imported",
        ),
        Column("lat", "纬度", Kind.LAT, aliases=("latitude", "北纬")),
        Column("lon", "经度", Kind.LON, aliases=("longitude", "lng", "东经")),
        _flag(
            "blind_spot", "警报盲区", "盲区", "预警盲区", note="no loudspeaker or signal coverage"
        ),
        _flag("remote", "偏远", "偏远村", "边远"),
        _flag("mountain", "山区", "山区村"),
        _flag("flood_storage", "蓄滞洪区", "蓄洪区", "滞洪区"),
        _flag("low_lying", "低洼易涝", "低洼", "易涝"),
        _flag("geo_hazard", "地质灾害隐患点", "地灾隐患点", "地质灾害隐患"),
    ),
)

RESPONDERS = RecordType(
    "responders",
    "责任人",
    "responders",
    (
        Column("ref", "编号", Kind.REF, required=True, aliases=REF_ALIASES),
        Column("name", "姓名", Kind.TEXT, required=True),
        Column(
            "phone",
            "电话",
            Kind.MOBILE,
            required=True,
            aliases=("手机", "手机号", "手机号码", "联系电话", "电话号码", "mobile"),
            note="a mobile number: responders answer by SMS",
        ),
        Column(
            "division_code",
            "行政区划代码",
            Kind.DIVISION_CODE,
            required=True,
            aliases=("区划代码", "所属区划代码", "代码", "code"),
            note="6 (county), 9 (town) or 12 digits",
        ),
        Column(
            "level",
            "级别",
            Kind.LEVEL,
            aliases=("层级",),
            note="optional; when given it must match the division's level",
        ),
        Column("role", "职务", Kind.TEXT, aliases=("岗位", "职位")),
        Column(
            "specialities",
            "专业",
            Kind.SPECIALITIES,
            aliases=("专业类别", "灾种", "负责灾种"),
            note="separated by ; 、 or , — empty means all",
        ),
        Column(
            "backup_ref",
            "B角",
            Kind.REF,
            aliases=("B角编号", "b角", "备岗编号", "backup"),
            note="ref of the backup responder",
        ),
        EXERCISE,
    ),
)

HOUSEHOLDS = RecordType(
    "households",
    "住户",
    "households",
    (
        Column("ref", "编号", Kind.REF, required=True, aliases=("户编号", *REF_ALIASES)),
        Column(
            "village_code",
            "村代码",
            Kind.VILLAGE_CODE,
            required=True,
            aliases=("行政区划代码", "区划代码", "村（社区）代码", "code"),
        ),
        Column("address", "地址", Kind.TEXT, required=True, aliases=("住址", "详细地址", "门牌")),
        Column("head_name", "户主", Kind.TEXT, aliases=("户主姓名", "姓名", "name")),
        Column(
            "phones",
            "电话",
            Kind.PHONES,
            required=True,
            aliases=("手机", "手机号", "手机号码", "联系电话", "电话号码", "phone"),
            note="one or more, separated by ; — fixed-line numbers need their area code",
        ),
        EXERCISE,
    ),
)

SPECIAL_PERSONS = RecordType(
    "special_persons",
    "重点人员",
    "special_persons",
    (
        Column("ref", "编号", Kind.REF, required=True, aliases=REF_ALIASES),
        Column("name", "姓名", Kind.TEXT, required=True),
        Column(
            "category",
            "类别",
            Kind.CATEGORY,
            required=True,
            aliases=("人员类别", "群体类别", "类型", "kind"),
        ),
        Column(
            "village_code",
            "村代码",
            Kind.VILLAGE_CODE,
            required=True,
            aliases=("行政区划代码", "区划代码", "村（社区）代码", "code"),
        ),
        Column("household_ref", "户编号", Kind.REF, aliases=("住户编号", "household")),
        Column("address", "地址", Kind.TEXT, aliases=("住址", "详细地址")),
        Column(
            "phone",
            "电话",
            Kind.PHONE,
            aliases=("手机", "手机号", "联系电话", "电话号码"),
            note="optional; mobile or fixed line",
        ),
        Column(
            "helper_ref",
            "包保联系人编号",
            Kind.REF,
            required=True,
            aliases=("包保联系人", "包保人编号", "包保责任人编号", "包保人", "helper"),
            note="ref of the responder who looks after this person (包保联系人)",
        ),
        EXERCISE,
    ),
)

FACILITIES = RecordType(
    "facilities",
    "重点场所",
    "facilities",
    (
        Column("ref", "编号", Kind.REF, required=True, aliases=REF_ALIASES),
        Column(
            "name", "名称", Kind.TEXT, required=True, aliases=("机构名称", "单位名称", "场所名称")
        ),
        Column(
            "kind",
            "类型",
            Kind.FACILITY_KIND,
            required=True,
            aliases=("机构类型", "场所类型", "类别"),
        ),
        Column(
            "village_code",
            "村代码",
            Kind.VILLAGE_CODE,
            required=True,
            aliases=("行政区划代码", "区划代码", "村（社区）代码", "code"),
        ),
        Column("address", "地址", Kind.TEXT, aliases=("详细地址", "单位地址")),
        Column(
            "contact_name",
            "联系人",
            Kind.TEXT,
            required=True,
            aliases=("联系人姓名", "负责人", "负责人姓名"),
        ),
        Column(
            "contact_phone",
            "联系电话",
            Kind.MOBILE,
            required=True,
            aliases=("联系人电话", "负责人电话", "电话", "手机", "手机号"),
            note="a mobile number",
        ),
        EXERCISE,
    ),
)

RECORD_TYPES: tuple[RecordType, ...] = (
    DIVISIONS,
    RESPONDERS,
    HOUSEHOLDS,
    SPECIAL_PERSONS,
    FACILITIES,
)
"""In import order: what a later type refers to is written first."""

# Columns that spreadsheets carry for people, not for warnd: read past, never an error.
IGNORED_HEADERS = ("序号", "备注", "说明", "no", "remark", "remarks", "note", "notes")

# ---- values -----------------------------------------------------------------------------------

TRUE_WORDS = ("是", "1", "true", "yes", "y", "t", "有", "√", "✓", "✔")
FALSE_WORDS = ("否", "0", "false", "no", "n", "f", "无", "×", "✗", "")

LEVEL_WORDS: dict[str, tuple[str, ...]] = {
    "city": ("市级", "市", "city"),
    "county": ("县级", "县", "区", "县区", "县（市、区）", "county"),
    "town": ("乡镇级", "乡镇", "镇", "乡", "街道", "镇级", "乡级", "街道级", "town"),
    "village": ("村级", "村", "社区", "村（社区）", "village"),
}
SPECIALITY_WORDS: dict[str, tuple[str, ...]] = {
    "flood": ("防汛", "防汛抗旱", "洪涝", "水旱", "flood"),
    "forest_fire": ("森林防火", "森林火灾", "森防", "防火", "forest_fire"),
    "geological": ("地质灾害", "地灾", "地质", "geological"),
    "earthquake": ("地震", "防震减灾", "earthquake"),
    "all": ("全部", "综合", "所有", "全灾种", "all"),
}
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "elderly_alone": ("独居老人", "空巢老人", "孤寡老人", "老人", "elderly_alone"),
    "child": ("儿童", "留守儿童", "未成年人", "幼", "child"),
    "sick": ("病患", "病人", "重病患者", "患病", "病", "sick"),
    "disabled": ("残疾人", "残障人士", "残疾", "残", "disabled"),
    "pregnant": ("孕妇", "孕产妇", "孕", "pregnant"),
}
FACILITY_KIND_WORDS: dict[str, tuple[str, ...]] = {
    "school": ("学校", "中学", "小学", "中小学", "school"),
    "kindergarten": ("幼儿园", "托儿所", "托育机构", "kindergarten"),
    "elderly_care": ("养老机构", "敬老院", "养老院", "养老服务中心", "elderly_care"),
    "child_welfare": ("儿童福利机构", "儿童福利院", "child_welfare"),
    "minors_protection": (
        "未成年人保护机构",
        "未成年人救助保护中心",
        "未成年人保护中心",
        "minors_protection",
    ),
    "hospital": ("医院", "卫生院", "医疗机构", "社区卫生服务中心", "hospital"),
}
VOCABULARIES: dict[Kind, dict[str, tuple[str, ...]]] = {
    Kind.LEVEL: LEVEL_WORDS,
    Kind.SPECIALITIES: SPECIALITY_WORDS,
    Kind.CATEGORY: CATEGORY_WORDS,
    Kind.FACILITY_KIND: FACILITY_KIND_WORDS,
}

# Separators between several values in one cell: specialities, phone numbers.
LIST_SEPARATORS = re.compile(r"[;；、,，/|\s]+")
# Where Jining is, with a margin: a coordinate outside is a typo or swapped lat/lon.
LAT_RANGE = (34.2, 36.4)
LON_RANGE = (115.6, 117.9)


def normalise_word(text: str) -> str:
    """Case, width and spacing folded, so ``Ｂ角 ``, ``b角`` and ``B角`` compare equal."""
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    return re.sub(r"[\s_\-*]+", "", folded)


def normalise_header(text: str) -> str:
    """A header folded like a word, without a marker such as ``*`` or ``（必填）``."""
    folded = normalise_word(text)
    return re.sub(r"\((?:必填|选填|可选|可空|required|optional)\)$", "", folded)


def lookup(words: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Every accepted word (folded) to its canonical value."""
    return {normalise_word(w): value for value, spelled in words.items() for w in spelled}


def zh_value(kind: Kind, value: str) -> str:
    """The Chinese word written on export for a canonical value."""
    return VOCABULARIES[kind][value][0]
