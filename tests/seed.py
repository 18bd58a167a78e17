"""A tiny, hand-made roster for tests: two counties, enough to tell targeted from not targeted."""

from __future__ import annotations

from warnd.db import Conn

CITY = "370800000000"
RENCHENG = "370811000000"  # 任城区: the county the tests warn
SISHUI = "370831000000"  # 泗水县: must not be reached
TOWN_R = "370811002000"
TOWN_S = "370831001000"
VILLAGE_R1 = "370811002201"
VILLAGE_R2 = "370811002202"  # a blind spot: no loudspeaker
VILLAGE_S1 = "370831001201"

DIVISIONS = [
    (CITY, "济宁市", "city", None, 35.41, 116.59, False),
    (RENCHENG, "任城区", "county", CITY, 35.41, 116.59, False),
    (SISHUI, "泗水县", "county", CITY, 35.66, 117.25, False),
    (TOWN_R, "许庄街道", "town", RENCHENG, 35.42, 116.60, False),
    (TOWN_S, "泗河街道", "town", SISHUI, 35.66, 117.26, False),
    (VILLAGE_R1, "张庄村", "village", TOWN_R, 35.43, 116.61, False),
    (VILLAGE_R2, "李庄村", "village", TOWN_R, 35.44, 116.62, True),
    (VILLAGE_S1, "王家村", "village", TOWN_S, 35.67, 117.27, False),
]

# ref, name, phone, division, level, specialities, exercise
RESPONDERS = [
    ("C-city", "济市长", "+8613900000000", CITY, "city", ["all"], False),
    ("R-county", "任区长", "+8613900000001", RENCHENG, "county", ["all"], False),
    ("R-county-geo", "任地质", "+8613900000002", RENCHENG, "county", ["geological"], False),
    ("R-town", "许镇长", "+8613900000003", TOWN_R, "town", ["flood"], True),
    ("R-v1", "张书记", "+8613900000004", VILLAGE_R1, "village", ["all"], True),
    ("R-v1-b", "张副书记", "+8613900000005", VILLAGE_R1, "village", ["all"], False),
    ("R-v2", "李书记", "+8613900000006", VILLAGE_R2, "village", ["all"], False),
    ("S-county", "泗县长", "+8613900000011", SISHUI, "county", ["all"], False),
    ("S-v1", "王书记", "+8613900000014", VILLAGE_S1, "village", ["all"], False),
]


async def seed(conn: Conn) -> None:
    """Insert the roster; households: 3 in R1 (one with two phones), 2 in R2, 2 in S1."""
    await conn.executemany(
        """INSERT INTO divisions (code, name, level, parent_code, lat, lon, blind_spot)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        DIVISIONS,
    )
    await conn.executemany(
        """INSERT INTO responders (ref, name, phone, division_code, level, specialities, exercise)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        RESPONDERS,
    )
    await conn.execute(
        "UPDATE responders SET backup_id = (SELECT id FROM responders WHERE ref = 'R-v1-b') "
        "WHERE ref = 'R-v1'"
    )
    households = [
        ("H-r1-1", VILLAGE_R1, "张庄村1号", ["+8613800000001", "+8613800000002"], True),
        ("H-r1-2", VILLAGE_R1, "张庄村2号", ["+8613800000003"], False),
        ("H-r1-3", VILLAGE_R1, "张庄村3号", ["+8613800000004"], False),
        ("H-r2-1", VILLAGE_R2, "李庄村1号", ["+8613800000005"], False),
        ("H-r2-2", VILLAGE_R2, "李庄村2号", ["+8613800000006"], False),
        ("H-s1-1", VILLAGE_S1, "王家村1号", ["+8613800000011"], False),
        ("H-s1-2", VILLAGE_S1, "王家村2号", ["+8613800000012"], False),
    ]
    await conn.executemany(
        """INSERT INTO households (ref, village_code, address, phones, exercise)
           VALUES ($1, $2, $3, $4, $5)""",
        households,
    )
    await conn.execute(
        """INSERT INTO special_persons (ref, village_code, name, category, address, helper_id)
           SELECT 'P-1', $1, '张奶奶', 'elderly_alone', '张庄村1号', id FROM responders
            WHERE ref = 'R-v1'
           UNION ALL
           SELECT 'P-2', $1, '张小宝', 'child', '张庄村3号', id FROM responders WHERE ref = 'R-v1'
           UNION ALL
           SELECT 'P-3', $2, '王爷爷', 'disabled', '王家村1号', id FROM responders
            WHERE ref = 'S-v1'
        """,
        VILLAGE_R1,
        VILLAGE_S1,
    )
    await conn.execute(
        """INSERT INTO facilities (ref, village_code, name, kind, contact_name, contact_phone)
           VALUES ('F-1', $1, '张庄小学', 'school', '赵校长', '+8613700000001'),
                  ('F-2', $2, '泗河敬老院', 'elderly_care', '钱院长', '+8613700000002')""",
        VILLAGE_R1,
        VILLAGE_S1,
    )


# Who a red rainstorm (flood speciality) warning for 任城区 must reach, by audience: every level
# above the covered villages (city, county, town), never the geological-only county responder,
# nothing in 泗水县, no loudspeaker in the blind-spot village, each helper once.
RED_RAINSTORM_RENCHENG: dict[str, set[str]] = {
    "responder": {
        "+8613900000000",
        "+8613900000001",
        "+8613900000003",
        "+8613900000004",
        "+8613900000005",
        "+8613900000006",
    },
    "broadcast": {VILLAGE_R1},
    "facility": {"+8613700000001"},
    "helper": {"+8613900000004"},
    "household": {
        "+8613800000001",
        "+8613800000002",
        "+8613800000003",
        "+8613800000004",
        "+8613800000005",
        "+8613800000006",
    },
}

# The field tasks such a warning opens by default policy: door-knocking for the helper of 张庄村's
# two special-group persons, gongs for blind-spot 李庄村's responsible person.
RED_RAINSTORM_RENCHENG_TASKS: dict[str, dict[str, object]] = {
    "door_knock": {"phone": "+8613900000004", "village": VILLAGE_R1, "targets": 2},
    "gong": {"phone": "+8613900000006", "village": VILLAGE_R2, "targets": 1},
}

# The addresses by delivery audience: at orange and red the helper's text is the door-knocking
# task, sent with the gong task under the field_task audience.
RED_RAINSTORM_RENCHENG_BY_AUDIENCE: dict[str, set[str]] = {
    **{a: v for a, v in RED_RAINSTORM_RENCHENG.items() if a != "helper"},
    "field_task": {str(t["phone"]) for t in RED_RAINSTORM_RENCHENG_TASKS.values()},
}
