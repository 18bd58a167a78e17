-- Call-outs (叫应): opening them, answers, and the escalation timers.

-- name: callees
-- The responders who must answer a warning, with what their escalation chain needs: the backup
-- (B角) and the responsible person of the parent division with the warning's speciality.
-- $1 warning id, $2 speciality or NULL, $3 text[] responder levels, $4 exercise only
SELECT r.id, r.name, r.phone, r.level,
       b.id AS backup_id, b.name AS backup_name,
       sup.id AS superior_id, sup.name AS superior_name
  FROM responders r
  JOIN covered_codes($1, $3::text[]) c ON r.division_code = c.code
  JOIN divisions d ON d.code = r.division_code
  LEFT JOIN responders b ON b.id = r.backup_id
  LEFT JOIN LATERAL (
      SELECT s.id, s.name FROM responders s
       WHERE s.division_code = d.parent_code
         AND ($2::text IS NULL OR s.specialities && ARRAY['all', $2::text])
       ORDER BY s.id
       LIMIT 1
  ) AS sup ON true
 WHERE ($2::text IS NULL OR r.specialities && ARRAY['all', $2::text])
   AND (NOT $4 OR r.exercise)
   AND r.level = ANY($3::text[]);

-- name: insert_callouts
-- Open call-outs (once per warning and responder); the responders' deliveries, written next in
-- the same step, point at them.
-- $1 warning id, $2 bigint[] responder ids, $3 text[] phones, $4 text[] levels,
-- $5 timestamptz[] deadlines, $6 jsonb[] snapshots, $7 timestamptz[] first checks, $8 now
WITH opened AS (
    INSERT INTO callouts (warning_id, responder_id, phone, level, opened_at, deadline, snapshot,
                          next_check_at)
    SELECT $1, r.responder_id, r.phone, r.level, $8::timestamptz, r.deadline, r.snapshot, r.check_at
      FROM unnest($2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[],
                  $7::timestamptz[]) AS r(responder_id, phone, level, deadline, snapshot, check_at)
    ON CONFLICT (warning_id, responder_id) DO NOTHING
    RETURNING id
),
events AS (
    INSERT INTO callout_events (callout_id, at, kind)
    SELECT id, $8::timestamptz, 'opened' FROM opened
    RETURNING id
)
SELECT count(*) FROM opened;

-- name: acknowledge
-- Answer open call-outs, for a batch of answers at once: by the number that answered (the callee,
-- or a stand-in an escalation step reached for that call-out: its message was sent), limited to
-- one warning when the reply named its code. A plain answer from a number with both a live and
-- an exercise call-out open answers neither: a drill must never close a live call-out, nor the
-- reverse; such numbers come back with a NULL id (the answer was ambiguous).
-- Returns each call-out answered with the number that answered it.
-- $1 text[] phones, $2 bigint[] warning ids (NULL: every open call-out of the number),
-- $3 via (sms | voice), $4 now, $5 bigint[] only these call-outs (NULL: any)
WITH answers AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $5::bigint[]) AS a(phone, warning_id, only_id)
),
matches AS (
    -- Two index lookups per answer (an OR of both would scan every open call-out per answer).
    SELECT c.id, a.phone, a.warning_id, a.only_id
      FROM answers a
      JOIN callouts c ON c.phone = a.phone AND c.state IN ('pending', 'notified', 'escalated')
    UNION ALL
    SELECT d.callout_id, a.phone, a.warning_id, a.only_id
      FROM answers a
      JOIN deliveries d ON d.audience = 'escalation' AND d.address = a.phone
                       AND d.state IN ('sent', 'delivered')
),
candidates AS (
    SELECT DISTINCT ON (c.id) c.id, m.phone,
           m.warning_id IS NULL AND m.only_id IS NULL AS plain, w.status = 'Exercise' AS exercise
      FROM matches m
      JOIN callouts c ON c.id = m.id
      JOIN warnings w ON w.id = c.warning_id
     WHERE c.state IN ('pending', 'notified', 'escalated')
       AND (m.warning_id IS NULL OR c.warning_id = m.warning_id)
       AND (m.only_id IS NULL OR c.id = m.only_id)
     ORDER BY c.id, m.phone
),
ambiguous AS (
    SELECT phone FROM candidates WHERE plain
     GROUP BY phone HAVING bool_or(exercise) AND NOT bool_and(exercise)
),
targets AS (
    SELECT id, phone FROM candidates
     WHERE NOT (plain AND phone IN (SELECT phone FROM ambiguous))
),
answered AS (
    UPDATE callouts c
       SET state = 'acknowledged', acknowledged_at = $4::timestamptz,
           ack_late = $4::timestamptz > c.deadline, ack_via = $3, ack_by = t.phone,
           next_check_at = NULL
      FROM targets t
     WHERE c.id = t.id
       AND c.state IN ('pending', 'notified', 'escalated')
    RETURNING c.id, c.ack_late, t.phone
),
stopped AS (
    -- An answer on any channel stops that call-out's queued attempts on every other channel.
    UPDATE deliveries d
       SET state = 'cancelled', cancelled_at = $4::timestamptz, error = 'answered'
      FROM answered a
     WHERE d.callout_id = a.id AND d.state = 'queued'
    RETURNING d.id
),
events AS (
    INSERT INTO callout_events (callout_id, at, kind, actor, detail)
    SELECT a.id, $4::timestamptz, 'acknowledged', a.phone,
           jsonb_build_object('via', $3::text, 'late', a.ack_late)
      FROM answered a
    RETURNING id
)
SELECT id, ack_late, phone FROM answered
UNION ALL
SELECT NULL, NULL, phone FROM ambiguous;

-- name: warnings_by_code
-- The open warnings some replies' short codes name. $1 text[] short codes
SELECT id, short_code FROM warnings
 WHERE short_code = ANY($1::text[]) AND state IN ('active', 'pending_approval');

-- name: delivery_for_call
-- The delivery (and its call-out) a voice call result reports on. $1 channel, $2 external id
SELECT id, callout_id, address FROM deliveries WHERE channel = $1 AND external_id = $2;

-- name: due_callouts
-- Call-outs whose timer is due, locked for this scanner; others' locked rows are skipped, so two
-- warnd processes never work the same call-out at once.
-- $1 now, $2 how many
SELECT c.id, c.warning_id, c.responder_id, c.state, c.snapshot, c.cursor, c.phone,
       w.state AS warning_state
  FROM callouts c JOIN warnings w ON w.id = c.warning_id
 WHERE c.next_check_at <= $1::timestamptz
 ORDER BY c.next_check_at
 LIMIT $2
   FOR UPDATE OF c SKIP LOCKED;

-- name: responder_messages
-- The responders' texts of a warning, one per channel kind: what a repeat call sends again.
-- $1 warning id
SELECT id, channel_kind FROM messages WHERE warning_id = $1 AND audience = 'responder';

-- name: acknowledge_by_officer
-- An officer records an answer obtained another way (a call, in person) for one open call-out:
-- acknowledged via 'officer' by that officer, late when past the deadline, its timer stopped, its
-- queued attempts on every channel cancelled and the event appended. No row when the call-out
-- does not exist or is no longer open; a concurrent answer wins or loses as a whole, since the
-- state is rechecked under the row lock.
-- $1 call-out id, $2 officer's name, $3 reason, $4 now
WITH answered AS (
    UPDATE callouts c
       SET state = 'acknowledged', acknowledged_at = $4::timestamptz,
           ack_late = $4::timestamptz > c.deadline, ack_via = 'officer', ack_by = $2,
           next_check_at = NULL
     WHERE c.id = $1 AND c.state IN ('pending', 'notified', 'escalated')
    RETURNING c.id, c.warning_id, c.ack_late
),
stopped AS (
    UPDATE deliveries d
       SET state = 'cancelled', cancelled_at = $4::timestamptz, error = 'answered'
      FROM answered a
     WHERE d.callout_id = a.id AND d.state = 'queued'
    RETURNING d.id
),
events AS (
    INSERT INTO callout_events (callout_id, at, kind, actor, detail)
    SELECT a.id, $4::timestamptz, 'acknowledged', $2,
           jsonb_build_object('via', 'officer', 'reason', $3::text, 'late', a.ack_late)
      FROM answered a
    RETURNING id
)
SELECT a.id, a.warning_id, a.ack_late, (SELECT count(*) FROM stopped) AS cancelled
  FROM answered a;

-- name: callout_status
-- Why an officer's acknowledgement changed nothing: the call-out's state, and when and by whom
-- it was answered or closed. No row when it does not exist. $1 call-out id
SELECT id, warning_id, state, acknowledged_at, ack_via, ack_by, closed_at
  FROM callouts WHERE id = $1;

-- name: carry_callouts
-- An Update takes over the call-outs of the warnings it superseded whose responder is still
-- inside its area, whatever their state: an open one keeps its deadline, cursor and timer, an
-- answered one stays answered. One per responder (an Update may supersede two warnings).
-- $1 bigint[] superseded warning ids, $2 the Update, $3 now
WITH inside AS (
    SELECT DISTINCT ON (c.responder_id) c.id, c.warning_id
      FROM callouts c
      JOIN responders r ON r.id = c.responder_id
     WHERE c.warning_id = ANY($1::bigint[]) AND c.state <> 'closed'
       AND r.division_code IN (SELECT code FROM covered_codes($2))
     ORDER BY c.responder_id, c.id DESC
),
moved AS (
    UPDATE callouts c SET warning_id = $2 FROM inside i WHERE c.id = i.id
    RETURNING c.id, i.warning_id AS was
)
INSERT INTO callout_events (callout_id, at, kind, detail)
SELECT id, $3::timestamptz, 'carried_over', jsonb_build_object('from', was, 'to', $2::bigint)
  FROM moved;

-- name: close_callouts
-- The open call-outs of ended warnings close at once: escalation stops, the list is honest.
-- $1 bigint[] warning ids, $2 reason, $3 now
WITH closed AS (
    UPDATE callouts
       SET state = 'closed', closed_at = $3::timestamptz, next_check_at = NULL
     WHERE warning_id = ANY($1::bigint[]) AND state IN ('pending', 'notified', 'escalated')
    RETURNING id
)
INSERT INTO callout_events (callout_id, at, kind, detail)
SELECT id, $3::timestamptz, 'closed', jsonb_build_object('reason', $2::text) FROM closed;

-- name: carry_field_tasks
-- Like carry_callouts, for field tasks whose village is still inside the Update's area.
-- $1 bigint[] superseded warning ids, $2 the Update, $3 now
WITH inside AS (
    SELECT DISTINCT ON (t.kind, t.village_code, t.assignee_id) t.id, t.warning_id
      FROM field_tasks t
      JOIN warning_villages wv ON wv.warning_id = $2 AND wv.village_code = t.village_code
     WHERE t.warning_id = ANY($1::bigint[]) AND t.state <> 'closed'
     ORDER BY t.kind, t.village_code, t.assignee_id, t.id DESC
),
moved AS (
    UPDATE field_tasks t SET warning_id = $2 FROM inside i WHERE t.id = i.id
    RETURNING t.id, i.warning_id AS was
)
INSERT INTO field_task_events (task_id, at, kind, detail)
SELECT id, $3::timestamptz, 'carried_over', jsonb_build_object('from', was, 'to', $2::bigint)
  FROM moved;

-- name: close_field_tasks
-- $1 bigint[] warning ids, $2 reason, $3 now
WITH closed AS (
    UPDATE field_tasks
       SET state = 'closed', closed_at = $3::timestamptz, next_check_at = NULL
     WHERE warning_id = ANY($1::bigint[]) AND state IN ('open', 'escalated')
    RETURNING id
)
INSERT INTO field_task_events (task_id, at, kind, detail)
SELECT id, $3::timestamptz, 'closed', jsonb_build_object('reason', $2::text) FROM closed;

-- name: advance_callouts
-- Record a scan's decisions on its locked call-outs: the new cursor, state and timer of each.
-- $1 bigint[] ids, $2 int[] cursors, $3 text[] states, $4 timestamptz[] next checks, $5 now
UPDATE callouts c
   SET cursor = a.cursor, state = a.state, next_check_at = a.next_check,
       closed_at = CASE WHEN a.state = 'closed' THEN $5::timestamptz ELSE c.closed_at END
  FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[])
       AS a(id, cursor, state, next_check)
 WHERE c.id = a.id;

-- name: callout_events
-- Append a scan's events, in the order decided.
-- $1 bigint[] call-out ids, $2 text[] kinds, $3 jsonb[] details, $4 at
INSERT INTO callout_events (callout_id, at, kind, detail)
SELECT e.id, $4::timestamptz, e.kind, e.detail
  FROM unnest($1::bigint[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS e(id, kind, detail, n)
 ORDER BY e.n;

-- name: escalation_deliveries
-- Queue the messages of a scan's fired steps to their targets (the callee again, the backup or
-- the superior), most urgent. The recipient is the call-out, not the target: a town head who
-- stands in for two villages' unanswered call-outs gets one message for each; the unique key
-- makes a re-run of the same step a no-op.
-- $1 bigint[] call-out ids, $2 int[] steps, $3 bigint[] target responders, $4 text[] kinds,
-- $5 bigint[] message ids, $6 int[] priorities, $7 now
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, priority, queued_at, due_at, callout_id, step)
SELECT c.warning_id, q.message_id, 'escalation', c.id, r.division_code, r.phone, q.kind,
       q.priority, $7::timestamptz, $7::timestamptz, c.id, q.step
  FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::bigint[], $6::int[])
       AS q(id, step, target, kind, message_id, priority)
  JOIN callouts c ON c.id = q.id
  JOIN responders r ON r.id = q.target
ON CONFLICT ON CONSTRAINT deliveries_recipient_key DO NOTHING;

-- name: callouts_for_steps
-- Whom stand-ins are told about: each call-out's callee and their division.
-- $1 bigint[] call-out ids
SELECT c.id, r.name AS person, d.name AS division
  FROM callouts c JOIN responders r ON r.id = c.responder_id
  JOIN divisions d ON d.code = r.division_code
 WHERE c.id = ANY($1::bigint[]);

-- name: step_warnings
-- What the messages of a scan's steps need of their warnings. $1 bigint[] warning ids
SELECT id, hazard, level, status, short_code FROM warnings WHERE id = ANY($1::bigint[]);

-- name: next_timer
-- When the earliest call-out or field-task timer comes due (two index lookups).
SELECT min(due) FROM (SELECT min(next_check_at) AS due FROM callouts
                      UNION ALL SELECT min(next_check_at) FROM field_tasks) AS timers;

-- name: count_replies
-- Count a batch's replies against each number's minute; returns per number how many it had sent
-- in that minute before this batch.
-- $1 text[] phones (one per reply), $2 the minute (truncated to the minute)
WITH batch AS (
    SELECT phone, count(*)::integer AS n FROM unnest($1::text[]) AS r(phone) GROUP BY phone
),
counted AS (
    -- In phone order: two batches locking the same numbers in another order would deadlock.
    INSERT INTO reply_counts (phone, minute, n)
    SELECT phone, $2::timestamptz, n FROM batch ORDER BY phone
    ON CONFLICT (phone, minute) DO UPDATE SET n = reply_counts.n + excluded.n
    RETURNING phone, n
)
SELECT c.phone, c.n - b.n AS before FROM counted c JOIN batch b USING (phone);

-- name: prune_reply_counts
-- Forget the reply counts of minutes long past. $1 older than this
DELETE FROM reply_counts WHERE minute < $1;
