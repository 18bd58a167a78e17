-- Targeting: a warning's area → villages → audiences. Everything here is a set operation.

-- name: resolve_codes
-- Villages under the division codes a warning names (a city, county, town or village code).
-- $1 warning id, $2 text[] of 12-digit codes
INSERT INTO warning_villages (warning_id, village_code)
SELECT $1, v.code
  FROM divisions d
  JOIN divisions v
    ON v.level = 'village'
   AND left(v.code, code_prefix_length(d.level)) = left(d.code, code_prefix_length(d.level))
 WHERE d.code = ANY($2::text[])
ON CONFLICT DO NOTHING;

-- name: resolve_polygon
-- Villages whose coordinates lie inside a polygon (PostgreSQL's own geometry, x = lon, y = lat).
-- $1 warning id, $2 the polygon (asyncpg.types.Polygon of (lon, lat) points)
INSERT INTO warning_villages (warning_id, village_code)
SELECT $1, v.code
  FROM divisions v
 WHERE v.level = 'village' AND v.lat IS NOT NULL
   AND box($2::polygon) @> point(v.lon, v.lat)  -- its stored bounding box: O(1), not O(points)
   AND $2::polygon @> point(v.lon, v.lat)
ON CONFLICT DO NOTHING;

-- name: resolve_circle
-- Villages within a great-circle distance (haversine, earth radius 6371 km) of a centre.
-- $1 warning id, $2 centre lat, $3 centre lon, $4 radius km
INSERT INTO warning_villages (warning_id, village_code)
SELECT $1, v.code
  FROM divisions v
 WHERE v.level = 'village' AND v.lat IS NOT NULL
   AND 2 * 6371 * asin(sqrt(
         power(sin(radians(v.lat - $2) / 2), 2)
       + cos(radians($2)) * cos(radians(v.lat)) * power(sin(radians(v.lon - $3) / 2), 2)
       )) <= $4
ON CONFLICT DO NOTHING;

-- name: unknown_codes
-- The codes a warning names that are not in the roster, for the officer and the feed to see.
-- $1 text[] of 12-digit codes
SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM divisions d WHERE d.code = c);

-- name: covered_divisions
-- The covered villages' towns and counties, by name, for the place named in texts and previews,
-- with how many of their covered villages have a loudspeaker reported offline now.
-- $1 warning id
SELECT d.code, d.name, d.level, count(*) AS villages,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM speakers s
                                       WHERE s.division_code = wv.village_code AND NOT s.online))
           AS speakers_offline
  FROM warning_villages wv
  JOIN divisions d
    ON d.code IN (rpad(left(wv.village_code, 6), 12, '0'), rpad(left(wv.village_code, 9), 12, '0'))
 WHERE wv.warning_id = $1
 GROUP BY d.code, d.name, d.level
 ORDER BY d.code;

-- name: audience_counts
-- How many people (and, for households, phone numbers) each audience holds in the area, before
-- planning: the officer's preview. The policy then says which audiences a level reaches.
-- $1 warning id, $2 speciality or NULL for every responder, $3 exercise only
WITH villages AS (SELECT village_code FROM warning_villages WHERE warning_id = $1)
SELECT 'responder' AS audience, count(*) AS recipients, count(*) AS addresses
  FROM responders r JOIN covered_codes($1) c ON r.division_code = c.code
 WHERE ($2::text IS NULL OR r.specialities && ARRAY['all', $2::text]) AND (NOT $3 OR r.exercise)
UNION ALL
SELECT 'broadcast', count(*), count(*) FROM villages v JOIN divisions d ON d.code = v.village_code
 WHERE NOT d.blind_spot AND NOT $3  -- a loudspeaker reaches everyone: never in exercises
UNION ALL
SELECT 'facility', count(*), count(*) FROM facilities f JOIN villages v USING (village_code)
 WHERE NOT $3 OR f.exercise
UNION ALL
SELECT 'helper', count(DISTINCT p.helper_id), count(DISTINCT p.helper_id)
  FROM special_persons p JOIN villages v USING (village_code)
 WHERE NOT $3 OR p.exercise
UNION ALL
SELECT 'household', count(*),
       coalesce(sum((SELECT count(DISTINCT p) FROM unnest(h.phones) AS p)), 0)  -- as planned
  FROM households h JOIN villages v USING (village_code)
 WHERE NOT $3 OR h.exercise;
