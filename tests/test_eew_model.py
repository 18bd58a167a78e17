"""The earthquake early-warning model (warnd.core.eew), against numbers computed by hand.

Villages are placed due north of the epicentre, on its meridian, where the haversine distance is
exactly EARTH_RADIUS_KM × Δlat (radians): a village ``d`` km away sits at lat + degrees(d / 6371).
Depths are chosen so that R = sqrt(d² + depth²) is round (30-40-50 and 60-80-100 triangles).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from warnd.core.eew import (
    EARTH_RADIUS_KM,
    SMS_CHARS,
    EewParameters,
    EewReport,
    EventAlerts,
    VillageArrays,
    assess,
    cancel_text,
    covering_codes,
    degree_of,
    village_texts,
    warning_text,
)
from warnd.core.texts import text_length
from warnd.core.vocabulary import Level

ORIGIN = datetime(2026, 12, 2, 11, 30, tzinfo=UTC)
EPI_LAT, EPI_LON = 35.40, 116.60
SIGNATURE = "【济宁市应急管理局】"
DEFAULTS = EewParameters()


def north(km: float) -> float:
    """The latitude ``km`` due north of the epicentre."""
    return EPI_LAT + math.degrees(km / EARTH_RADIUS_KM)


def villages(*distances: float) -> VillageArrays:
    """Village i is V<i>, ``distances[i]`` km north of the epicentre, in county 37082x."""
    return VillageArrays.build(
        (f"37082{i % 2}001{200 + i:03d}", f"V{i}", north(d), EPI_LON)
        for i, d in enumerate(distances)
    )


def report(magnitude: float = 6.0, depth: float = 40.0, **changes: object) -> EewReport:
    fields: dict[str, object] = {
        "event_id": "EQ20261202113000",
        "report_no": 1,
        "origin_time": ORIGIN,
        "lat": EPI_LAT,
        "lon": EPI_LON,
        "depth_km": depth,
        "magnitude": magnitude,
        "place": "微山县",
    }
    fields.update(changes)
    return EewReport(**fields)  # type: ignore[arg-type]


def codes(found: VillageArrays, indices: np.ndarray) -> list[str]:
    return [str(found.names[i]) for i in indices]


def test_intensity_countdown_and_level_at_hand_computed_distances() -> None:
    # M 6.0, depth 40 km, 5 s after origin
    # I = 0.92 + 1.63·6.0 − 3.49·log10(R) = 10.70 − 3.49·log10(R)
    #   V0: d = 30, R = sqrt(30² + 40²) = 50:   I = 10.70 − 3.49·1.69897 = 4.771 → V (orange)
    #       countdown = 50 / 3.5 − 5 = 14.286 − 5 = 9.286 s
    #   V1: d = 0,  R = 40:                      I = 10.70 − 3.49·1.60206 = 5.109 → V (orange)
    #       countdown = 40 / 3.5 − 5 = 6.429 s
    #   V2: d = 90, R = sqrt(90² + 40²) = 98.49: I = 10.70 − 3.49·1.99339 = 3.743 → IV (yellow)
    #       countdown = 98.489 / 3.5 − 5 = 23.140 s
    #   V3: d = 500, R = 501.6:                  I = 10.70 − 3.49·2.70036 = 1.276 → I (none)
    found = villages(30, 0, 90, 500)
    result = assess(report(6.0, 40.0), found, DEFAULTS, ORIGIN + timedelta(seconds=5))
    assert result.distance_km == pytest.approx(
        [50.0, 40.0, math.hypot(90, 40), math.hypot(500, 40)]
    )
    assert result.intensity[:3] == pytest.approx([4.7706, 5.1088, 3.7431], abs=1e-3)
    assert result.degree.tolist() == [5, 5, 4, 1]
    assert result.countdown_s[:3] == pytest.approx([9.2857, 6.4286, 23.1397], abs=1e-3)
    assert codes(found, result.order) == ["V1", "V0", "V2"]  # highest intensity first
    assert result.counts() == {Level.RED: 0, Level.ORANGE: 2, Level.YELLOW: 1}
    assert result.blind_zone_count == 0
    assert result.countdown_range() == pytest.approx((6.4286, 23.1397), abs=1e-3)
    v0 = result.village(0)
    assert v0.level is Level.ORANGE and v0.degree == 5 and not v0.blind
    # arrival = origin + 50 / 3.5 s; expiry = arrival + the 30 s grace
    assert v0.arrival == ORIGIN + timedelta(seconds=50 / 3.5)
    assert v0.expires_at == ORIGIN + timedelta(seconds=50 / 3.5 + 30)
    assert result.latest_expiry() == ORIGIN + timedelta(seconds=math.hypot(90, 40) / 3.5 + 30)
    assert result.expires_s[0] == pytest.approx(50 / 3.5 + 30)
    assert result.village(3).level is None


def test_the_blind_zone_is_where_the_s_wave_has_arrived() -> None:
    # M 6.0, depth 10, 5 s after origin
    #   V0 at the epicentre: R = 10, I = 10.70 − 3.49 = 7.21 → VII (red); 10 / 3.5 − 5 = −2.143 s
    #   V1: d = 17.32, R = sqrt(300 + 100) = 20: countdown = 20 / 3.5 − 5 = 0.714 s (not blind)
    #   V2: R = 17.4 (d = sqrt(17.4² − 10²) = 14.24): countdown = 17.4 / 3.5 − 5 = −0.029 → blind
    found = villages(0, math.sqrt(300), math.sqrt(17.4**2 - 100))
    result = assess(report(6.0, 10.0), found, DEFAULTS, ORIGIN + timedelta(seconds=5))
    assert result.countdown_s == pytest.approx([-2.1429, 0.7143, -0.0286], abs=1e-3)
    assert result.blind.tolist() == [True, False, True]
    assert result.degree[0] == 7 and result.counts()[Level.RED] == 1
    assert result.blind_zone_count == 2
    assert result.countdown_range() == pytest.approx((-2.1429, 0.7143), abs=1e-3)


def test_a_village_on_a_surface_epicentre_has_a_finite_intensity() -> None:
    # depth 0, d = 0: R would be 0 and log10(0) = −inf; R is floored at 1 km:
    # I = 0.92 + 1.63·5 − 3.49·0 = 9.07
    result = assess(report(5.0, 0.0), villages(0), DEFAULTS, ORIGIN)
    assert result.distance_km[0] == 1.0
    assert result.intensity[0] == pytest.approx(9.07)
    assert result.degree[0] == 9


def test_public_alert_from_magnitude_4_0_not_3_9() -> None:
    # depth 5 at the epicentre: M 4.0 → I = 0.92 + 6.52 − 3.49·log10(5) = 7.44 − 2.439 = 5.001 → V
    #                           M 3.9 → I = 0.92 + 6.357 − 2.439 = 4.837 → V too, but below M 4.0
    found = villages(0)
    at_4_0 = assess(report(4.0, 5.0), found, DEFAULTS, ORIGIN)
    at_3_9 = assess(report(3.9, 5.0), found, DEFAULTS, ORIGIN)
    assert at_4_0.public and at_4_0.degree[0] == 5 and at_4_0.counts()[Level.ORANGE] == 1
    assert not at_3_9.public and at_3_9.degree[0] == 5
    assert at_3_9.alerted_count == 0 and at_3_9.countdown_range() is None
    assert at_3_9.latest_expiry() is None


def test_a_cancel_alerts_nobody() -> None:
    result = assess(report(6.0, 10.0, cancel=True), villages(0, 10), DEFAULTS, ORIGIN)
    assert result.alerted_count == 0


def test_degrees_round_half_up_and_are_clamped() -> None:
    assert degree_of(np.array([6.5, 6.49, 2.5, 3.5, -3.0, 15.2])).tolist() == [7, 6, 3, 4, 1, 12]


def test_levels_follow_the_policy_degrees() -> None:
    stricter = EewParameters(red=8, orange=6, yellow=4)
    # M 6.0, depth 10 at the epicentre: VII; red needs VIII here, so orange
    result = assess(report(6.0, 10.0), villages(0), stricter, ORIGIN)
    assert result.counts() == {Level.RED: 0, Level.ORANGE: 1, Level.YELLOW: 0}


def test_alerted_villages_come_highest_intensity_first_then_nearest() -> None:
    # Same distance twice (V1 and V3 at 20 km, V4 on the other side at 20 km): equal intensity
    # and distance keep the roster's order; the far yellow village comes last.
    found = VillageArrays.build(
        [
            ("370820001200", "far", north(80), EPI_LON),
            ("370820001201", "b", north(20), EPI_LON),
            ("370820001202", "epi", EPI_LAT, EPI_LON),
            ("370820001203", "a", north(20), EPI_LON),
            ("370820001204", "south", north(-20), EPI_LON),
            ("370820001205", "mid", north(40), EPI_LON),
        ]
    )
    result = assess(report(6.0, 10.0), found, DEFAULTS, ORIGIN)
    assert codes(found, result.order) == ["epi", "b", "a", "south", "mid", "far"]
    assert np.all(np.diff(result.intensity[result.order]) <= 0)


def test_a_growing_event_then_a_cancel_alerts_only_villages_whose_level_rises() -> None:
    # Depth 10. R: A = 10, B = sqrt(30² + 10²) = 31.62 (log 1.5), C = sqrt(80² + 10²) = 80.62
    # (log 1.90646), D = sqrt(200² + 10²) = 200.25 (log 2.30157). I = 0.92 + 1.63·M − 3.49·log10(R)
    found = villages(0, 30, 80, 200)
    found = VillageArrays.build(
        (str(found.codes[i]), "ABCD"[i], float(found.lat[i]), float(found.lon[i])) for i in range(4)
    )
    event = EventAlerts.start("EQ20261202113000", found)
    now = ORIGIN + timedelta(seconds=4)

    # 1: M 4.5, I0 = 8.255: A 4.765 → V orange; B 3.020 → III yellow; C 1.601 → II; D none
    event, first = event.apply(assess(report(4.5, 10.0), found, DEFAULTS, now))
    assert codes(found, first.rise) == ["A", "B"] and not first.cancel.size
    # 2: M 5.5, I0 = 9.885: A 6.395 → VI orange (no rise); B 4.650 → V orange (rises);
    #    C 3.232 → III yellow (new); D 1.853 → II (none)
    event, second = event.apply(assess(report(5.5, 10.0, report_no=2), found, DEFAULTS, now))
    assert codes(found, second.rise) == ["B", "C"]
    # 3: M 6.3, I0 = 11.189: A 7.699 → VIII red (rises); B 5.954 → VI orange (same);
    #    C 4.535 → V orange (rises); D 3.157 → III yellow (new)
    third_report = report(6.3, 10.0, report_no=3)
    event, third = event.apply(assess(third_report, found, DEFAULTS, now))
    assert codes(found, third.rise) == ["A", "C", "D"]
    assert event.levels.tolist() == [3, 2, 2, 1]
    # Report 2 again, late (out of order): stale, nothing changes
    same, late = event.apply(assess(report(5.5, 10.0, report_no=2), found, DEFAULTS, now))
    assert late.stale and same is event
    # 4: a lower estimate raises nobody
    event, lower = event.apply(assess(report(5.0, 10.0, report_no=4), found, DEFAULTS, now))
    assert not lower.rise.size and not lower.stale
    # 5: cancel: everyone reached so far gets the 解除/误报 notice, once
    cancel = report(6.3, 10.0, report_no=5, cancel=True)
    event, cancelled = event.apply(assess(cancel, found, DEFAULTS, now))
    assert codes(found, cancelled.cancel) == ["A", "B", "C", "D"] and not cancelled.rise.size
    _, after = event.apply(assess(report(6.3, 10.0, report_no=6), found, DEFAULTS, now))
    assert after.stale


def test_a_report_of_another_event_is_refused() -> None:
    found = villages(0)
    event = EventAlerts.start("EQ-1", found)
    with pytest.raises(ValueError, match="EQ-1"):
        event.apply(assess(report(event_id="EQ-2"), found, DEFAULTS, ORIGIN))


def test_texts_name_seconds_degree_and_fit_one_sms() -> None:
    quake = report(5.5)
    text = warning_text(quake, 5, 9.29, signature=SIGNATURE)
    assert text == (
        "【济宁市应急管理局】地震预警：微山县发生5.5级地震，预计9秒后有强烈震感（烈度5度），请立即避险"
    )
    light = warning_text(quake, 3, 23.9, signature=SIGNATURE)
    assert light.endswith("预计23秒后有震感（烈度3度），请注意避险")
    blind = warning_text(quake, 7, -2.0, signature=SIGNATURE)
    assert blind == "【济宁市应急管理局】地震已发生，立即避险！微山县5.5级地震，本地烈度约7度"
    # less than a whole second left: nothing to count down
    assert warning_text(quake, 7, 0.7, signature=SIGNATURE) == blind
    drill = warning_text(report(5.5, status="Exercise"), 5, 9.0, signature=SIGNATURE)
    assert drill.startswith("【济宁市应急管理局】【演练】地震预警：")
    voice = warning_text(report(5.5, status="Exercise"), 5, 9.0, signature=SIGNATURE, kind="voice")
    assert voice.startswith("【演练】地震预警：")
    long_place = report(5.5, place="山东省济宁市微山县两城镇以东约十二公里处南四湖湖区水域附近地区")
    cut = warning_text(long_place, 6, 12.0, signature=SIGNATURE, max_chars=SMS_CHARS)
    assert text_length(cut) <= SMS_CHARS and "…发生5.5级地震" in cut and "预计12秒" in cut
    notice = cancel_text(quake, signature=SIGNATURE)
    assert (
        notice == "【济宁市应急管理局】解除通知：微山县5.5级地震预警已取消（误报），请恢复正常生活"
    )
    for sample in (text, blind, drill, notice):
        assert text_length(sample) <= SMS_CHARS


def test_village_texts_follow_the_given_order() -> None:
    found = villages(30, 0, 90)
    result = assess(report(6.0, 40.0), found, DEFAULTS, ORIGIN + timedelta(seconds=5))
    texts = village_texts(result, result.order, signature=SIGNATURE)
    assert ["6秒" in texts[0], "9秒" in texts[1], "23秒" in texts[2]] == [True, True, True]


def test_many_villages_are_assessed_without_a_python_loop() -> None:
    # 6,000 villages on a grid around Jining: the shape of the city's roster
    lats = np.repeat(np.linspace(34.6, 36.2, 60), 100)
    lons = np.tile(np.linspace(115.9, 117.6, 100), 60)
    found = VillageArrays.build(
        (f"3708{i:08d}", f"v{i}", float(la), float(lo))
        for i, (la, lo) in enumerate(zip(lats, lons, strict=True))
    )
    result = assess(report(5.5, 10.0), found, DEFAULTS, ORIGIN + timedelta(seconds=6))
    counts = result.counts()
    assert sum(counts.values()) == result.alerted_count > 0
    assert np.all(np.diff(result.intensity[result.order]) <= 0)
    assert set(np.unique(result.levels[result.order]).tolist()) <= {1, 2, 3}


def test_parameters_refuse_levels_out_of_order() -> None:
    with pytest.raises(ValueError, match="rise"):
        EewParameters(red=5, orange=6, yellow=3)
    with pytest.raises(ValueError, match="s_wave"):
        EewParameters(s_wave_km_s=0)


def test_origin_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        report(origin_time=datetime(2026, 12, 2, 11, 30))  # noqa: DTZ001 (the point of the test)


def test_covering_codes_name_a_division_only_when_all_its_villages_are_alerted() -> None:
    every = [
        "370811001201",  # town 370811001: both villages
        "370811001202",
        "370811002201",  # town 370811002: one of two
        "370811002202",
        "370826001201",  # county 370826: its only village
    ]
    alerted = ["370811001202", "370811002201", "370811001201", "370826001201"]
    assert covering_codes(every, alerted) == ["370811001000", "370811002201", "370826000000"]
    assert covering_codes(every, every) == ["370800000000"]  # the whole city
    assert covering_codes(every, []) == []
