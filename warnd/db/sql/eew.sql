-- Earthquake early warning: the reports received, and the roster an event would reach.

-- name: insert_eew_report
-- Record a report once per (event, report number); no row back when it was received before.
-- $1 feed, $2 event_id, $3 report_no, $4 origin_time, $5 lat, $6 lon, $7 depth_km,
-- $8 magnitude, $9 place, $10 final, $11 cancel, $12 status, $13 state, $14 received_at, $15 raw
-- The report is handed to the fast path once this returns, so its commit does not wait for the
-- WAL to reach the disk (synchronous_commit off, for this statement's transaction alone): the
-- row is what makes a retry a duplicate, and only a crash of the database server itself in the
-- next fraction of a second can lose it (the retry is then handed again: a second alert, no
-- lost one).
INSERT INTO eew_reports (feed, event_id, report_no, origin_time, lat, lon, depth_km, magnitude,
                         place, final, cancel, status, state, received_at, raw)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15
  FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush
ON CONFLICT ON CONSTRAINT eew_reports_event_id_report_no_key DO NOTHING
RETURNING id;

-- name: retry_eew_report
-- Take over a report whose hand-off failed, so that the feed's retry is handed again; no row
-- back when it was not failed (a plain duplicate), or when housekeeping has meanwhile recorded it
-- for the ordinary planner (FastPath.recover). $1 event_id, $2 report_no
UPDATE eew_reports SET state = 'received'
 WHERE event_id = $1 AND report_no = $2 AND state = 'failed' AND recorded_at IS NULL
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

-- The earthquake fast path (warnd.pipeline.eew): its roster in memory, and its durable record.

-- name: eew_blind_villages
-- Villages no loudspeaker covers (警报盲区).
SELECT code FROM divisions WHERE level = 'village' AND blind_spot;

-- name: eew_facilities
-- Every special facility's contact (schools, care homes …), by village.
SELECT id, village_code, contact_phone AS phone, exercise FROM facilities ORDER BY id;

-- name: eew_responders
-- The responders who answer for earthquakes, by their division.
SELECT id, phone, division_code, exercise FROM responders
 WHERE specialities && ARRAY['all', 'earthquake']
 ORDER BY id;

-- name: eew_delivery_ids
-- Ids for the deliveries of a report, taken before they are written: the alerts go out with
-- them at once, and their rows follow. $1 how many
SELECT nextval(pg_get_serial_sequence('deliveries', 'id')) AS id FROM generate_series(1, $1);

-- name: eew_plan_households
-- The fast path wrote the plan's first steps (responders, loudspeakers, facilities): planning
-- goes on from there, with the households. $1 warning id, $2 steps done
UPDATE warnings SET plan_cursor = $2 WHERE id = $1;

-- name: eew_deliveries
-- The alerts of one channel, already handed to it: sending, under a lease (a crash brings them
-- back to the queue, where their expiry cancels them rather than send them late); each
-- responder's points at their call-out. Without a channel (another process holds every channel
-- of the kind), queued at once for that process's workers, at the alerts' priority.
-- $1 warning id, $2 bigint[] ids, $3 bigint[] message ids, $4 text[] audiences, $5 bigint[]
-- recipient ids, $6 text[] divisions, $7 text[] addresses, $8 timestamptz[] expiries, $9 kind,
-- $10 channel (NULL: queued), $11 priority, $12 now, $13 lease until
INSERT INTO deliveries (id, warning_id, message_id, audience, recipient_id, division_code,
                        address, channel_kind, priority, state, attempts, channel, queued_at,
                        due_at, sending_at, lease_until, expires_at, callout_id)
SELECT a.id, $1, a.message_id, a.audience, a.recipient_id, a.division_code, a.address, $9, $11,
       CASE WHEN $10::text IS NULL THEN 'queued' ELSE 'sending' END,
       CASE WHEN $10::text IS NULL THEN 0 ELSE 1 END, $10::text, $12, $12,
       CASE WHEN $10::text IS NOT NULL THEN $12::timestamptz END,
       CASE WHEN $10::text IS NOT NULL THEN $13::timestamptz END, a.expires_at, co.id
  FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[],
              $8::timestamptz[])
       AS a(id, message_id, audience, recipient_id, division_code, address, expires_at)
  LEFT JOIN callouts co
    ON a.audience = 'responder' AND co.warning_id = $1 AND co.responder_id = a.recipient_id;

-- name: eew_event_warnings
-- The warnings the fast path stored for one event's reports, that a cancel ends.
-- $1 source, $2 identifier pattern ('<event id>#%')
SELECT sender, identifier, sent, level FROM warnings
 WHERE source = $1 AND identifier LIKE $2 AND msg_type = 'Alert'
   AND state IN ('active', 'pending_approval');

-- name: eew_earlier_reports
-- The reports of an event before this one that were handed on (a failed hand-off alerted
-- nobody): replayed to know what the event has alerted so far. $1 event, $2 report number
SELECT event_id, report_no, origin_time, lat, lon, depth_km, magnitude, place, final, cancel,
       status
  FROM eew_reports
 WHERE event_id = $1 AND report_no < $2 AND state <> 'failed'
 ORDER BY report_no;

-- name: eew_unrecorded_reports
-- Reports that reach people, received before $1, whose record was never written: a crash came
-- between the hand-off and the record (or the hand-off failed and the feed never sent it again).
SELECT event_id, report_no, origin_time, lat, lon, depth_km, magnitude, place, final, cancel,
       status
  FROM eew_reports
 WHERE recorded_at IS NULL AND received_at < $1 AND status <> 'Test'
 ORDER BY received_at, report_no
 LIMIT 20;

-- name: eew_mark_recorded
-- $1 event, $2 report number, $3 now
UPDATE eew_reports SET recorded_at = $3
 WHERE event_id = $1 AND report_no = $2 AND recorded_at IS NULL;
