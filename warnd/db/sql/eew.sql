-- Earthquake early warning: the reports received, and the roster an event would reach.

-- name: insert_eew_report
-- Record a report once per (event, report number); no row back when it was received before.
-- $1 feed, $2 event_id, $3 report_no, $4 origin_time, $5 lat, $6 lon, $7 depth_km,
-- $8 magnitude, $9 place, $10 final, $11 cancel, $12 status, $13 state, $14 received_at, $15 raw
INSERT INTO eew_reports (feed, event_id, report_no, origin_time, lat, lon, depth_km, magnitude,
                         place, final, cancel, status, state, received_at, raw)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT ON CONSTRAINT eew_reports_event_id_report_no_key DO NOTHING
RETURNING id;

-- name: retry_eew_report
-- Take over a report whose hand-off failed, so that the feed's retry is handed again; no row
-- back when it was not failed (a plain duplicate). $1 event_id, $2 report_no
UPDATE eew_reports SET state = 'received'
 WHERE event_id = $1 AND report_no = $2 AND state = 'failed'
RETURNING id;

-- name: find_eew_report
-- A report as stored, for a duplicate's answer. $1 event_id, $2 report_no
SELECT id, feed, state, summary FROM eew_reports WHERE event_id = $1 AND report_no = $2;

-- name: finish_eew_report
-- Record how the hand-off went and what the report means. $1 id, $2 state, $3 summary (jsonb)
UPDATE eew_reports SET state = $2, summary = coalesce($3, summary) WHERE id = $1;

-- name: eew_villages
-- Every village with its coordinates, for VillageArrays (NULL coordinates are counted, not used).
SELECT code, name, lat, lon FROM divisions WHERE level = 'village' ORDER BY code;

-- name: eew_reach_by_county
-- Per county of the given villages: its name, households of those villages, responders of those
-- villages and of the towns and counties above them, villages with a loudspeaker (not a blind
-- spot), and loudspeakers reported in them (all, offline).
-- $1 village codes (text[]), $2 only people marked for exercises
WITH villages AS (
    SELECT DISTINCT code FROM unnest($1::text[]) AS code
), covered AS (
    SELECT code FROM villages
    UNION SELECT rpad(left(code, 9), 12, '0') FROM villages
    UNION SELECT rpad(left(code, 6), 12, '0') FROM villages
), households_by AS (
    SELECT left(village_code, 6) AS county, count(*) AS n
      FROM households WHERE village_code = ANY($1::text[]) AND (exercise OR NOT $2)
     GROUP BY 1
), responders_by AS (
    SELECT left(division_code, 6) AS county, count(*) AS n
      FROM responders WHERE division_code IN (SELECT code FROM covered) AND (exercise OR NOT $2)
     GROUP BY 1
), loudspeaker_villages AS (
    SELECT left(code, 6) AS county, count(*) FILTER (WHERE NOT blind_spot) AS n
      FROM divisions WHERE code = ANY($1::text[])
     GROUP BY 1
), speakers_by AS (
    SELECT left(division_code, 6) AS county, count(*) AS n,
           count(*) FILTER (WHERE NOT online) AS offline
      FROM speakers WHERE division_code = ANY($1::text[])
     GROUP BY 1
)
SELECT c.county || '000000' AS county_code, coalesce(d.name, '') AS county_name,
       coalesce(h.n, 0) AS households, coalesce(r.n, 0) AS responders,
       coalesce(l.n, 0) AS speaker_villages, coalesce(s.n, 0) AS speakers,
       coalesce(s.offline, 0) AS speakers_offline
  FROM (SELECT DISTINCT left(code, 6) AS county FROM villages) c
  LEFT JOIN divisions d ON d.code = c.county || '000000'
  LEFT JOIN households_by h ON h.county = c.county
  LEFT JOIN responders_by r ON r.county = c.county
  LEFT JOIN loudspeaker_villages l ON l.county = c.county
  LEFT JOIN speakers_by s ON s.county = c.county
 ORDER BY c.county;
