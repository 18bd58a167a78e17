-- Blind drills (双盲演练): scheduled with a secret moment and scenario, fired by the daemon.

-- name: drill_insert
-- A scheduled drill. $1 officer, $2 now, $3 window start, $4 window end, $5 counties (12-digit),
-- $6 fire at, $7 scenario (jsonb), $8 the scenarios drawn from (jsonb), $9 state
INSERT INTO blind_drills (scheduled_by, scheduled_at, window_start, window_end, counties, fire_at,
                          scenario, scenarios, state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: drill_approve
-- A second officer releases a drill waiting for approval. $1 id, $2 approver, $3 now
UPDATE blind_drills SET state = 'scheduled', approved_by = $2, approved_at = $3
 WHERE id = $1 AND state = 'pending_approval' AND scheduled_by <> $2 AND window_end > $3
RETURNING *;

-- name: drill_counties_known
-- Which of the given 12-digit codes are counties of the roster. $1 text[] codes
SELECT code FROM divisions WHERE level = 'county' AND code = ANY($1::text[]);

-- name: drill_list
-- Drills, newest first, at most $1, with the name of the county the scenario picked.
SELECT d.*, coalesce(c.name, '') AS county_name
  FROM blind_drills d
  LEFT JOIN divisions c ON c.code = d.scenario ->> 'county'
 ORDER BY d.id DESC
 LIMIT $1;

-- name: drill_get
-- One drill. $1 id
SELECT d.*, coalesce(c.name, '') AS county_name
  FROM blind_drills d
  LEFT JOIN divisions c ON c.code = d.scenario ->> 'county'
 WHERE d.id = $1;

-- name: drill_cancel
-- Cancel a drill that has not fired. $1 id, $2 officer, $3 now
UPDATE blind_drills SET state = 'cancelled', cancelled_by = $2, cancelled_at = $3
 WHERE id = $1 AND state IN ('pending_approval', 'scheduled')
RETURNING *;

-- name: drills_due
-- Scheduled drills due at $1. Not locked: firing stores a warning in a transaction of its own,
-- and drill_fired (WHERE state = 'scheduled') in that transaction is what lets one process only
-- fire each. $1 now
SELECT * FROM blind_drills
 WHERE state = 'scheduled' AND fire_at <= $1
 ORDER BY fire_at;

-- name: drill_live_warning
-- A live (Actual, active, not expired) orange or red alert or update covering the county $1 at
-- $2: what postpones a drill there. The first, by id.
SELECT w.id FROM warnings w
 WHERE w.status = 'Actual' AND w.state = 'active' AND w.level IN ('orange', 'red')
   AND w.msg_type IN ('Alert', 'Update')
   AND (w.expires IS NULL OR w.expires > $2::timestamptz)
   AND EXISTS (SELECT 1 FROM warning_villages v
                WHERE v.warning_id = w.id AND left(v.village_code, 6) = left($1, 6))
 ORDER BY w.id
 LIMIT 1;

-- name: drill_postpone
-- Postpone a due drill to $2 (unless another process did, or it fired or was cancelled).
-- $1 id, $2 until, $3 now
UPDATE blind_drills SET fire_at = $2, postponements = postponements + 1
 WHERE id = $1 AND state = 'scheduled' AND fire_at <= $3;

-- name: drill_fired
-- The drill fired as warning $2 at $3. $1 id
UPDATE blind_drills SET state = 'fired', warning_id = $2, fired_at = $3
 WHERE id = $1 AND state = 'scheduled';

-- name: drill_next_due
-- When the next scheduled drill is due (NULL: none).
SELECT min(fire_at) FROM blind_drills WHERE state = 'scheduled';
