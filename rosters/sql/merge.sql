-- Importing roster files, last step: the staged rows, all valid, are merged into the roster
-- tables by ``ref`` (villages by code). Each merge touches only rows that actually change, so
-- re-importing a county's unchanged roster writes nothing: no dead tuples, no index churn. It
-- returns how many rows it inserted and updated (a freshly inserted row version has xmax = 0).
-- A column left out of a file was staged NULL and keeps the stored value of an existing row (the
-- default for a new one); a column present but empty in a row sets the empty value.

-- name: merge_villages
-- Insert or update the staged villages and communities, under the town their code names.
WITH written AS (
    INSERT INTO divisions (code, name, level, parent_code, lat, lon, blind_spot, remote,
                           mountain, flood_storage, low_lying, geo_hazard)
    SELECT t.code, t.name, 'village', substr(t.code, 1, 9) || '000',
           CASE WHEN t.coords_given THEN t.lat ELSE d.lat END,
           CASE WHEN t.coords_given THEN t.lon ELSE d.lon END,
           COALESCE(t.blind_spot, d.blind_spot, false), COALESCE(t.remote, d.remote, false),
           COALESCE(t.mountain, d.mountain, false),
           COALESCE(t.flood_storage, d.flood_storage, false),
           COALESCE(t.low_lying, d.low_lying, false), COALESCE(t.geo_hazard, d.geo_hazard, false)
      FROM roster_in_divisions t LEFT JOIN divisions d ON d.code = t.code
    ON CONFLICT (code) DO UPDATE
       SET name = EXCLUDED.name, level = EXCLUDED.level, parent_code = EXCLUDED.parent_code,
           lat = EXCLUDED.lat, lon = EXCLUDED.lon, blind_spot = EXCLUDED.blind_spot,
           remote = EXCLUDED.remote, mountain = EXCLUDED.mountain,
           flood_storage = EXCLUDED.flood_storage, low_lying = EXCLUDED.low_lying,
           geo_hazard = EXCLUDED.geo_hazard
     WHERE (divisions.name, divisions.level, divisions.parent_code, divisions.lat, divisions.lon,
            divisions.blind_spot, divisions.remote, divisions.mountain, divisions.flood_storage,
            divisions.low_lying, divisions.geo_hazard)
           IS DISTINCT FROM
           (EXCLUDED.name, EXCLUDED.level, EXCLUDED.parent_code, EXCLUDED.lat, EXCLUDED.lon,
            EXCLUDED.blind_spot, EXCLUDED.remote, EXCLUDED.mountain, EXCLUDED.flood_storage,
            EXCLUDED.low_lying, EXCLUDED.geo_hazard)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
  FROM written;

-- name: merge_responders
-- Insert or update the staged responders; their B角 are set by ``set_backups`` afterwards.
WITH written AS (
    INSERT INTO responders (ref, name, phone, division_code, level, role, specialities, exercise)
    SELECT t.ref, t.name, t.phone, t.division_code, t.level, COALESCE(t.role, r.role, ''),
           COALESCE(t.specialities, r.specialities, '{all}'),
           COALESCE(t.exercise, r.exercise, false)
      FROM roster_in_responders t LEFT JOIN responders r ON r.ref = t.ref
    ON CONFLICT (ref) DO UPDATE
       SET name = EXCLUDED.name, phone = EXCLUDED.phone, division_code = EXCLUDED.division_code,
           level = EXCLUDED.level, role = EXCLUDED.role, specialities = EXCLUDED.specialities,
           exercise = EXCLUDED.exercise
     WHERE (responders.name, responders.phone, responders.division_code, responders.level,
            responders.role, responders.specialities, responders.exercise)
           IS DISTINCT FROM
           (EXCLUDED.name, EXCLUDED.phone, EXCLUDED.division_code, EXCLUDED.level,
            EXCLUDED.role, EXCLUDED.specialities, EXCLUDED.exercise)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
  FROM written;

-- name: set_backups
-- Set the staged responders' B角, once all responders exist: a backup may be a responder of the
-- same files. An empty cell clears the backup; a file without the column leaves it as it was.
UPDATE responders r SET backup_id = b.id
  FROM roster_in_responders t LEFT JOIN responders b ON b.ref = NULLIF(t.backup_ref, '')
 WHERE r.ref = t.ref AND t.backup_ref IS NOT NULL AND r.backup_id IS DISTINCT FROM b.id;

-- name: merge_households
-- Insert or update the staged households.
WITH written AS (
    INSERT INTO households (ref, village_code, address, head_name, phones, exercise)
    SELECT t.ref, t.village_code, t.address, COALESCE(t.head_name, h.head_name, ''),
           t.phones, COALESCE(t.exercise, h.exercise, false)
      FROM roster_in_households t LEFT JOIN households h ON h.ref = t.ref
    ON CONFLICT (ref) DO UPDATE
       SET village_code = EXCLUDED.village_code, address = EXCLUDED.address,
           head_name = EXCLUDED.head_name, phones = EXCLUDED.phones, exercise = EXCLUDED.exercise
     WHERE (households.village_code, households.address, households.head_name,
            households.phones, households.exercise)
           IS DISTINCT FROM
           (EXCLUDED.village_code, EXCLUDED.address, EXCLUDED.head_name, EXCLUDED.phones,
            EXCLUDED.exercise)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
  FROM written;

-- name: merge_special_persons
-- Insert or update the staged special-group persons, with their household and helper by 编号.
WITH written AS (
    INSERT INTO special_persons (ref, household_id, village_code, name, category, address, phone,
                                 helper_id, exercise)
    SELECT t.ref,
           CASE WHEN t.household_ref IS NULL THEN s.household_id ELSE h.id END,
           t.village_code, t.name, t.category, COALESCE(t.address, s.address, ''),
           CASE WHEN t.phone IS NULL THEN s.phone ELSE NULLIF(t.phone, '') END,
           helper.id, COALESCE(t.exercise, s.exercise, false)
      FROM roster_in_special_persons t
      JOIN responders helper ON helper.ref = t.helper_ref
      LEFT JOIN households h ON h.ref = t.household_ref
      LEFT JOIN special_persons s ON s.ref = t.ref
    ON CONFLICT (ref) DO UPDATE
       SET household_id = EXCLUDED.household_id, village_code = EXCLUDED.village_code,
           name = EXCLUDED.name, category = EXCLUDED.category, address = EXCLUDED.address,
           phone = EXCLUDED.phone, helper_id = EXCLUDED.helper_id, exercise = EXCLUDED.exercise
     WHERE (special_persons.household_id, special_persons.village_code, special_persons.name,
            special_persons.category, special_persons.address, special_persons.phone,
            special_persons.helper_id, special_persons.exercise)
           IS DISTINCT FROM
           (EXCLUDED.household_id, EXCLUDED.village_code, EXCLUDED.name, EXCLUDED.category,
            EXCLUDED.address, EXCLUDED.phone, EXCLUDED.helper_id, EXCLUDED.exercise)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
  FROM written;

-- name: merge_facilities
-- Insert or update the staged facilities.
WITH written AS (
    INSERT INTO facilities (ref, village_code, name, kind, address, contact_name, contact_phone,
                            exercise)
    SELECT t.ref, t.village_code, t.name, t.kind, COALESCE(t.address, f.address, ''),
           t.contact_name, t.contact_phone, COALESCE(t.exercise, f.exercise, false)
      FROM roster_in_facilities t LEFT JOIN facilities f ON f.ref = t.ref
    ON CONFLICT (ref) DO UPDATE
       SET village_code = EXCLUDED.village_code, name = EXCLUDED.name, kind = EXCLUDED.kind,
           address = EXCLUDED.address, contact_name = EXCLUDED.contact_name,
           contact_phone = EXCLUDED.contact_phone, exercise = EXCLUDED.exercise
     WHERE (facilities.village_code, facilities.name, facilities.kind, facilities.address,
            facilities.contact_name, facilities.contact_phone, facilities.exercise)
           IS DISTINCT FROM
           (EXCLUDED.village_code, EXCLUDED.name, EXCLUDED.kind, EXCLUDED.address,
            EXCLUDED.contact_name, EXCLUDED.contact_phone, EXCLUDED.exercise)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
  FROM written;
