-- Generating a synthetic roster: guarding the roster tables, reserving ids, replacing villages.

-- name: lock_roster
-- Exclusive against other writers of the roster, so the id blocks a generation reserves stay its
-- own until it commits.
LOCK TABLE responders, households, special_persons, facilities IN SHARE ROW EXCLUSIVE MODE;

-- name: roster_counts
-- Rows in each roster table.
SELECT (SELECT count(*) FROM special_persons) AS special_persons,
       (SELECT count(*) FROM facilities) AS facilities,
       (SELECT count(*) FROM households) AS households,
       (SELECT count(*) FROM responders) AS responders;

-- name: serial_sequence
-- The sequence behind a table's ``id`` column.
-- $1 table name
SELECT pg_get_serial_sequence($1, 'id');

-- name: next_serial
-- Take the next value of a sequence: the first id of a reserved block.
-- $1 sequence name
SELECT nextval($1::regclass);

-- name: end_serial_block
-- Move a sequence past a reserved block of ids.
-- $1 sequence name, $2 last id of the block
SELECT setval($1::regclass, $2);

-- name: empty_roster
-- Empty the roster tables before a replacing generation (a script: run it without parameters).
-- Responders are referenced by call-outs: TRUNCATE would refuse even with no call-outs, DELETE
-- refuses only when a call-out (history) really points at one.
TRUNCATE special_persons, facilities, households RESTART IDENTITY;
DELETE FROM responders;
ALTER SEQUENCE responders_id_seq RESTART;

-- name: create_new_villages
-- The temporary table a generation's villages are copied into (a script: run it without
-- parameters). Dropped first: inside a caller's transaction an earlier one's table remains.
DROP TABLE IF EXISTS pg_temp.roster_new_villages;
CREATE TEMP TABLE roster_new_villages (LIKE divisions INCLUDING DEFAULTS) ON COMMIT DROP;

-- name: upsert_new_villages
-- Insert the generated villages, or overwrite the stored ones with the same code.
INSERT INTO divisions (code, name, level, parent_code, lat, lon, blind_spot, remote, mountain,
                       flood_storage, low_lying, geo_hazard)
SELECT code, name, level, parent_code, lat, lon, blind_spot, remote, mountain,
       flood_storage, low_lying, geo_hazard
  FROM roster_new_villages
ON CONFLICT (code) DO UPDATE
   SET name = EXCLUDED.name, level = EXCLUDED.level, parent_code = EXCLUDED.parent_code,
       lat = EXCLUDED.lat, lon = EXCLUDED.lon, blind_spot = EXCLUDED.blind_spot,
       remote = EXCLUDED.remote, mountain = EXCLUDED.mountain,
       flood_storage = EXCLUDED.flood_storage, low_lying = EXCLUDED.low_lying,
       geo_hazard = EXCLUDED.geo_hazard;

-- name: delete_stale_villages
-- Remove the villages a replaced roster no longer has, unless a warning's resolved area still
-- names them.
DELETE FROM divisions d
 WHERE d.level = 'village'
   AND NOT EXISTS (SELECT 1 FROM roster_new_villages n WHERE n.code = d.code)
   AND NOT EXISTS (SELECT 1 FROM warning_villages w WHERE w.village_code = d.code);
