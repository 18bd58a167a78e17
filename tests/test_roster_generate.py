"""The synthetic roster: counts, code formats, geography, references, determinism."""

from __future__ import annotations

import re

import asyncpg
import pytest

from rosters.divisions import COUNTY_CIRCLES, distance_km, load_divisions, real_divisions
from rosters.generate import GenerateSummary, RosterExistsError, generate, plan
from tests.roster.digest import roster_digest
from warnd.core.errors import InputError
from warnd.core.phones import normalise_phone

COUNTIES = ["370831", "370826"]  # 泗水 (mountains) and 微山 (Nansi Lake)
HOUSEHOLDS = 5_000


async def _generate(pool: asyncpg.Pool, *, seed: int = 5, replace: bool = False) -> GenerateSummary:
    async with pool.acquire() as conn:
        return await generate(
            conn, households=HOUSEHOLDS, counties=COUNTIES, seed=seed, replace=replace
        )


async def test_reference_divisions_load_idempotently(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await load_divisions(conn) == 171
        assert await load_divisions(conn) == 171
        rows = await conn.fetch("SELECT level, count(*) AS n FROM divisions GROUP BY level")
        assert {r["level"]: r["n"] for r in rows} == {"city": 1, "county": 12, "town": 158}
        orphans = await conn.fetchval(
            "SELECT count(*) FROM divisions d WHERE level <> 'city' AND NOT EXISTS "
            "(SELECT 1 FROM divisions p WHERE p.code = d.parent_code)"
        )
        assert orphans == 0
    towns = [d for d in real_divisions() if d.level == "town"]
    for town in towns:
        circle = COUNTY_CIRCLES[town.code[:6]]
        assert town.lat is not None and town.lon is not None
        assert distance_km(circle.lat, circle.lon, town.lat, town.lon) <= circle.radius_km


async def test_small_roster_has_the_planned_shape(pool: asyncpg.Pool) -> None:
    summary = await _generate(pool)
    async with pool.acquire() as conn:
        counts = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("responders", "households", "special_persons", "facilities")
        }
        villages = await conn.fetch(
            "SELECT code, name, parent_code, lat, lon, blind_spot, mountain, flood_storage "
            "FROM divisions WHERE level = 'village'"
        )
        assert counts == {
            "responders": summary.responders,
            "households": HOUSEHOLDS,
            "special_persons": summary.special_persons,
            "facilities": summary.facilities,
        }
        assert len(villages) == summary.villages
        # 28 towns at ~40 villages each; a village responder or two each, plus towns and counties
        assert 900 < summary.villages < 1_300
        assert summary.villages < summary.responders < 2.2 * summary.villages
        assert 0.02 * HOUSEHOLDS < summary.special_persons < 0.05 * HOUSEHOLDS
        assert summary.exercise_villages == len(COUNTIES)

        for v in villages:
            code = v["code"]
            assert re.fullmatch(r"3708(31|26)\d{6}", code)
            assert v["parent_code"] == code[:9] + "000"
            number = int(code[9:])
            assert (1 <= number <= 199) == v["name"].endswith("社区"), v["name"]
            assert (200 <= number <= 399) == v["name"].endswith("村"), v["name"]
            circle = COUNTY_CIRCLES[code[:6]]
            assert distance_km(circle.lat, circle.lon, v["lat"], v["lon"]) <= circle.radius_km
        # flood-storage areas only by the lake, mountains mostly in Sishui
        assert all(not v["flood_storage"] for v in villages if v["code"].startswith("370831"))
        assert any(v["flood_storage"] for v in villages if v["code"].startswith("370826"))
        sishui = [v for v in villages if v["code"].startswith("370831")]
        assert sum(v["mountain"] for v in sishui) > len(sishui) / 3
        assert 0.02 < sum(v["blind_spot"] for v in villages) / len(villages) < 0.12

        refs_ok = await conn.fetchval(
            r"""SELECT bool_and(ref ~ ('^H' || village_code || '-\d{4}$')) FROM households"""
        )
        assert refs_ok
        assert await conn.fetchval(r"SELECT bool_and(ref ~ '^R\d{12}-\d{2}$') FROM responders")
        # every responder has a backup, at the same division unless alone in a village
        missing = await conn.fetchval(
            "SELECT count(*) FROM responders r LEFT JOIN responders b ON b.id = r.backup_id "
            "WHERE b.id IS NULL OR b.id = r.id"
        )
        assert missing == 0
        elsewhere = await conn.fetch(
            "SELECT r.division_code, b.division_code AS backup_division, b.level "
            "FROM responders r JOIN responders b ON b.id = r.backup_id "
            "WHERE b.division_code <> r.division_code"
        )
        for row in elsewhere:
            assert row["level"] == "town"
            assert row["backup_division"] == row["division_code"][:9] + "000"
        # every special person's helper is a responder of their own village
        strays = await conn.fetchval(
            "SELECT count(*) FROM special_persons s JOIN responders r ON r.id = s.helper_id "
            "WHERE r.division_code <> s.village_code OR r.level <> 'village'"
        )
        assert strays == 0
        mismatched = await conn.fetchval(
            "SELECT count(*) FROM special_persons s JOIN households h ON h.id = s.household_id "
            "WHERE h.village_code <> s.village_code"
        )
        assert mismatched == 0
        # phones: valid, and no number shared between two people
        phones = await conn.fetch(
            "SELECT unnest(phones) AS p FROM households UNION ALL "
            "SELECT phone FROM responders UNION ALL SELECT contact_phone FROM facilities"
        )
        numbers = [r["p"] for r in phones]
        assert len(set(numbers)) == len(numbers)
        assert all(normalise_phone(n) == n for n in numbers[:2_000])
        kinds = await conn.fetch("SELECT kind, count(*) AS n FROM facilities GROUP BY kind")
        by_kind = {r["kind"]: r["n"] for r in kinds}
        assert by_kind["child_welfare"] == by_kind["minors_protection"] == len(COUNTIES)
        assert by_kind["kindergarten"] > by_kind["hospital"]
        # the exercise: one village per county, all its people
        exercise = await conn.fetch(
            "SELECT village_code, bool_and(exercise) AS all_in FROM households "
            "WHERE village_code IN (SELECT village_code FROM households WHERE exercise) "
            "GROUP BY village_code"
        )
        assert len(exercise) == len(COUNTIES)
        assert all(r["all_in"] for r in exercise)


async def test_same_seed_same_rows_and_refusal_without_replace(pool: asyncpg.Pool) -> None:
    await _generate(pool)
    async with pool.acquire() as conn:
        first = await roster_digest(conn)
        with pytest.raises(RosterExistsError, match="--replace"):
            await generate(conn, households=10, counties=COUNTIES)
        assert await roster_digest(conn) == first
    await _generate(pool, replace=True)
    async with pool.acquire() as conn:
        assert await roster_digest(conn) == first
    await _generate(pool, replace=True, seed=6)
    async with pool.acquire() as conn:
        assert await roster_digest(conn) != first
        # replacing with fewer counties drops the villages of the others
        await generate(conn, households=100, counties=["370831"], replace=True)
        others = await conn.fetchval(
            "SELECT count(*) FROM divisions WHERE level = 'village' AND code LIKE '370826%'"
        )
        assert others == 0


async def test_replace_refuses_a_roster_that_history_points_at(pool: asyncpg.Pool) -> None:
    await _generate(pool)
    async with pool.acquire() as conn:
        first = await roster_digest(conn)
        # Stands in for a call-out or field task: any row that references a responder.
        await conn.execute(
            "CREATE TABLE history (responder_id bigint REFERENCES responders (id));"
            "INSERT INTO history SELECT min(id) FROM responders"
        )
        with pytest.raises(InputError, match="cannot be replaced") as refused:
            await generate(conn, households=10, counties=COUNTIES, replace=True)
        assert refused.value.code == "roster_referenced"
        assert await roster_digest(conn) == first


def test_plan_does_not_depend_on_the_county_selection() -> None:
    whole = {v.code: (v.name, v.lat, v.households) for v in plan(seed=9).villages}
    one = plan(seed=9, county_codes=["370883"]).villages
    assert one and all(whole[v.code] == (v.name, v.lat, v.households) for v in one)
    assert sum(h for _, _, h in whole.values()) == 2_900_000
    assert 5_500 < len(whole) < 6_500


async def test_unknown_county_and_bad_counts_are_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(InputError, match="370899"):
            await generate(conn, counties=["370899"])
        with pytest.raises(InputError, match="households"):
            await generate(conn, households=-1)
        assert await conn.fetchval("SELECT count(*) FROM responders") == 0
