-- Warnings: storing what arrived, state transitions, and reading them back.

-- name: insert_warning
-- Store a normalised warning unless its (sender, identifier, sent) key is known; returns its id,
-- or nothing for a duplicate.
-- $1 source, $2 sender, $3 identifier, $4 sent, $5 status, $6 msg_type, $7 refs, $8 hazard,
-- $9 level, $10 event, $11 headline, $12 description, $13 instruction, $14 area_desc, $15 area,
-- $16 effective, $17 expires, $18 state, $19 author, $20 raw, $21 plan_state, $22 received_at,
-- $23 amends_id (an officer's cancel or correction: the warning it is for)
INSERT INTO warnings (source, sender, identifier, sent, status, msg_type, refs, hazard, level,
                      event, headline, description, instruction, area_desc, area, effective,
                      expires, state, author, raw, plan_state, received_at, amends_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21, $22, $23)
ON CONFLICT (source, sender, identifier, sent) DO NOTHING
RETURNING id;

-- name: find_warning_by_key
-- The warning one source stored under a CAP key (its duplicates are that source's alone).
-- $1 source, $2 sender, $3 identifier, $4 sent
SELECT id, state, source, status FROM warnings
 WHERE source = $1 AND sender = $2 AND identifier = $3 AND sent = $4;

-- name: find_referenced
-- The warnings of any source stored under a CAP key, the given source's first: what an
-- Update's or Cancel's reference names.
-- $1 sender, $2 identifier, $3 sent, $4 the referencing source
SELECT id, state, source, status FROM warnings
 WHERE sender = $1 AND identifier = $2 AND sent = $3
 ORDER BY source <> $4, id;

-- name: end_referenced
-- An Update or Cancel ends the warnings it references: state, and the link to its successor.
-- $1 bigint[] referenced ids, $2 new state (superseded | cancelled), $3 the Update or Cancel
UPDATE warnings
   SET state = $2, plan_state = CASE WHEN plan_state = 'none' THEN 'none' ELSE 'done' END,
       ended_by = $3
 WHERE id = ANY($1::bigint[]) AND state IN ('active', 'pending_approval')
RETURNING id;

-- name: inherited_short_code
-- The short code an Update keeps: that of the first warning it superseded. $1 bigint[] ended ids
SELECT short_code FROM warnings WHERE id = ANY($1::bigint[]) AND short_code IS NOT NULL
 ORDER BY id LIMIT 1;

-- name: cancel_queued
-- Stop what has not been sent yet for these warnings.
-- $1 bigint[] warning ids, $2 reason, $3 now
UPDATE deliveries SET state = 'cancelled', cancelled_at = $3, error = $2
 WHERE warning_id = ANY($1::bigint[]) AND state = 'queued';

-- name: get_warning
-- $1 warning id
SELECT * FROM warnings WHERE id = $1;

-- name: approve_warning
-- A second officer approves a warning waiting for approval: it takes the state the gate gives
-- it (active; muted for a Cancel) and is planned if that says so.
-- $1 warning id, $2 approver, $3 now, $4 new state, $5 planned (bool)
UPDATE warnings
   SET state = $4, approver = $2, approved_at = $3,
       plan_state = CASE WHEN $5::bool THEN 'pending' ELSE 'none' END
 WHERE id = $1 AND state = 'pending_approval'
RETURNING id;

-- name: reject_warning
-- An approver refuses a warning waiting for approval: it never goes out.
-- $1 warning id
UPDATE warnings SET state = 'rejected' WHERE id = $1 AND state = 'pending_approval'
RETURNING id;

-- name: insert_rejection
-- Keep a refused message for the duty officer. $1 feed, $2 error code, $3 detail, $4 body
INSERT INTO rejected_messages (feed, error, detail, body) VALUES ($1, $2, $3, $4) RETURNING id;

-- name: audit
-- Append to the audit log, at the time of warnd's clock (the one call-out events use, so that a
-- drill on a fast clock reads in order). $1 actor, $2 action, $3 subject, $4 detail (jsonb), $5 at
INSERT INTO audit_log (actor, action, subject, detail, at) VALUES ($1, $2, $3, $4, $5);

-- name: expire_warnings
-- Active warnings past their expiry end, and with them their unsent deliveries, open call-outs
-- and field tasks (escalation stops; the lists show them closed at once).
-- $1 now
WITH ended AS (
    UPDATE warnings
       SET state = 'expired', plan_state = CASE WHEN plan_state = 'none' THEN 'none' ELSE 'done' END
     WHERE state IN ('active', 'pending_approval') AND expires IS NOT NULL
       AND expires <= $1::timestamptz
    RETURNING id
),
stopped AS (
    UPDATE deliveries
       SET state = 'cancelled', cancelled_at = $1::timestamptz, error = 'warning expired'
     WHERE warning_id IN (SELECT id FROM ended) AND state = 'queued'
    RETURNING id
),
closed_callouts AS (
    UPDATE callouts SET state = 'closed', closed_at = $1::timestamptz, next_check_at = NULL
     WHERE warning_id IN (SELECT id FROM ended) AND state IN ('pending', 'notified', 'escalated')
    RETURNING id
),
callout_closed_events AS (
    INSERT INTO callout_events (callout_id, at, kind, detail)
    SELECT id, $1::timestamptz, 'closed', '{"reason": "warning expired"}' FROM closed_callouts
    RETURNING id
),
closed_tasks AS (
    UPDATE field_tasks SET state = 'closed', closed_at = $1::timestamptz, next_check_at = NULL
     WHERE warning_id IN (SELECT id FROM ended) AND state IN ('open', 'escalated')
    RETURNING id
),
task_closed_events AS (
    INSERT INTO field_task_events (task_id, at, kind, detail)
    SELECT id, $1::timestamptz, 'closed', '{"reason": "warning expired"}' FROM closed_tasks
    RETURNING id
)
SELECT (SELECT count(*) FROM ended) AS warnings;

-- name: feed_last_seen
-- When each feed last sent anything, accepted or rejected. $1 text[] feed names
SELECT feed, max(at) AS last_seen
  FROM (SELECT source AS feed, received_at AS at FROM warnings WHERE source = ANY($1::text[])
        UNION ALL
        SELECT feed, received_at FROM rejected_messages WHERE feed = ANY($1::text[])) AS seen
 GROUP BY feed;

-- name: feed_health_change
-- Record a feed's state; returns a row only if this call changed it (so one process reports it),
-- with ``first`` true when the feed had no state before.
-- $1 feed, $2 silent, $3 now
INSERT INTO feed_health AS f (feed, silent, changed_at) VALUES ($1, $2, $3::timestamptz)
ON CONFLICT (feed) DO UPDATE SET silent = excluded.silent, changed_at = excluded.changed_at
 WHERE f.silent <> excluded.silent
RETURNING xmax = 0 AS first;

-- name: open_short_codes
-- The short codes open warnings hold. Callers hold the short-code advisory lock for their
-- transaction, so two ingests never pick the same free code.
SELECT short_code FROM warnings
 WHERE short_code IS NOT NULL AND state IN ('pending_approval', 'active');

-- name: set_short_code
-- $1 warning id, $2 short code
UPDATE warnings SET short_code = $2 WHERE id = $1;

-- name: warning_for_release
-- A waiting warning about to be approved, locked: its state, source and what it amends.
-- $1 warning id
SELECT state, source, amends_id FROM warnings WHERE id = $1 FOR UPDATE;
