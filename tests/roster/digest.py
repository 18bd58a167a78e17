"""A digest of the whole roster, independent of ids, to compare two rosters row for row."""

from __future__ import annotations

import hashlib

from warnd.db import Conn

# Every roster row, references by ref instead of id, in a fixed order.
ROSTER_QUERIES = (
    """SELECT code, name, level, parent_code, lat, lon, blind_spot, remote, mountain,
              flood_storage, low_lying, geo_hazard
         FROM divisions WHERE level = 'village' ORDER BY code""",
    """SELECT r.ref, r.name, r.phone, r.division_code, r.level, r.role, r.specialities,
              b.ref, r.exercise
         FROM responders r LEFT JOIN responders b ON b.id = r.backup_id ORDER BY r.ref""",
    """SELECT ref, village_code, address, head_name, phones, exercise
         FROM households ORDER BY ref""",
    """SELECT s.ref, h.ref, s.village_code, s.name, s.category, s.address, s.phone, r.ref,
              s.exercise
         FROM special_persons s JOIN responders r ON r.id = s.helper_id
         LEFT JOIN households h ON h.id = s.household_id ORDER BY s.ref""",
    """SELECT ref, village_code, name, kind, address, contact_name, contact_phone, exercise
         FROM facilities ORDER BY ref""",
)


async def roster_digest(conn: Conn) -> str:
    """SHA-256 over every roster row in a fixed order."""
    digest = hashlib.sha256()
    for query in ROSTER_QUERIES:
        async with conn.transaction():
            async for record in conn.cursor(query, prefetch=10_000):
                digest.update(repr(tuple(record.values())).encode())
        digest.update(b"|")
    return digest.hexdigest()


async def clear_roster(conn: Conn) -> None:
    """Empty the roster tables and remove the villages, as on a fresh database."""
    await conn.execute("TRUNCATE special_persons, facilities, households")
    await conn.execute("DELETE FROM responders")  # call-outs reference it: TRUNCATE refuses
    await conn.execute("DELETE FROM divisions WHERE level = 'village'")
