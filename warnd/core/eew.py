"""Earthquake early warning (EEW, DOMAIN §3): from a seismic report to who is warned, at which
level, with how many seconds left, and what they are told.

Pure and vectorised: the villages are held in numpy arrays (``VillageArrays``) and every
per-village quantity (distance, intensity, countdown, level) is computed for all of them in a
few array operations, because each millisecond spent here is warning time taken from people.
Time is a parameter (``now``); nothing here reads a clock, a database or a socket.

The model (community practice, not a national standard):

- hypocentral distance R = sqrt(d² + depth²), d the haversine epicentral distance in km;
- estimated intensity I = a + b·M − c·log10(R)  (defaults 0.92, 1.63, 3.49);
- S-wave arrival = origin + R / Vs; countdown = R / Vs − (now − origin)  (Vs default 3.5 km/s);
- blind zone: countdown ≤ 0 (the shaking has arrived, or arrives as the message does);
- level by the integer degree shown to people: red ≥ VII, orange ≥ V, yellow ≥ III, else none;
- a public alert only for M ≥ min_magnitude (4.0 in this city's plan), never for a cancel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from warnd.core.texts import text_length
from warnd.core.vocabulary import EXERCISE_MARK, Level

EewStatus = Literal["Actual", "Exercise", "Test"]
EEW_STATUSES: Final[tuple[EewStatus, ...]] = ("Actual", "Exercise", "Test")

# The sphere the roster's circle search uses (warnd.core.geometry): one earth for every stage.
EARTH_RADIUS_KM: Final = 6371.0
# log10(R) is -inf at R = 0 and grows without bound below 1 km: a village whose recorded point
# coincides with a shallow epicentre would get an infinite (or absurd) intensity. The formula is
# fitted on distances of kilometres anyway, and depth alone keeps R ≥ depth for any real event;
# the floor only matters for depth 0 at the epicentre itself.
MIN_DISTANCE_KM: Final = 1.0
MIN_DEGREE: Final = 1
MAX_DEGREE: Final = 12  # the Chinese seismic intensity scale runs I … XII
TEST_MARK: Final = "【测试】"
SMS_CHARS: Final = 70  # one UCS-2 SMS part: an early warning must never be split
STRONG_DEGREE: Final = 5  # from this degree texts say 强烈震感 and 请立即避险

# Level codes in the arrays: 0 is "not alerted", higher is more severe; comparisons between
# reports of one event are then plain integer comparisons.
NONE: Final = 0
LEVEL_CODES: Final[dict[Level, int]] = {Level.YELLOW: 1, Level.ORANGE: 2, Level.RED: 3}
CODE_LEVELS: Final[dict[int, Level]] = {code: level for level, code in LEVEL_CODES.items()}


@dataclass(frozen=True)
class EewReport:
    """One report of the seismic service about one event; reports 1, 2, 3… update the first."""

    event_id: str
    report_no: int
    origin_time: datetime  # aware
    lat: float
    lon: float
    depth_km: float
    magnitude: float
    place: str  # the epicentre's name, e.g. 济宁市微山县
    final: bool = False  # the service will send no further report for this event
    cancel: bool = False  # the event is withdrawn (a false alarm, 误报)
    status: EewStatus = "Actual"

    def __post_init__(self) -> None:
        if self.origin_time.tzinfo is None or self.origin_time.utcoffset() is None:
            raise ValueError("origin_time must be an aware datetime")

    @property
    def reaches_people(self) -> bool:
        """Test reports are recorded and previewed, never sent to a person."""
        return self.status in ("Actual", "Exercise")


@dataclass(frozen=True)
class EewParameters:
    """The policy's numbers (``[earthquake_early_warning]``), as plain data for the model."""

    a: float = 0.92
    b: float = 1.63
    c: float = 3.49
    s_wave_km_s: float = 3.5
    min_magnitude: float = 4.0
    red: float = 7.0  # lowest degree of each level
    orange: float = 5.0
    yellow: float = 3.0
    grace_s: float = 30.0  # a message still useful this long after the S-wave arrived

    def __post_init__(self) -> None:
        if not self.s_wave_km_s > 0:
            raise ValueError("s_wave_km_s must be greater than 0")
        if not self.red > self.orange > self.yellow:
            raise ValueError("level degrees must rise: yellow < orange < red")
        if self.grace_s < 0:
            raise ValueError("grace_s must not be negative")

    def public(self, report: EewReport) -> bool:
        """Whether the report warrants a public alert at all (before any distance)."""
        return not report.cancel and report.magnitude >= self.min_magnitude

    def level_codes(self, degree: NDArray[np.int8]) -> NDArray[np.int8]:
        """The level code of each integer degree."""
        codes = np.zeros(degree.shape, dtype=np.int8)
        codes[degree >= self.yellow] = LEVEL_CODES[Level.YELLOW]
        codes[degree >= self.orange] = LEVEL_CODES[Level.ORANGE]
        codes[degree >= self.red] = LEVEL_CODES[Level.RED]
        return codes


def degree_of(intensity: NDArray[np.float64] | float) -> NDArray[np.int8]:
    """The integer degree people are told: round half up (6.5 → 7, 6.49 → 6), clamped to I–XII.

    Half up, as people round, rather than numpy's half-to-even (which makes 2.5 → 2 but
    3.5 → 4). The level is decided on this same degree, so the level of a message and the
    degree it names always agree.
    """
    return np.clip(
        np.floor(np.asarray(intensity, dtype=np.float64) + 0.5), MIN_DEGREE, MAX_DEGREE
    ).astype(np.int8)


@dataclass(frozen=True, eq=False)
class VillageArrays:
    """Every village with coordinates, as aligned arrays ready for ``assess``.

    Built once (one query of ``divisions``) and reused for every report: the per-report work is
    then arithmetic on these arrays only.
    """

    codes: NDArray[np.str_]
    names: NDArray[np.str_]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    county_codes: NDArray[np.str_]
    # Derived once: the haversine needs radians and cos(lat) of every village.
    _lat_rad: NDArray[np.float64] = field(init=False, repr=False)
    _lon_rad: NDArray[np.float64] = field(init=False, repr=False)
    _cos_lat: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.codes)
        if not all(len(a) == n for a in (self.names, self.lat, self.lon, self.county_codes)):
            raise ValueError("village arrays must all have the same length")
        lat_rad = np.radians(self.lat)
        object.__setattr__(self, "_lat_rad", lat_rad)
        object.__setattr__(self, "_lon_rad", np.radians(self.lon))
        object.__setattr__(self, "_cos_lat", np.cos(lat_rad))

    @classmethod
    def build(
        cls,
        rows: Iterable[tuple[str, str, float, float]],
        county_codes: Sequence[str] | None = None,
    ) -> VillageArrays:
        """From (code, name, lat, lon) rows; a village's county is its 12-digit code's first six
        digits padded with zeros, unless ``county_codes`` says otherwise."""
        listed = list(rows)
        codes = np.array([r[0] for r in listed], dtype=np.str_)
        counties = (
            np.array(list(county_codes), dtype=np.str_)
            if county_codes is not None
            else np.array([r[0][:6].ljust(12, "0") for r in listed], dtype=np.str_)
        )
        return cls(
            codes=codes,
            names=np.array([r[1] for r in listed], dtype=np.str_),
            lat=np.array([r[2] for r in listed], dtype=np.float64),
            lon=np.array([r[3] for r in listed], dtype=np.float64),
            county_codes=counties,
        )

    def __len__(self) -> int:
        return len(self.codes)

    def epicentral_km(self, lat: float, lon: float) -> NDArray[np.float64]:
        """Great-circle distance of every village from a point, in km (haversine)."""
        lat0 = math.radians(lat)
        half_dlat = (self._lat_rad - lat0) / 2
        half_dlon = (self._lon_rad - math.radians(lon)) / 2
        h = np.sin(half_dlat) ** 2 + math.cos(lat0) * self._cos_lat * np.sin(half_dlon) ** 2
        # Rounding can push h a hair above 1 for antipodal points; arcsin would then be NaN.
        distance: NDArray[np.float64] = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
        return distance


@dataclass(frozen=True)
class AlertedVillage:
    """One alerted village, as a preview or a log shows it."""

    code: str
    name: str
    county_code: str
    distance_km: float  # hypocentral
    intensity: float
    degree: int
    level: Level | None  # None: not alerted
    countdown_s: float
    blind: bool
    arrival: datetime
    expires_at: datetime


@dataclass(frozen=True, eq=False)
class EewAssessment:
    """What one report means for every village at ``now``.

    The arrays are aligned with ``villages`` (index i is village i); ``order`` holds the indices
    of the alerted villages, highest intensity first, then nearest. Nothing is alerted when the
    report is below the public threshold or a cancel.
    """

    report: EewReport
    now: datetime
    parameters: EewParameters
    villages: VillageArrays
    distance_km: NDArray[np.float64]  # hypocentral R, ≥ MIN_DISTANCE_KM
    intensity: NDArray[np.float64]
    degree: NDArray[np.int8]
    levels: NDArray[np.int8]  # level code per village (0: not alerted)
    arrival_s: NDArray[np.float64]  # S-wave arrival, seconds after origin
    countdown_s: NDArray[np.float64]  # seconds from now to the arrival (≤ 0: blind zone)
    order: NDArray[np.intp]

    @property
    def public(self) -> bool:
        return self.parameters.public(self.report)

    @property
    def blind(self) -> NDArray[np.bool_]:
        """Per village: the shaking is already there (countdown ≤ 0)."""
        return self.countdown_s <= 0

    def counts(self) -> dict[Level, int]:
        """Alerted villages per level, red first; every level present, zero or not."""
        found = np.bincount(self.levels[self.order], minlength=len(LEVEL_CODES) + 1)
        return {CODE_LEVELS[c]: int(found[c]) for c in sorted(CODE_LEVELS, reverse=True)}

    @property
    def alerted_count(self) -> int:
        return len(self.order)

    @property
    def blind_zone_count(self) -> int:
        """Alerted villages in the blind zone (they are told 地震已发生，立即避险)."""
        return int(np.count_nonzero(self.countdown_s[self.order] <= 0))

    def countdown_range(self) -> tuple[float, float] | None:
        """The shortest and longest countdown among alerted villages, in seconds."""
        if not len(self.order):
            return None
        shown = self.countdown_s[self.order]
        return float(shown.min()), float(shown.max())

    def arrival(self, index: int) -> datetime:
        """When the S-wave reaches village ``index``."""
        return self.report.origin_time + timedelta(seconds=float(self.arrival_s[index]))

    @property
    def expires_s(self) -> NDArray[np.float64]:
        """Per village: when a message to it is no longer worth sending, seconds after origin
        (its S-wave arrival plus the grace)."""
        return self.arrival_s + self.parameters.grace_s

    def expires_at(self, index: int) -> datetime:
        """After this a message to village ``index`` is no use: arrival + grace."""
        return self.arrival(index) + timedelta(seconds=self.parameters.grace_s)

    def latest_expiry(self) -> datetime | None:
        """The expiry of the last alerted village's message: the event's alerts end then."""
        if not len(self.order):
            return None
        last = float(self.arrival_s[self.order].max()) + self.parameters.grace_s
        return self.report.origin_time + timedelta(seconds=last)

    def village(self, index: int) -> AlertedVillage:
        v = self.villages
        return AlertedVillage(
            code=str(v.codes[index]),
            name=str(v.names[index]),
            county_code=str(v.county_codes[index]),
            distance_km=float(self.distance_km[index]),
            intensity=float(self.intensity[index]),
            degree=int(self.degree[index]),
            level=CODE_LEVELS.get(int(self.levels[index])),
            countdown_s=float(self.countdown_s[index]),
            blind=bool(self.countdown_s[index] <= 0),
            arrival=self.arrival(index),
            expires_at=self.expires_at(index),
        )

    def alerted(self) -> list[AlertedVillage]:
        """The alerted villages in order (a Python object each: for previews, not the fast path)."""
        return [self.village(int(i)) for i in self.order]


def assess(
    report: EewReport, villages: VillageArrays, parameters: EewParameters, now: datetime
) -> EewAssessment:
    """Distance, intensity, countdown and level of every village for ``report`` at ``now``."""
    epicentral = villages.epicentral_km(report.lat, report.lon)
    distance = np.maximum(np.hypot(epicentral, report.depth_km), MIN_DISTANCE_KM)
    p = parameters
    intensity = p.a + p.b * report.magnitude - p.c * np.log10(distance)
    degree = degree_of(intensity)
    silent = np.zeros(len(villages), dtype=np.int8)
    levels = p.level_codes(degree) if p.public(report) else silent
    arrival = distance / p.s_wave_km_s
    elapsed = (now - report.origin_time).total_seconds()
    countdown = arrival - elapsed
    alerted = np.flatnonzero(levels)
    # lexsort sorts by the last key first: intensity descending, then distance ascending; the
    # sort is stable, so equal villages keep the roster's order and the result is repeatable.
    order = alerted[np.lexsort((distance[alerted], -intensity[alerted]))]
    return EewAssessment(
        report=report,
        now=now,
        parameters=p,
        villages=villages,
        distance_km=distance,
        intensity=intensity,
        degree=degree,
        levels=levels,
        arrival_s=arrival,
        countdown_s=countdown,
        order=order,
    )


# --- updates of one event ----------------------------------------------------------------------


@dataclass(frozen=True)
class EewDecision:
    """What to do about one report of an event that may have been alerted already.

    ``rise``: villages (indices, in the report's order) that get a new alert because their level
    went up (or they had none). ``cancel``: villages already reached, which get the 解除/误报
    notice (the villages this state alerted; who was actually reached is the dispatch record's).
    ``stale``: the report is not newer than one already applied (a late copy, out of order, or
    after the cancel) and changes nothing.
    """

    rise: NDArray[np.intp]
    cancel: NDArray[np.intp]
    stale: bool = False


@dataclass(frozen=True, eq=False)
class EventAlerts:
    """The highest level each village has been alerted at for one event, and the last report
    applied: what decides whether a later report alerts a village again."""

    event_id: str
    levels: NDArray[np.int8]  # aligned with the VillageArrays the event is assessed on
    last_report_no: int = 0
    cancelled: bool = False

    @classmethod
    def start(cls, event_id: str, villages: VillageArrays) -> EventAlerts:
        return cls(event_id, np.zeros(len(villages), dtype=np.int8))

    def apply(self, assessment: EewAssessment) -> tuple[EventAlerts, EewDecision]:
        """The decision for ``assessment``'s report and the state after it.

        A village is alerted again only when its level rises: a report that lowers the estimate
        sends nothing (a second message that sounds milder would confuse more than it helps,
        and the shaking is seconds away). A cancel reaches everyone alerted so far, once.
        """
        report = assessment.report
        if report.event_id != self.event_id:
            raise ValueError(f"report of event {report.event_id!r} applied to {self.event_id!r}")
        empty = np.empty(0, dtype=np.intp)
        if self.cancelled or report.report_no <= self.last_report_no:
            return self, EewDecision(empty, empty, stale=True)
        if report.cancel:
            reached = np.flatnonzero(self.levels)
            after = EventAlerts(self.event_id, self.levels, report.report_no, cancelled=True)
            return after, EewDecision(empty, reached)
        rise = rising(self.levels, assessment.levels)
        rise_in_order = assessment.order[rise[assessment.order]]
        levels = np.maximum(self.levels, assessment.levels)
        return EventAlerts(self.event_id, levels, report.report_no), EewDecision(
            rise_in_order, empty
        )


def rising(previous: NDArray[np.int8], current: NDArray[np.int8]) -> NDArray[np.bool_]:
    """Per village: the new level is higher than any it was alerted at (0 = none)."""
    return current > previous


# --- texts -------------------------------------------------------------------------------------


def _prefix(report: EewReport, signature: str, kind: str) -> str:
    mark = {"Exercise": EXERCISE_MARK, "Test": TEST_MARK}.get(report.status, "")
    # The signature opens an SMS (operators require it); a voice or loudspeaker text has none.
    return (signature if kind == "sms" else "") + mark


def _fit(build: str, place: str, limit: int | None) -> str:
    """``build`` with ``{place}`` filled in, the place cut (…) until the text fits ``limit``."""
    # replace, not format: a place name is feed input and may hold braces.
    text = build.replace("{place}", place)
    if limit is None or text_length(text) <= limit:
        return text
    shown = place
    while shown and text_length(build.replace("{place}", shown + "…")) > limit:
        shown = shown[:-1]
    return build.replace("{place}", shown + "…" if shown else "")


def magnitude_text(magnitude: float) -> str:
    """M as people read it: one decimal (5.5级)."""
    return f"{magnitude:.1f}"


def warning_text(
    report: EewReport,
    degree: int,
    countdown_s: float,
    *,
    signature: str,
    kind: str = "sms",
    max_chars: int | None = SMS_CHARS,
) -> str:
    """The text for one village: the seconds left and the degree, or, in the blind zone,
    地震已发生，立即避险.

    The seconds are rounded down: a warning must never promise more time than there is. Texts
    are short enough for one SMS part (70 UCS-2 characters); a long place name is cut first.
    """
    prefix = _prefix(report, signature, kind)
    m = magnitude_text(report.magnitude)
    seconds = math.floor(countdown_s)
    if seconds <= 0:
        build = prefix + "地震已发生，立即避险！{place}" + f"{m}级地震，本地烈度约{degree}度"
    else:
        # From V on, objects fall and people are hurt: take cover now. III–IV is felt but does
        # little harm, where a command to flee causes the injuries (stairs, windows).
        felt, act = (
            ("强烈震感", "请立即避险") if degree >= STRONG_DEGREE else ("震感", "请注意避险")
        )
        build = (
            prefix
            + "地震预警：{place}"
            + f"发生{m}级地震，预计{seconds}秒后有{felt}（烈度{degree}度），{act}"
        )
    return _fit(build, report.place, max_chars)


def cancel_text(
    report: EewReport, *, signature: str, kind: str = "sms", max_chars: int | None = SMS_CHARS
) -> str:
    """The notice to everyone an event reached when the service cancels it (解除/误报)."""
    build = (
        _prefix(report, signature, kind)
        + "解除通知：{place}"
        + f"{magnitude_text(report.magnitude)}级地震预警已取消（误报），请恢复正常生活"
    )
    return _fit(build, report.place, max_chars)


def village_texts(
    assessment: EewAssessment,
    indices: NDArray[np.intp],
    *,
    signature: str,
    kind: str = "sms",
    max_chars: int | None = SMS_CHARS,
) -> list[str]:
    """The text of each village in ``indices`` (e.g. ``order`` or a decision's ``rise``).

    Villages with the same degree and whole seconds share one text: it is rendered once.
    """
    made: dict[tuple[int, int], str] = {}
    texts = []
    degrees = assessment.degree[indices].tolist()
    seconds = np.floor(assessment.countdown_s[indices]).astype(np.int64).tolist()
    for degree, second in zip(degrees, seconds, strict=True):
        key = (degree, max(second, 0))
        if key not in made:
            made[key] = warning_text(
                assessment.report,
                degree,
                float(key[1]),
                signature=signature,
                kind=kind,
                max_chars=max_chars,
            )
        texts.append(made[key])
    return texts


# --- divisions ---------------------------------------------------------------------------------


def divisions_of(village: str) -> tuple[str, str, str, str]:
    """The village's code and those of its town, county and city (12 digits each)."""
    return village, village[:9] + "000", village[:6] + "000000", village[:4] + "00000000"


def covering_codes(every: Sequence[str], alerted: Sequence[str]) -> list[str]:
    """The fewest division codes that name exactly the ``alerted`` villages of ``every`` village:
    a town whose villages are all alerted by the town's code, a county, the city likewise.

    A warning's area is resolved by a join of its codes with every village (``resolve_codes``):
    the 5,998 village codes of a city-wide earthquake cost 5.6 s there, the city's code
    milliseconds — and the warning then reads "the city", as an officer would write it.
    """
    total: dict[str, int] = {}
    for village in every:
        for division in divisions_of(village)[1:]:
            total[division] = total.get(division, 0) + 1
    hit: dict[str, int] = {}
    for village in alerted:
        for division in divisions_of(village)[1:]:
            hit[division] = hit.get(division, 0) + 1
    codes: list[str] = []
    named: set[str] = set()
    for village in alerted:
        # The widest division (city, county, town) whose every village is alerted, if any.
        wide = divisions_of(village)[:0:-1]
        full = next((d for d in wide if hit[d] == total[d]), None)
        if full is None:
            codes.append(village)
        elif full not in named:
            named.add(full)
            codes.append(full)
    return codes
