"""A synthetic but realistic roster of Jining on the real county and town codes, for demos and load.

Whole city by default: about 6,000 villages and communities, 2.9 million households, 10,000
responders with their backups (B角), special-group persons (老幼病残孕) with their helpers, and
schools, kindergartens, care homes and hospitals with contacts. Deterministic per seed: every row
is a pure function of (seed, village code, index), so the output does not depend on chunking.

Streaming: villages, responders and facilities are planned in memory (a few thousand rows), while
households and special persons are generated lazily and streamed into PostgreSQL with binary
``COPY``; peak memory stays flat whatever the city's size.

Identifiers (``ref``) are stable and readable: ``H370811002201-0007`` is the 7th household of
village 370811002201; ``R…`` responders, ``S…`` special persons, ``F…`` facilities.
"""

# ruff: noqa: S311 - synthetic data from seeded, reproducible generators; nothing here is a secret

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache

from rosters.divisions import (
    COUNTY_CIRCLES,
    VILLAGE_SPREAD,
    Division,
    load_divisions,
    pad,
    scatter,
    towns,
)
from rosters.divisions import counties as county_divisions
from rosters.queries import sql
from warnd.core.errors import InputError
from warnd.db import Conn
from warnd.db.notify import ROSTER_CHANNEL

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while a long stage runs."""

CITY_HOUSEHOLDS = 2_900_000
STAGES = ("divisions", "villages", "responders", "households", "special_persons", "facilities")

# ---------------------------------------------------------------------------------------------
# Vocabulary: names, village name parts, roles.
# ---------------------------------------------------------------------------------------------

# Surnames with rough frequencies for Shandong (per mille); 孔, 颜 and 孟 are boosted in Qufu and
# Zoucheng, home of the Kong and Meng lineages.
_SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 73), ("李", 70), ("张", 68), ("刘", 54), ("陈", 25), ("杨", 25), ("赵", 23),
    ("孙", 20), ("马", 15), ("高", 13), ("周", 12), ("徐", 12), ("黄", 10), ("朱", 10),
    ("郭", 10), ("宋", 9), ("韩", 9), ("于", 9), ("吴", 8), ("胡", 8), ("董", 8), ("姜", 8),
    ("许", 7), ("曹", 7), ("田", 7), ("郑", 6), ("梁", 6), ("冯", 6), ("杜", 6), ("魏", 6),
    ("崔", 6), ("孟", 6), ("程", 5), ("吕", 5), ("丁", 5), ("任", 5), ("范", 5), ("石", 5),
    ("贾", 5), ("闫", 5), ("武", 5), ("孔", 5), ("何", 5), ("谢", 4), ("唐", 4), ("袁", 4),
    ("潘", 4), ("姚", 4), ("卢", 4), ("苏", 4), ("白", 4), ("付", 4), ("秦", 4), ("薛", 4),
    ("侯", 4), ("史", 4), ("郝", 4), ("林", 4), ("罗", 4), ("肖", 4), ("曾", 4), ("邹", 3),
    ("尹", 3), ("段", 3), ("邵", 3), ("毛", 3), ("牛", 3), ("葛", 3), ("方", 3), ("夏", 3),
    ("金", 3), ("蒋", 3), ("蔡", 3), ("彭", 3), ("邓", 3), ("庞", 2), ("岳", 2), ("申", 2),
    ("房", 2), ("颜", 2), ("贺", 2), ("顾", 2), ("严", 2), ("戴", 2), ("陶", 2), ("雷", 2),
    ("万", 2), ("汪", 2), ("江", 2), ("邱", 2), ("仲", 1), ("满", 1), ("解", 1), ("仝", 1),
)  # fmt: skip
_SURNAME_BOOST = {"370881": {"孔": 12.0, "颜": 5.0}, "370883": {"孟": 8.0}}
_SURNAME_TABLE_BITS = 10

_GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文辉鹏海林波宇浩凯健俊帆"
    "旭宁博晨阳欣悦雪婷慧颖琳倩佳梅凤云莲珍燕庆福德成春祥利东亮斌峰金学兵永生荣忠振昌胜新宝"
    "贵山顺广立民长泽瑞鑫怡彤晓丹秋菊荷爱芬翠增运修传继宗"
)
_GIVEN_TABLE_BITS = 10

_VILLAGE_TAILS = (
    "庄", "家庄", "楼", "集", "屯", "营", "店", "洼", "寨", "官庄", "桥", "庙", "堂", "口",
    "坊", "园", "堌堆", "铺", "辛庄", "海", "家楼", "圈", "河", "湖",
)  # fmt: skip
_MOUNTAIN_TAILS = ("峪", "岭", "山", "沟", "泉", "坡", "崖", "家峪", "庄", "顶", "岗")
_LAKE_TAILS = ("湖", "口", "湾", "洼", "庄", "家湖", "坝", "岛", "港")
_PREFIXES = ("东", "西", "南", "北", "前", "后", "大", "小", "新", "老", "上", "下", "中")
_COMMUNITY_STEMS = (
    "和平", "幸福", "建设", "文化", "光明", "东风", "新华", "育才", "运河", "古槐", "南池",
    "北湖", "太白", "东门", "西关", "南关", "北关", "府河", "洸河", "泗河", "红星", "解放",
    "振兴", "康宁", "怡和", "锦绣", "翰林", "书院", "青年", "阳光", "花园", "龙城", "凤凰",
    "明珠", "鸿福", "瑞祥", "兴隆", "安居", "绿洲", "秀水", "荷花", "杏坛", "春秋", "儒乡",
    "永安", "新村", "民生", "富民", "滨河", "园丁", "百花", "金桥", "泰和", "丰收",
)  # fmt: skip


@dataclass(frozen=True)
class Terrain:
    """Share of a county's villages with each trait (communities get a fraction of it)."""

    mountain: float = 0.0
    low_lying: float = 0.0
    flood_storage: float = 0.0
    remote: float = 0.01


# The eastern mountains (泗水, 邹城, 曲阜), Nansi Lake (微山: flood-storage areas and lake
# islands), the Dongping Lake flood-storage fringe in Liangshan, and the western low plain.
TERRAIN: dict[str, Terrain] = {
    "370811": Terrain(low_lying=0.15),
    "370812": Terrain(low_lying=0.08),
    "370826": Terrain(mountain=0.05, low_lying=0.25, flood_storage=0.35, remote=0.10),
    "370827": Terrain(low_lying=0.35, flood_storage=0.05, remote=0.02),
    "370828": Terrain(low_lying=0.30),
    "370829": Terrain(mountain=0.10, low_lying=0.20),
    "370830": Terrain(low_lying=0.20),
    "370831": Terrain(mountain=0.65, low_lying=0.02, remote=0.15),
    "370832": Terrain(mountain=0.04, low_lying=0.35, flood_storage=0.10, remote=0.02),
    "370871": Terrain(low_lying=0.10),
    "370881": Terrain(mountain=0.30, remote=0.05),
    "370883": Terrain(mountain=0.45, remote=0.08),
}
MOUNTAIN_COUNTIES = frozenset({"370831", "370881", "370883"})

# Mobile prefixes whose every 8-digit continuation is a valid Chinese mobile number (checked by a
# test against phonenumbers' metadata).
PHONE_PREFIXES = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
    "155", "156", "157", "158", "159", "176", "177", "178", "180", "181", "182", "183", "185",
    "186", "187", "188", "189", "198", "199",
)  # fmt: skip
_PHONE_HIGH = len(PHONE_PREFIXES) * 1_000  # numbers are (high, low) pairs: prefix and 3 digits
_PHONE_LOW = 100_000  # … and the last 5 digits
# Index ranges per kind of person, disjoint, so no two generated people share a number.
_PHONE_BASE = {"household": 0, "responder": 100_000_000, "special": 200_000_000}
_PHONE_BASE["facility"] = 300_000_000
MAX_HOUSEHOLDS = 40_000_000  # two numbers each must stay below the responders' range


@cache
def _phone_keys(seed: int) -> tuple[int, ...]:
    return tuple(_key(seed, "phones", str(round_)) & 0xFFFFFFFF for round_ in range(3))


SPECIAL_CATEGORIES = (
    ("elderly_alone", 0.45),
    ("disabled", 0.20),
    ("sick", 0.15),
    ("child", 0.12),
    ("pregnant", 0.08),
)
SPECIAL_RATE = 0.032


# ---------------------------------------------------------------------------------------------
# Pure building blocks.
# ---------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """SplitMix64 finaliser: 64 well-mixed bits from an integer, cheap enough per household."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _key(seed: int, *parts: str) -> int:
    """A 64-bit key from the seed and names, stable across processes (unlike ``hash``)."""
    digest = hashlib.blake2b(f"{seed}:{':'.join(parts)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def phone_for(index: int, seed: int) -> str:
    """The E.164 mobile number of generated person ``index``: distinct indexes, distinct numbers.

    A small Feistel network over (prefix and 3 digits, last 5 digits): each round adds a hash of
    one half to the other, which is invertible, so the map is a bijection and numbers look random.
    """
    high, low = divmod(index, _PHONE_LOW)
    for key in _phone_keys(seed):
        high = (high + ((low * 2_654_435_761 + key) >> 11)) % _PHONE_HIGH
        low = (low + ((high * 2_246_822_519 + key) >> 11)) % _PHONE_LOW
    prefix, middle = divmod(high, 1_000)
    return f"+86{PHONE_PREFIXES[prefix]}{middle:03d}{low:05d}"


def _weighted_table(weights: Sequence[tuple[str, float]], bits: int) -> tuple[str, ...]:
    """A lookup table of 2**bits entries where each item fills a share equal to its weight."""
    size = 1 << bits
    total = sum(w for _, w in weights)
    table: list[str] = []
    cumulative = 0.0
    for item, weight in weights:
        cumulative += weight
        while len(table) < size and (len(table) + 0.5) / size * total < cumulative:
            table.append(item)
    while len(table) < size:
        table.append(weights[-1][0])
    return tuple(table)


def _surname_table(county: str) -> tuple[str, ...]:
    boost = _SURNAME_BOOST.get(county, {})
    return _weighted_table([(s, w * boost.get(s, 1.0)) for s, w in _SURNAMES], _SURNAME_TABLE_BITS)


def _given_table() -> tuple[str, ...]:
    rng = random.Random("given-names")
    names = []
    for _ in range(1 << _GIVEN_TABLE_BITS):
        count = 1 if rng.random() < 0.3 else 2
        names.append("".join(rng.choice(_GIVEN_CHARS) for _ in range(count)))
    return tuple(names)


_GIVEN = _given_table()
_SURNAME_TABLES = {c: _surname_table(c) for c in COUNTY_CIRCLES}


def _name(rng: random.Random, county: str) -> str:
    return rng.choice(_SURNAME_TABLES[county]) + rng.choice(_GIVEN)


def _share(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return [0] * len(weights)
    quotas = [total * w / weight_sum for w in weights]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - quotas[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# The plan: villages, responders and facilities in memory.
# ---------------------------------------------------------------------------------------------


@dataclass
class Village:
    """A generated village or community and what the generator decided about it."""

    code: str
    name: str
    town: Division
    community: bool
    lat: float
    lon: float
    blind_spot: bool
    remote: bool
    mountain: bool
    flood_storage: bool
    low_lying: bool
    geo_hazard: bool
    weight: float
    key: int
    households: int = 0
    first_household: int = 0  # ordinal of its first household among all generated
    responder_ids: list[int] = field(default_factory=list)
    exercise: bool = False

    @property
    def county(self) -> str:
        return self.code[:6]


def _is_urban(town: Division) -> bool:
    return town.name.endswith("街道") or "中心" in town.name or "委员会" in town.name


def _village_name(rng: random.Random, county: str, community: bool, mountain: bool) -> str:
    surnames = _SURNAME_TABLES[county]
    if community:
        roll = rng.random()
        if roll < 0.55:
            return rng.choice(_COMMUNITY_STEMS) + "社区"
        if roll < 0.85:
            return rng.choice(surnames) + rng.choice(("家", "庄", "楼", "营", "集")) + "社区"
        return rng.choice(_PREFIXES) + rng.choice(_COMMUNITY_STEMS) + "社区"
    tails: tuple[str, ...]
    if mountain:
        tails = _MOUNTAIN_TAILS
    elif county == "370826" and rng.random() < 0.5:
        tails = _LAKE_TAILS
    else:
        tails = _VILLAGE_TAILS
    stem = rng.choice(surnames) + rng.choice(tails)
    if rng.random() < 0.25:
        stem = rng.choice(_PREFIXES) + stem
    return stem + "村"


def _unique_name(
    rng: random.Random, taken: set[str], county: str, community: bool, mountain: bool
) -> str:
    name = _village_name(rng, county, community, mountain)
    # Real towns disambiguate a repeated name with a direction: 前张庄村, 后张庄村.
    while name in taken:
        candidate = rng.choice(_PREFIXES) + name
        name = candidate if len(candidate) <= 8 else _village_name(rng, county, community, mountain)
    taken.add(name)
    return name


def _plan_town(seed: int, town: Division) -> list[Village]:
    county = town.code[:6]
    terrain = TERRAIN[county]
    if town.lat is None or town.lon is None:
        raise ValueError(f"town {town.code} has no coordinates")
    radius = COUNTY_CIRCLES[county].radius_km * VILLAGE_SPREAD
    rng = random.Random(_key(seed, town.code, "villages"))
    if _is_urban(town):
        n_communities, n_villages = rng.randint(10, 24), rng.randint(4, 28)
    else:
        n_communities, n_villages = rng.randint(1, 4), rng.randint(29, 46)
    taken: set[str] = set()
    villages: list[Village] = []
    for community, number, count in ((True, 1, n_communities), (False, 200, n_villages)):
        damp = 0.3 if community else 1.0  # towns' seats sit on the plain, by the roads
        for i in range(count):
            mountain = rng.random() < terrain.mountain * damp
            remote = rng.random() < (terrain.remote * 2 if mountain else terrain.remote) * damp
            low_lying = not mountain and rng.random() < terrain.low_lying
            flood_storage = not mountain and rng.random() < terrain.flood_storage * damp
            geo_hazard = mountain and rng.random() < 0.22
            blind = 0.03 + (0.12 if mountain else 0.0) + (0.20 if remote else 0.0)
            blind_spot = rng.random() < blind * (0.3 if community else 1.0)
            lat, lon = scatter(rng, town.lat, town.lon, radius)
            if community:
                weight = rng.uniform(1.6, 4.5)
            else:
                weight = rng.uniform(0.4, 1.6) * (0.7 if mountain else 1.0)
            code = town.code[:9] + f"{number + i:03d}"
            villages.append(
                Village(
                    code=code,
                    name=_unique_name(rng, taken, county, community, mountain),
                    town=town,
                    community=community,
                    lat=round(lat, 6),
                    lon=round(lon, 6),
                    blind_spot=blind_spot,
                    remote=remote,
                    mountain=mountain,
                    flood_storage=flood_storage,
                    low_lying=low_lying,
                    geo_hazard=geo_hazard,
                    weight=weight,
                    key=_key(seed, code, "households"),
                )
            )
    return villages


@dataclass(frozen=True)
class Responder:
    id: int
    ref: str
    name: str
    phone: str
    division_code: str
    level: str
    role: str
    specialities: list[str]
    backup_id: int | None
    exercise: bool

    def record(self) -> tuple[object, ...]:
        return (
            self.id,
            self.ref,
            self.name,
            self.phone,
            self.division_code,
            self.level,
            self.role,
            self.specialities,
            self.backup_id,
            self.exercise,
        )


RESPONDER_COLUMNS = (
    "id", "ref", "name", "phone", "division_code", "level", "role", "specialities", "backup_id",
    "exercise",
)  # fmt: skip
HOUSEHOLD_COLUMNS = ("id", "ref", "village_code", "address", "head_name", "phones", "exercise")
SPECIAL_COLUMNS = (
    "ref", "household_id", "village_code", "name", "category", "address", "phone", "helper_id",
    "exercise",
)  # fmt: skip
FACILITY_COLUMNS = (
    "ref", "village_code", "name", "kind", "address", "contact_name", "contact_phone", "exercise",
)  # fmt: skip
VILLAGE_COLUMNS = (
    "code", "name", "level", "parent_code", "lat", "lon", "blind_spot", "remote", "mountain",
    "flood_storage", "low_lying", "geo_hazard",
)  # fmt: skip


def _county_roles(county: Division) -> list[tuple[str, list[str]]]:
    if county.name.endswith("区"):
        head = "分管副区长"
    elif county.name.endswith("市"):
        head = "分管副市长"
    elif county.name.endswith("县"):
        head = "分管副县长"
    else:
        head = "管委会分管副主任"
    roles = [
        (head, ["all"]),
        ("应急管理局局长", ["flood", "earthquake"]),
        ("水务局局长", ["flood"]),
    ]
    if county.code[:6] in MOUNTAIN_COUNTIES:
        roles += [("自然资源局局长", ["geological"]), ("林业局局长", ["forest_fire"])]
    return roles


def _town_roles(town: Division) -> list[tuple[str, list[str]]]:
    if town.name.endswith("街道"):
        head, deputy = "街道办事处主任", "街道分管副主任"
    elif town.name.endswith("乡"):
        head, deputy = "乡长", "分管副乡长"
    elif town.name.endswith("镇"):
        head, deputy = "镇长", "分管副镇长"
    else:
        head, deputy = "主任", "分管副主任"
    fifth = (
        ("林业站站长", ["forest_fire"])
        if town.code[:6] in MOUNTAIN_COUNTIES
        else ("水利站站长", ["flood"])
    )
    return [
        (head, ["all"]),
        (deputy, ["flood"]),
        ("应急管理办公室主任", ["all"]),
        ("自然资源所所长", ["geological"]),
        fifth,
    ]


_CITY_ROLES = (
    ("市应急管理局局长", ["all"]),
    ("市防汛抗旱指挥部办公室主任", ["flood"]),
    ("市地震监测中心主任", ["earthquake"]),
)
_TOWN_BACKUP_ROLE = 2  # the town's emergency office backs up a village with a single responder


@dataclass
class Plan:
    """Everything decided before streaming: villages with their counts, responders, facilities."""

    seed: int
    villages: list[Village]
    responders: list[Responder]
    facilities: list[tuple[object, ...]]
    households: int
    special_persons: int

    def renumber_responders(self, first_id: int) -> None:
        """Move responder ids (planned from 1) to the block reserved in the database."""
        shift = first_id - 1
        if not shift:
            return
        self.responders = [
            dataclasses.replace(
                r, id=r.id + shift, backup_id=None if r.backup_id is None else r.backup_id + shift
            )
            for r in self.responders
        ]
        for v in self.villages:
            v.responder_ids = [i + shift for i in v.responder_ids]


def _responder_posts(
    seed: int, villages: list[Village], county_codes: list[str]
) -> list[tuple[str, str, str, str, list[str]]]:
    """(ref, division code, level, role, specialities) of every responder, in a stable order."""
    posts: list[tuple[str, str, str, str, list[str]]] = []
    division_names = {d.code: d for d in (*county_divisions(), *towns())}

    def add(code: str, level: str, roles: Sequence[tuple[str, list[str]]]) -> None:
        for n, (role, specialities) in enumerate(roles, start=1):
            posts.append((f"R{code}-{n:02d}", code, level, role, specialities))

    add("370800000000", "city", _CITY_ROLES)
    by_town: dict[str, list[Village]] = {}
    for v in villages:
        by_town.setdefault(v.town.code, []).append(v)
    for county in county_codes:
        add(pad(county), "county", _county_roles(division_names[pad(county)]))
        for town in (t for t in towns() if t.code.startswith(county) and t.code in by_town):
            add(town.code, "town", _town_roles(town))
            for v in by_town[town.code]:
                rng = random.Random(_key(seed, v.code, "responders"))
                roles = [("社区党组织书记" if v.community else "村党支部书记", ["all"])]
                if rng.random() < 0.55:
                    roles.append(("网格员" if v.community else "灾害信息员", ["all"]))
                add(v.code, "village", roles)
    return posts


def _backup_ref(ref: str, code: str, level: str, peers: list[str]) -> str | None:
    if len(peers) > 1:
        # B角 at the same division: each responder is backed by the next one, in a ring.
        return peers[(peers.index(ref) + 1) % len(peers)]
    if level == "village":
        return f"R{code[:9]}000-{_TOWN_BACKUP_ROLE + 1:02d}"
    return None


def _plan_responders(
    seed: int, villages: list[Village], county_codes: list[str], first_id: int
) -> list[Responder]:
    """Responders at every level, ids from ``first_id``; fills ``Village.responder_ids``."""
    posts = _responder_posts(seed, villages, county_codes)
    exercise_chain: set[str] = set()
    for v in villages:
        if v.exercise:
            exercise_chain |= {v.code, v.town.code, pad(v.county)}
    ids = {post[0]: first_id + i for i, post in enumerate(posts)}
    at_division: dict[str, list[str]] = {}
    for ref, code, *_rest in posts:
        at_division.setdefault(code, []).append(ref)
    village_by_code = {v.code: v for v in villages}
    responders = []
    for index, (ref, code, level, role, specialities) in enumerate(posts):
        backup = _backup_ref(ref, code, level, at_division[code])
        rng = random.Random(_key(seed, ref, "person"))
        responders.append(
            Responder(
                id=ids[ref],
                ref=ref,
                name=_name(rng, code[:6] if level != "city" else "370811"),
                phone=phone_for(_PHONE_BASE["responder"] + index, seed),
                division_code=code,
                level=level,
                role=role,
                specialities=specialities,
                backup_id=ids[backup] if backup else None,
                exercise=code in exercise_chain,
            )
        )
        if level == "village":
            village_by_code[code].responder_ids.append(ids[ref])
    return responders


def _plan_facilities(seed: int, villages: list[Village]) -> list[tuple[object, ...]]:
    """Schools, kindergartens, care homes, welfare institutions and hospitals with contacts."""
    facilities: list[tuple[object, ...]] = []
    sequence: dict[str, int] = {}

    def add(v: Village, name: str, kind: str, rng: random.Random) -> None:
        sequence[v.code] = sequence.get(v.code, 0) + 1
        index = len(facilities)
        facilities.append(
            (
                f"F{v.code}-{sequence[v.code]:02d}",
                v.code,
                name,
                kind,
                f"{v.town.name}{v.name}",
                _name(rng, v.county),
                phone_for(_PHONE_BASE["facility"] + index, seed),
                v.exercise,
            )
        )

    by_town: dict[str, list[Village]] = {}
    for v in villages:
        by_town.setdefault(v.town.code, []).append(v)
    seats: dict[str, Village] = {}
    for town_code, town_villages in by_town.items():
        seats.setdefault(town_code[:6], town_villages[0])
    county_names = {d.code[:6]: d.name for d in county_divisions()}
    for county, seat in seats.items():
        rng = random.Random(_key(seed, county, "county-facilities"))
        short = county_names[county]
        for name, kind in (
            (f"{short}人民医院", "hospital"),
            (f"{short}中医院", "hospital"),
            (f"{short}妇幼保健院", "hospital"),
            (f"{short}儿童福利院", "child_welfare"),
            (f"{short}未成年人救助保护中心", "minors_protection"),
            (f"{short}社会福利中心", "elderly_care"),
            (f"{short}第一中学", "school"),
        ):
            add(seat, name, kind, rng)
    for town_code, town_villages in by_town.items():
        town = town_villages[0].town
        short = town.name.removesuffix("街道").removesuffix("镇").removesuffix("乡")
        rng = random.Random(_key(seed, town_code, "facilities"))
        seat = town_villages[0]
        urban = _is_urban(town)
        add(seat, f"{short}初级中学", "school", rng)
        add(seat, f"{short}中心小学", "school", rng)
        add(seat, f"{short}中心幼儿园", "kindergarten", rng)
        add(seat, f"{short}社区卫生服务中心" if urban else f"{short}卫生院", "hospital", rng)
        add(seat, f"{short}养老服务中心" if urban else f"{short}敬老院", "elderly_care", rng)
        for v in town_villages:
            stem = v.name.removesuffix("村").removesuffix("社区")
            if rng.random() < (0.30 if v.community else 0.20):
                add(v, f"{stem}小学", "school", rng)
            if rng.random() < (0.50 if v.community else 0.30):
                add(v, f"{stem}幼儿园", "kindergarten", rng)
            if rng.random() < (0.08 if v.community else 0.02):
                add(v, f"{stem}日间照料中心", "elderly_care", rng)
    return facilities


def _special_count(v: Village) -> int:
    # Mountain and remote villages keep more of their old people: the young have left for work.
    rate = SPECIAL_RATE * (1.3 if v.mountain or v.remote else 1.0) * (0.8 if v.community else 1.0)
    jitter = random.Random(v.key ^ 0x5EC1A1).random()
    return min(v.households, int(v.households * rate + jitter))


def plan(
    *, households: int | None = None, county_codes: Sequence[str] | None = None, seed: int = 1
) -> Plan:
    """Decide villages, counts, responders and facilities (ids of responders from 1)."""
    selected = sorted(set(county_codes)) if county_codes else sorted(COUNTY_CIRCLES)
    if households is None:
        # The city's 2.9 million shared over all villages, so a village has the same households
        # whichever counties are generated.
        all_villages = [v for town in towns() for v in _plan_town(seed, town)]
        counts = _share(CITY_HOUSEHOLDS, [v.weight for v in all_villages])
        villages = [v for v in all_villages if v.county in selected]
        by_code = {v.code: n for v, n in zip(all_villages, counts, strict=True)}
        counts = [by_code[v.code] for v in villages]
    else:
        # Each town's villages depend on the seed and the town alone: plan only those needed.
        villages = [
            v for town in towns() if town.code[:6] in selected for v in _plan_town(seed, town)
        ]
        counts = _share(households, [v.weight for v in villages])
    ordinal = 0
    for v, count in zip(villages, counts, strict=True):
        v.households, v.first_household = count, ordinal
        ordinal += count
    total = ordinal
    for county in selected:
        rng = random.Random(_key(seed, county, "exercise"))
        candidates = [v for v in villages if v.county == county and not v.community]
        if candidates:
            rng.choice(candidates).exercise = True
    responders = _plan_responders(seed, villages, selected, first_id=1)
    facilities = _plan_facilities(seed, villages)
    return Plan(
        seed=seed,
        villages=villages,
        responders=responders,
        facilities=facilities,
        households=total,
        special_persons=sum(_special_count(v) for v in villages),
    )


# ---------------------------------------------------------------------------------------------
# Streamed rows: households and special persons, a pure function of (seed, village, index).
# ---------------------------------------------------------------------------------------------


def _address(v: Village, index: int) -> str:
    if v.community:
        building, rest = divmod(index, 24)
        unit, rest = divmod(rest, 8)
        floor, door = divmod(rest, 2)
        return f"{v.name}{building + 1}号楼{unit + 1}单元{floor + 1}0{door + 1}室"
    group, number = divmod(index, 30)
    return f"{v.name}{group + 1}组{number + 1}号"


def _household(v: Village, index: int, seed: int) -> tuple[str, list[str]]:
    """Head's name and phones of household ``index`` (0-based) of village ``v``."""
    bits = _mix(v.key + index)
    head = _SURNAME_TABLES[v.county][bits & 0x3FF] + _GIVEN[(bits >> _SURNAME_TABLE_BITS) & 0x3FF]
    ordinal = 2 * (v.first_household + index)
    phones = [phone_for(ordinal, seed)]
    if (bits >> 20) & 0xFF < 102:  # about 40 % of households register a second number
        phones.append(phone_for(ordinal + 1, seed))
    return head, phones


def _household_records(
    the_plan: Plan, first_id: int, progress: Progress | None
) -> Iterator[tuple[object, ...]]:
    seed, done, step = the_plan.seed, 0, 50_000
    for v in the_plan.villages:
        code, exercise, first = v.code, v.exercise, first_id + v.first_household
        for i in range(v.households):
            head, phones = _household(v, i, seed)
            yield (first + i, f"H{code}-{i + 1:04d}", code, _address(v, i), head, phones, exercise)
        done += v.households
        if progress and (done // step != (done - v.households) // step):
            progress("households", done, the_plan.households)
    if progress:
        progress("households", done, the_plan.households)


def _special_records(
    the_plan: Plan, first_household_id: int, progress: Progress | None
) -> Iterator[tuple[object, ...]]:
    categories = [c for c, _ in SPECIAL_CATEGORIES]
    weights = [w for _, w in SPECIAL_CATEGORIES]
    seed, done = the_plan.seed, 0
    for v in the_plan.villages:
        count = _special_count(v)
        if not count or not v.responder_ids:
            continue
        rng = random.Random(_key(seed, v.code, "special"))
        chosen = sorted(rng.sample(range(v.households), count))
        for n, index in enumerate(chosen, start=1):
            head, phones = _household(v, index, seed)
            category = rng.choices(categories, weights)[0]
            if category == "elderly_alone":
                name, phone = head, phones[0] if rng.random() < 0.7 else None
            elif category == "pregnant":
                name = _name(rng, v.county)
                phone = phone_for(_PHONE_BASE["special"] + v.first_household + index, seed)
            else:
                # A family member: the head's surname, reached through the household's phone.
                name = head[0] + rng.choice(_GIVEN)
                phone = phones[-1]
            yield (
                f"S{v.code}-{n:04d}",
                first_household_id + v.first_household + index,
                v.code,
                name,
                category,
                _address(v, index),
                phone,
                rng.choice(v.responder_ids),
                v.exercise,
            )
        done += count
        if progress:
            progress("special_persons", done, the_plan.special_persons)


# ---------------------------------------------------------------------------------------------
# Writing it.
# ---------------------------------------------------------------------------------------------


class RosterExistsError(InputError):
    """The database already has a roster; generating one would mix synthetic and real people."""

    def __init__(self, counts: dict[str, int]) -> None:
        described = "、".join(f"{_TABLE_ZH[t]} {n}" for t, n in counts.items() if n)
        super().__init__(
            f"数据库中已有名册（{described}），未生成；如需替换请加 --replace（将清空现有名册）。"
            " (The database already has a roster: replace it with --replace / replace=True.)",
            code="roster_exists",
        )
        self.counts = counts


_TABLE_ZH = {
    "responders": "责任人",
    "households": "住户",
    "special_persons": "重点人员",
    "facilities": "重点场所",
}


@dataclass(frozen=True)
class GenerateSummary:
    """What ``generate`` wrote."""

    seed: int
    counties: tuple[str, ...]
    villages: int
    responders: int
    households: int
    special_persons: int
    facilities: int
    exercise_villages: int
    seconds: float

    def counts(self) -> dict[str, int]:
        return {
            "villages": self.villages,
            "responders": self.responders,
            "households": self.households,
            "special_persons": self.special_persons,
            "facilities": self.facilities,
        }


async def roster_counts(conn: Conn) -> dict[str, int]:
    """Rows in each roster table."""
    row = await conn.fetchrow(sql("roster_counts"))
    assert row is not None  # a SELECT without FROM returns one row
    return {table: int(count) for table, count in row.items()}


async def _reserve_ids(conn: Conn, table: str, count: int) -> int:
    """Take ``count`` ids from ``table``'s sequence in one block; return the first."""
    sequence = await conn.fetchval(sql("serial_sequence"), table)
    first = int(await conn.fetchval(sql("next_serial"), sequence))
    if count > 1:
        await conn.execute(sql("end_serial_block"), sequence, first + count - 1)
    return first


def _normalise_counties(codes: Sequence[str] | None) -> list[str] | None:
    if not codes:
        return None
    known = {d.code[:6]: d.name for d in county_divisions()}
    result = []
    for raw in codes:
        code = raw.strip()
        short = code[:6] if len(code) == 12 and code.endswith("000000") else code
        if short not in known:
            listing = "、".join(f"{c} {n}" for c, n in known.items())
            raise InputError(f"未知的县级区划代码 {raw!r}；济宁市的县级代码为：{listing}")
        result.append(short)
    return result


async def generate(
    conn: Conn,
    *,
    households: int | None = None,
    counties: list[str] | None = None,
    seed: int = 1,
    replace: bool = False,
    progress: Progress | None = None,
) -> GenerateSummary:
    """Generate a synthetic roster for the whole city or the given counties (6-digit codes).

    Refuses with :class:`RosterExistsError` when the database already holds people, unless
    ``replace`` is given: then the roster tables are emptied first, and villages that the new
    roster does not contain are removed (those a warning still points at are kept). Runs in one
    transaction: it either writes the whole roster or nothing.
    """
    started = time.monotonic()
    if households is not None and not 0 <= households <= MAX_HOUSEHOLDS:
        raise InputError(f"住户数须在 0 到 {MAX_HOUSEHOLDS} 之间 (households out of range)")
    selected = _normalise_counties(counties)
    the_plan = plan(households=households, county_codes=selected, seed=seed)

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, done, total)

    async with conn.transaction():
        await conn.execute(sql("lock_roster"))
        await conn.execute("SELECT pg_notify($1, '')", ROSTER_CHANNEL)  # at commit
        existing = await roster_counts(conn)
        if any(existing.values()):
            if not replace:
                raise RosterExistsError(existing)
            await _truncate(conn)
        report("divisions", 0, 1)
        await load_divisions(conn)
        report("divisions", 1, 1)
        await _write_villages(conn, the_plan, replace=replace)
        report("villages", len(the_plan.villages), len(the_plan.villages))

        the_plan.renumber_responders(
            await _reserve_ids(conn, "responders", len(the_plan.responders))
        )
        records = [r.record() for r in the_plan.responders]
        await conn.copy_records_to_table("responders", records=records, columns=RESPONDER_COLUMNS)
        report("responders", len(records), len(records))

        first_household = await _reserve_ids(conn, "households", the_plan.households)
        report("households", 0, the_plan.households)
        await conn.copy_records_to_table(
            "households",
            records=_household_records(the_plan, first_household, progress),
            columns=HOUSEHOLD_COLUMNS,
        )
        report("special_persons", 0, the_plan.special_persons)
        await conn.copy_records_to_table(
            "special_persons",
            records=_special_records(the_plan, first_household, progress),
            columns=SPECIAL_COLUMNS,
        )
        await conn.copy_records_to_table(
            "facilities", records=the_plan.facilities, columns=FACILITY_COLUMNS
        )
        report("facilities", len(the_plan.facilities), len(the_plan.facilities))

    return GenerateSummary(
        seed=seed,
        counties=tuple(selected or sorted(COUNTY_CIRCLES)),
        villages=len(the_plan.villages),
        responders=len(the_plan.responders),
        households=the_plan.households,
        special_persons=the_plan.special_persons,
        facilities=len(the_plan.facilities),
        exercise_villages=sum(v.exercise for v in the_plan.villages),
        seconds=time.monotonic() - started,
    )


async def _truncate(conn: Conn) -> None:
    import asyncpg

    try:
        await conn.execute(sql("empty_roster"))
    except (asyncpg.FeatureNotSupportedError, asyncpg.ForeignKeyViolationError) as exc:
        # Another table (call-outs, field tasks …) points at the roster: its history must not be
        # wiped as a side effect of regenerating demo data.
        raise InputError(
            f"名册被其他记录引用，无法替换：{exc.detail or exc}. The roster is referenced by "
            "other records (call-outs, tasks …) and cannot be replaced.",
            code="roster_referenced",
        ) from exc


async def _write_villages(conn: Conn, the_plan: Plan, *, replace: bool) -> None:
    await conn.execute(sql("create_new_villages"))
    await conn.copy_records_to_table(
        "roster_new_villages",
        records=[
            (
                v.code,
                v.name,
                "village",
                v.town.code,
                v.lat,
                v.lon,
                v.blind_spot,
                v.remote,
                v.mountain,
                v.flood_storage,
                v.low_lying,
                v.geo_hazard,
            )
            for v in the_plan.villages
        ],
        columns=VILLAGE_COLUMNS,
    )
    await conn.execute(sql("upsert_new_villages"))
    if replace:
        await conn.execute(sql("delete_stale_villages"))
