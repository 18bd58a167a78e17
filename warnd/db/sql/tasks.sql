-- Field tasks (敲门入户, 鸣锣吹哨): opening them, their messages, progress and escalation.

-- name: door_knock_candidates
-- One door-knocking task per helper and village of the warning: the special-group persons to
-- visit, and the people an overdue task escalates to (the helper's backup, then the village's
-- responsible person).
-- $1 warning id, $2 exercise only
SELECT p.helper_id AS assignee_id, p.village_code, r.name AS assignee_name, r.phone,
       count(*) AS targets,
       string_agg(p.name || CASE WHEN p.address <> '' THEN '(' || p.address || ')' ELSE '' END,
                  '、' ORDER BY p.id) AS whom,
       b.id AS backup_id, b.name AS backup_name, sup.id AS superior_id, sup.name AS superior_name,
       v.name AS village_name
  FROM special_persons p
  JOIN warning_villages wv ON wv.warning_id = $1 AND wv.village_code = p.village_code
  JOIN responders r ON r.id = p.helper_id
  JOIN divisions v ON v.code = p.village_code
  LEFT JOIN responders b ON b.id = r.backup_id
  LEFT JOIN LATERAL (
      SELECT s.id, s.name FROM responders s
       WHERE s.division_code = p.village_code AND s.level = 'village' AND s.id <> r.id
       ORDER BY s.id LIMIT 1
  ) AS sup ON true
 WHERE NOT $2 OR p.exercise
 GROUP BY p.helper_id, p.village_code, r.name, r.phone, b.id, b.name, sup.id, sup.name, v.name;

-- name: gong_candidates
-- One gong task per blind-spot or remote village of the warning (or, $4 given, per village of
-- $4: their loudspeakers failed), for its first village responsible person; an overdue one
-- escalates to their backup, then the town's.
-- $1 warning id, $2 speciality or NULL, $3 exercise only, $4 text[] villages or NULL
SELECT r.id AS assignee_id, v.code AS village_code, r.name AS assignee_name, r.phone,
       1 AS targets, '' AS whom,
       b.id AS backup_id, b.name AS backup_name, sup.id AS superior_id, sup.name AS superior_name,
       v.name AS village_name
  FROM warning_villages wv
  JOIN divisions v ON v.code = wv.village_code
                  AND CASE WHEN $4::text[] IS NULL THEN v.blind_spot OR v.remote
                           ELSE v.code = ANY ($4::text[]) END
  CROSS JOIN LATERAL (
      SELECT s.* FROM responders s
       WHERE s.division_code = v.code AND s.level = 'village'
         AND ($2::text IS NULL OR s.specialities && ARRAY['all', $2::text])
         AND (NOT $3 OR s.exercise)
       ORDER BY s.id LIMIT 1
  ) AS r
  LEFT JOIN responders b ON b.id = r.backup_id
  LEFT JOIN LATERAL (
      SELECT s.id, s.name FROM responders s
       WHERE s.division_code = v.parent_code
         AND ($2::text IS NULL OR s.specialities && ARRAY['all', $2::text])
       ORDER BY s.id LIMIT 1
  ) AS sup ON true
 WHERE wv.warning_id = $1;

-- name: insert_field_tasks
-- Open tasks (once per warning, kind, village and assignee); returns the ones opened now, so
-- that only they get a task message (a task an Update carried over was told already).
-- $1 warning id, $2 kind, $3 text[] villages, $4 bigint[] assignees, $5 text[] phones,
-- $6 int[] targets, $7 jsonb[] snapshots, $8 timestamptz[] first checks, $9 deadline, $10 now
WITH opened AS (
    INSERT INTO field_tasks (warning_id, kind, village_code, assignee_id, phone, targets,
                             opened_at, deadline, snapshot, next_check_at)
    SELECT $1, $2, t.village_code, t.assignee_id, t.phone, t.targets, $10::timestamptz,
           $9::timestamptz, t.snapshot, t.check_at
      FROM unnest($3::text[], $4::bigint[], $5::text[], $6::int[], $7::jsonb[],
                  $8::timestamptz[]) AS t(village_code, assignee_id, phone, targets, snapshot,
                                          check_at)
    ON CONFLICT (warning_id, kind, village_code, assignee_id) DO NOTHING
    RETURNING id, village_code, assignee_id
),
events AS (
    INSERT INTO field_task_events (task_id, at, kind, detail)
    SELECT id, $10::timestamptz, 'opened', jsonb_build_object('kind', $2::text) FROM opened
    RETURNING id
)
SELECT id, village_code, assignee_id FROM opened;

-- name: task_deliveries
-- Queue each new task's own message to its assignee, on every kind the audience uses.
-- $1 warning id, $2 bigint[] task ids, $3 text[] kinds, $4 bigint[] message ids (task × kind,
-- task-major), $5 priority, $6 now
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, priority, queued_at, due_at, task_id)
SELECT $1, m.message_id, 'field_task', t.id, t.village_code, t.phone, m.kind, $5,
       $6::timestamptz, $6::timestamptz, t.id
  FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS m(task_id, kind, message_id)
  JOIN field_tasks t ON t.id = m.task_id;

-- name: task_progress
-- Progress reports by SMS, in one statement: "完成" finishes every open task of the sender (of
-- the named warning, if a code was given); a count applies to the sender's oldest open task and
-- never lowers what was reported before. The sender is the assignee, or someone an escalation
-- step of the task texted. Returns each task changed with the number that reported.
-- $1 text[] phones, $2 bigint[] warning ids (NULL: any), $3 int[] counts (NULL: none),
-- $4 bool[] done, $5 now
WITH reports AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bool[])
        WITH ORDINALITY AS r(phone, warning_id, households, done, ord)
),
matches AS (
    SELECT t.id, r.* FROM reports r
      JOIN field_tasks t ON t.phone = r.phone AND t.state IN ('open', 'escalated')
    UNION ALL
    SELECT d.task_id, r.* FROM reports r
      JOIN deliveries d ON d.audience = 'field_task' AND d.step IS NOT NULL AND d.address = r.phone
),
ranked AS (
    SELECT m.*, t.targets, row_number() OVER (PARTITION BY m.ord ORDER BY t.id) AS nth
      FROM matches m JOIN field_tasks t ON t.id = m.id
     WHERE t.state IN ('open', 'escalated') AND (m.warning_id IS NULL OR t.warning_id = m.warning_id)
),
chosen AS (
    -- The last report about a task wins among those in one batch.
    SELECT DISTINCT ON (id) id, phone, households, done, targets
      FROM ranked WHERE done OR nth = 1
     ORDER BY id, ord DESC
),
updated AS (
    UPDATE field_tasks t
       SET done = CASE WHEN c.done THEN t.targets
                       ELSE least(t.targets, greatest(t.done, coalesce(c.households, 0))) END,
           reported_at = $5::timestamptz,
           state = CASE WHEN c.done OR c.households >= t.targets THEN 'done' ELSE t.state END,
           completed_at = CASE WHEN c.done OR c.households >= t.targets THEN $5::timestamptz END,
           next_check_at = CASE WHEN c.done OR c.households >= t.targets THEN NULL
                                ELSE t.next_check_at END
      FROM chosen c
     WHERE t.id = c.id AND t.state IN ('open', 'escalated')
    RETURNING t.id, t.state, t.done, t.targets, c.phone
),
stopped AS (
    -- A finished task's queued reminders and escalation messages are no longer needed.
    UPDATE deliveries d SET state = 'cancelled', cancelled_at = $5::timestamptz, error = 'task done'
      FROM updated u
     WHERE d.task_id = u.id AND u.state = 'done' AND d.state = 'queued'
    RETURNING d.id
),
events AS (
    INSERT INTO field_task_events (task_id, at, kind, actor, detail)
    SELECT id, $5::timestamptz, CASE WHEN state = 'done' THEN 'done' ELSE 'progress' END, phone,
           jsonb_build_object('done', done, 'targets', targets)
      FROM updated
    RETURNING id
)
SELECT id, state, done, targets, phone FROM updated;

-- name: due_tasks
-- Field tasks whose timer is due, locked for this scanner (see due_callouts).
-- $1 now, $2 how many
SELECT t.id, t.warning_id, t.assignee_id AS responder_id, t.state, t.snapshot, t.cursor,
       t.phone, w.state AS warning_state
  FROM field_tasks t JOIN warnings w ON w.id = t.warning_id
 WHERE t.next_check_at <= $1::timestamptz
 ORDER BY t.next_check_at
 LIMIT $2
   FOR UPDATE OF t SKIP LOCKED;

-- name: advance_tasks
-- Record a scan's decisions on its locked field tasks (see advance_callouts).
-- $1 bigint[] ids, $2 int[] cursors, $3 text[] states, $4 timestamptz[] next checks, $5 now
UPDATE field_tasks t
   SET cursor = a.cursor, state = a.state, next_check_at = a.next_check,
       closed_at = CASE WHEN a.state = 'closed' THEN $5::timestamptz ELSE t.closed_at END
  FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[])
       AS a(id, cursor, state, next_check)
 WHERE t.id = a.id;

-- name: task_events
-- Append a scan's events, in the order decided.
-- $1 bigint[] task ids, $2 text[] kinds, $3 jsonb[] details, $4 at
INSERT INTO field_task_events (task_id, at, kind, detail)
SELECT e.id, $4::timestamptz, e.kind, e.detail
  FROM unnest($1::bigint[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS e(id, kind, detail, n)
 ORDER BY e.n;

-- name: task_step_deliveries
-- Queue the messages of a scan's fired task steps (see escalation_deliveries).
-- $1 bigint[] task ids, $2 int[] steps, $3 bigint[] target responders, $4 text[] kinds,
-- $5 bigint[] message ids, $6 int[] priorities, $7 now
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, priority, queued_at, due_at, task_id, step)
SELECT t.warning_id, q.message_id, 'field_task', t.id, r.division_code, r.phone, q.kind,
       q.priority, $7::timestamptz, $7::timestamptz, t.id, q.step
  FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::bigint[], $6::int[])
       AS q(id, step, target, kind, message_id, priority)
  JOIN field_tasks t ON t.id = q.id
  JOIN responders r ON r.id = q.target
ON CONFLICT ON CONSTRAINT deliveries_recipient_key DO NOTHING;

-- name: tasks_for_steps
-- Whom stand-ins are told about: each task's assignee, village and progress.
-- $1 bigint[] task ids
SELECT t.id, r.name AS person, v.name AS division, t.kind AS task_kind, t.done, t.targets
  FROM field_tasks t
  JOIN responders r ON r.id = t.assignee_id
  JOIN divisions v ON v.code = t.village_code
 WHERE t.id = ANY($1::bigint[]);

-- name: silent_speaker_villages
-- Per live warning, the villages whose loudspeaker command failed for good (offline, stale,
-- refused) and that have a village responder but no gong task yet: the broadcast's fallback.
SELECT d.warning_id, array_agg(DISTINCT d.address ORDER BY d.address) AS villages
  FROM deliveries d
  JOIN warnings w ON w.id = d.warning_id AND w.state = 'active'
 WHERE d.audience = 'broadcast' AND d.state = 'failed'
   AND EXISTS (SELECT 1 FROM responders r
                WHERE r.division_code = d.address AND r.level = 'village')
   AND NOT EXISTS (SELECT 1 FROM field_tasks t
                    WHERE t.warning_id = d.warning_id AND t.kind = 'gong'
                      AND t.village_code = d.address)
 GROUP BY d.warning_id;

-- name: list_field_tasks
-- One page of a warning's field tasks in id order, with the village, its town and county, the
-- assignee, and why a gong was ordered (a blind spot, a remote village, or a silent loudspeaker).
-- $1 warning id, $2 kind or NULL, $3 state or NULL, $4 after this id, $5 limit
SELECT t.id, t.kind, t.village_code, v.name AS village, tn.name AS town, c.name AS county,
       r.name AS assignee, t.phone, t.targets, t.done, t.state, t.opened_at, t.deadline,
       t.reported_at, t.completed_at, t.closed_at,
       CASE WHEN t.kind <> 'gong' THEN NULL
            WHEN v.blind_spot THEN 'blind_spot'
            WHEN v.remote THEN 'remote'
            ELSE 'loudspeaker_failed' END AS why
  FROM field_tasks t
  JOIN divisions v ON v.code = t.village_code
  LEFT JOIN divisions tn ON tn.code = left(t.village_code, 9) || '000'
  LEFT JOIN divisions c ON c.code = left(t.village_code, 6) || '000000'
  JOIN responders r ON r.id = t.assignee_id
 WHERE t.warning_id = $1 AND ($2::text IS NULL OR t.kind = $2)
   AND ($3::text IS NULL OR t.state = $3) AND t.id > $4
 ORDER BY t.id
 LIMIT $5;
