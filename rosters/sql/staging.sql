-- Importing roster files, first step: validated rows are copied into temporary tables (one per
-- record type, ``src`` the index of the sheet and ``row`` its row number), where keys and
-- references are checked as sets against both the files and the database. Invalid rows are
-- staged too, their bad cells NULL, so that their other problems still show.

-- name: create_staging
-- The temporary tables of one import (a script: run it without parameters). Dropped first:
-- inside a caller's transaction an earlier import's tables remain.
DROP TABLE IF EXISTS pg_temp.roster_in_divisions;
CREATE TEMP TABLE roster_in_divisions (
    src integer, row integer, code text, name text, lat double precision, lon double precision,
    coords_given boolean, blind_spot boolean, remote boolean, mountain boolean,
    flood_storage boolean, low_lying boolean, geo_hazard boolean
) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.roster_in_responders;
CREATE TEMP TABLE roster_in_responders (
    src integer, row integer, ref text, name text, phone text, division_code text, level text,
    role text, specialities text[], backup_ref text, exercise boolean
) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.roster_in_households;
CREATE TEMP TABLE roster_in_households (
    src integer, row integer, ref text, village_code text, address text, head_name text,
    phones text[], exercise boolean
) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.roster_in_special_persons;
CREATE TEMP TABLE roster_in_special_persons (
    src integer, row integer, ref text, household_ref text, village_code text, name text,
    category text, address text, phone text, helper_ref text, exercise boolean
) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.roster_in_facilities;
CREATE TEMP TABLE roster_in_facilities (
    src integer, row integer, ref text, village_code text, name text, kind text, address text,
    contact_name text, contact_phone text, exercise boolean
) ON COMMIT DROP;

-- name: analyze_staging
-- Statistics for the staged rows: temporary tables get none otherwise, and the checks and the
-- merge join them.
ANALYZE roster_in_divisions, roster_in_responders, roster_in_households,
        roster_in_special_persons, roster_in_facilities;

-- name: duplicate_keys
-- Later rows with a key (a village's code, anyone else's 编号) that an earlier row of the same
-- record type already has; ``key_column`` says which column holds it. Sheets are numbered in
-- record type order, so the order is by record type too.
SELECT src, row, key_column, key, first_src, first_row FROM (
    SELECT src, row, key_column, key,
           first_value(src) OVER w AS first_src, first_value(row) OVER w AS first_row,
           row_number() OVER w AS n
      FROM (SELECT 'divisions' AS record_type, 'code' AS key_column, src, row, code AS key
              FROM roster_in_divisions
            UNION ALL
            SELECT 'responders', 'ref', src, row, ref FROM roster_in_responders
            UNION ALL
            SELECT 'households', 'ref', src, row, ref FROM roster_in_households
            UNION ALL
            SELECT 'special_persons', 'ref', src, row, ref FROM roster_in_special_persons
            UNION ALL
            SELECT 'facilities', 'ref', src, row, ref FROM roster_in_facilities) keyed
     WHERE key IS NOT NULL
    WINDOW w AS (PARTITION BY record_type, key ORDER BY src, row)) ranked
 WHERE n > 1 ORDER BY src, row;

-- name: dangling_references
-- Rows whose reference resolves to nothing, in these files or in the database: a B角 or a
-- 包保联系人 that is no responder's 编号, a 户编号 that is no household's. ``key_column`` says
-- which column holds it.
SELECT t.src, t.row, 'backup_ref' AS key_column, t.backup_ref AS value
  FROM roster_in_responders t
 WHERE t.backup_ref <> ''
   AND NOT EXISTS (SELECT 1 FROM roster_in_responders u WHERE u.ref = t.backup_ref)
   AND NOT EXISTS (SELECT 1 FROM responders r WHERE r.ref = t.backup_ref)
UNION ALL
SELECT t.src, t.row, 'helper_ref', t.helper_ref
  FROM roster_in_special_persons t
 WHERE t.helper_ref <> ''
   AND NOT EXISTS (SELECT 1 FROM roster_in_responders u WHERE u.ref = t.helper_ref)
   AND NOT EXISTS (SELECT 1 FROM responders r WHERE r.ref = t.helper_ref)
UNION ALL
SELECT t.src, t.row, 'household_ref', t.household_ref
  FROM roster_in_special_persons t
 WHERE t.household_ref <> ''
   AND NOT EXISTS (SELECT 1 FROM roster_in_households u WHERE u.ref = t.household_ref)
   AND NOT EXISTS (SELECT 1 FROM households h WHERE h.ref = t.household_ref);
