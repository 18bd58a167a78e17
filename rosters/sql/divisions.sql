-- The reference divisions shipped with warnd: the city, its counties and its towns.

-- name: upsert_reference_divisions
-- Insert or update the shipped rows: names, parents and coordinates follow the shipped list,
-- while the village flags (which only villages carry) are never touched here. Parents come first
-- in the arrays and the foreign key is checked at the statement's end.
-- $1 text[] codes, $2 text[] names, $3 text[] levels, $4 text[] parent codes,
-- $5 double precision[] latitudes, $6 double precision[] longitudes
INSERT INTO divisions (code, name, level, parent_code, lat, lon)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                     $5::double precision[], $6::double precision[])
ON CONFLICT (code) DO UPDATE
   SET name = EXCLUDED.name, level = EXCLUDED.level, parent_code = EXCLUDED.parent_code,
       lat = EXCLUDED.lat, lon = EXCLUDED.lon;

-- name: division_levels
-- Every division in the database with its level.
SELECT code, level FROM divisions;
