-- Planning: deliveries written into the outbox with a few large INSERT … SELECT statements.
-- Shared parameters of the plan_* blocks:
--   $1 warning id, $2 text[] channel kinds, $3 bigint[] message id per kind,
--   $4 text[] fallback kinds per kind (comma-separated), $5 priority, $6 exercise only,
--   $7 now (queued and due from then).
-- Each step commits with the warning's plan cursor, so a resumed plan never repeats a step and
-- these inserts need no ON CONFLICT (whose speculative insertion would double their cost); the
-- outbox's unique key still refuses a duplicate loudly.
-- An Update's first step notified those its predecessors reached (warnd/sql/notices.sql); every
-- block skips an address that got such a notice, through the small partial index on notices.

-- name: plan_responders
-- Responders of the covered villages and of every town, county and city above them, of the
-- given levels; each points at its call-out when one was opened (just before, same step).
-- $8 speciality or NULL for every responder, $9 text[] responder levels
WITH kinds AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[]) AS k(kind, message_id, fallback))
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, fallback, priority, queued_at, due_at, callout_id)
SELECT $1, k.message_id, 'responder', r.id, r.division_code, r.phone,
       k.kind, string_to_array(k.fallback, ','), $5, $7, $7, co.id
  FROM responders r
  JOIN covered_codes($1, $9::text[]) c ON r.division_code = c.code
  LEFT JOIN callouts co ON co.warning_id = $1 AND co.responder_id = r.id
  CROSS JOIN kinds k
 WHERE ($8::text IS NULL OR r.specialities && ARRAY['all', $8::text]) AND (NOT $6 OR r.exercise)
   AND r.level = ANY($9::text[])
   AND NOT EXISTS (SELECT 1 FROM deliveries n
                    WHERE n.warning_id = $1 AND n.notice IS NOT NULL AND n.address = r.phone)
 -- County heads have the shortest deadline to answer: they are written, and so sent, first.
 ORDER BY CASE r.level WHEN 'city' THEN 0 WHEN 'county' THEN 1 WHEN 'town' THEN 2 ELSE 3 END, r.id;

-- name: plan_broadcast
-- One loudspeaker activation per covered village that has loudspeaker coverage.
WITH kinds AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[]) AS k(kind, message_id, fallback))
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, fallback, priority, queued_at, due_at)
SELECT $1, k.message_id, 'broadcast', 0, d.code, d.code, k.kind, string_to_array(k.fallback, ','), $5, $7, $7
  FROM warning_villages wv JOIN divisions d ON d.code = wv.village_code CROSS JOIN kinds k
 WHERE wv.warning_id = $1 AND NOT d.blind_spot AND NOT $6
   AND NOT EXISTS (SELECT 1 FROM deliveries n
                    WHERE n.warning_id = $1 AND n.notice IS NOT NULL AND n.address = d.code);

-- name: plan_facilities
-- The contact of every special facility (school, care home …) in the covered villages.
WITH kinds AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[]) AS k(kind, message_id, fallback))
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, fallback, priority, queued_at, due_at)
SELECT $1, k.message_id, 'facility', f.id, f.village_code, f.contact_phone,
       k.kind, string_to_array(k.fallback, ','), $5, $7, $7
  FROM facilities f JOIN warning_villages wv ON wv.village_code = f.village_code CROSS JOIN kinds k
 WHERE wv.warning_id = $1 AND (NOT $6 OR f.exercise)
   AND NOT EXISTS (SELECT 1 FROM deliveries n
                    WHERE n.warning_id = $1 AND n.notice IS NOT NULL AND n.address = f.contact_phone);

-- name: plan_helpers
-- Each helper (包保联系人) of special-group persons in the covered villages, once.
WITH kinds AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[]) AS k(kind, message_id, fallback)),
helpers AS (
    SELECT DISTINCT p.helper_id
      FROM special_persons p JOIN warning_villages wv ON wv.village_code = p.village_code
     WHERE wv.warning_id = $1 AND (NOT $6 OR p.exercise)
)
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, fallback, priority, queued_at, due_at)
SELECT $1, k.message_id, 'helper', r.id, r.division_code, r.phone,
       k.kind, string_to_array(k.fallback, ','), $5, $7, $7
  FROM helpers h JOIN responders r ON r.id = h.helper_id CROSS JOIN kinds k
 WHERE true
   AND NOT EXISTS (SELECT 1 FROM deliveries n
                    WHERE n.warning_id = $1 AND n.notice IS NOT NULL AND n.address = r.phone);

-- name: plan_households
-- Every phone of every household in one chunk of the covered villages.
-- $8 first village code of the chunk, $9 last village code of the chunk
WITH kinds AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[]) AS k(kind, message_id, fallback))
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, fallback, priority, queued_at, due_at)
SELECT $1, k.message_id, 'household', h.id, h.village_code, p.phone,
       k.kind, string_to_array(k.fallback, ','), $5, $7, $7
  FROM warning_villages wv
  JOIN households h ON h.village_code = wv.village_code
  CROSS JOIN LATERAL (SELECT DISTINCT unnest(h.phones)) AS p(phone)
  CROSS JOIN kinds k
 WHERE wv.warning_id = $1 AND wv.village_code BETWEEN $8 AND $9
   AND h.village_code BETWEEN $8 AND $9  -- lets the households index serve the chunk's range
   AND (NOT $6 OR h.exercise)
   AND NOT EXISTS (SELECT 1 FROM deliveries n
                    WHERE n.warning_id = $1 AND n.notice IS NOT NULL AND n.address = p.phone);

-- name: village_chunks
-- Split the covered villages into chunks of $2 villages each (about 480 households a village in
-- this city): (first, last) village codes, in code order.
-- $1 warning id, $2 villages per chunk
SELECT min(village_code) AS first, max(village_code) AS last
  FROM (SELECT village_code, (row_number() OVER (ORDER BY village_code) - 1) / $2 AS chunk
          FROM warning_villages WHERE warning_id = $1) AS numbered
 GROUP BY chunk
 ORDER BY first;

-- name: upsert_message
-- The rendered text for one (warning, audience, channel kind); returns its id.
-- $1 warning id, $2 audience, $3 channel kind, $4 body
INSERT INTO messages (warning_id, audience, channel_kind, body) VALUES ($1, $2, $3, $4)
ON CONFLICT (warning_id, audience, channel_kind) DO UPDATE SET body = messages.body
RETURNING id;

-- name: upsert_messages
-- Several texts at once (escalation steps' stand-in texts); returns each one's id.
-- $1 bigint[] warning ids, $2 text[] audiences, $3 text[] channel kinds, $4 text[] bodies
INSERT INTO messages (warning_id, audience, channel_kind, body)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (warning_id, audience, channel_kind) DO UPDATE SET body = messages.body
RETURNING id, audience, channel_kind;

-- name: plan_candidates
-- Active warnings waiting to be planned (or whose planner died mid-way), most urgent first:
-- seismic, then by level, then oldest. A warning whose planning failed waits until $1.
-- $1 now
SELECT id FROM warnings
 WHERE plan_state IN ('pending', 'planning')
   AND (state = 'active' OR (msg_type = 'Cancel' AND state = 'muted'))
   AND (plan_retry_at IS NULL OR plan_retry_at <= $1::timestamptz)
 ORDER BY hazard = 'earthquake' DESC,
          CASE level WHEN 'red' THEN 0 WHEN 'orange' THEN 1 WHEN 'yellow' THEN 2 ELSE 3 END,
          id;

-- name: lock_warning_for_plan
-- The warning's state and plan cursor, held against a concurrent Cancel for one step.
-- $1 warning id
SELECT state = 'active' OR (msg_type = 'Cancel' AND state = 'muted') AS live, plan_cursor
  FROM warnings WHERE id = $1 FOR SHARE;

-- name: plan_failed
-- Record why planning a warning failed, and when to try again.
-- $1 warning id, $2 error, $3 retry at
UPDATE warnings SET plan_error = $2, plan_retry_at = $3 WHERE id = $1;

-- name: lock_plan
-- Hold a warning for planning. The lock is session-level, so it goes away with a crashed
-- planner's connection and another planner resumes from the recorded step.
-- $1 warning id
SELECT pg_try_advisory_lock(2051, $1::integer);

-- name: unlock_plan
-- $1 warning id
SELECT pg_advisory_unlock(2051, $1::integer);

-- name: plan_step_done
-- Record that a planning step is written, in the same transaction as its rows.
-- $1 warning id, $2 step number, $3 done (last step), $4 now
UPDATE warnings
   SET plan_cursor = $2,
       plan_state = CASE WHEN $3 THEN 'done' ELSE 'planning' END,
       planned_at = CASE WHEN $3 THEN $4::timestamptz ELSE planned_at END,
       plan_error = NULL, plan_retry_at = NULL
 WHERE id = $1;

-- name: texts_to_prepare
-- A warning's texts not yet handed to their channels ahead of sending (calls and loudspeakers:
-- their speech is rendered then), SMS aside.
-- $1 warning id, $2 bigint[] ids already handed over
SELECT id, channel_kind, body FROM messages
 WHERE warning_id = $1 AND channel_kind <> 'sms' AND id <> ALL($2::bigint[]);
