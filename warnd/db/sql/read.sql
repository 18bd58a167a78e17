-- Read queries of the HTTP API: lists, progress counts, deliveries and rejected messages.
-- Nothing here writes; every list is keyset-paginated on id so a page never skips or repeats.

-- name: ping
-- Is the database reachable? (readiness probe)
SELECT 1;

-- name: list_warnings
-- Warnings, newest first, optionally in one state.
-- $1 state or NULL for all, $2 only ids below this one (NULL for the first page), $3 limit
SELECT id, source, sender, identifier, sent, status, msg_type, hazard, level, event, headline,
       area_desc, expires, state, plan_state, author, approver, approved_at, received_at,
       supersedes_id
  FROM warnings
 WHERE ($1::text IS NULL OR state = $1) AND ($2::bigint IS NULL OR id < $2)
 ORDER BY id DESC
 LIMIT $3;

-- name: delivery_counts
-- A warning's deliveries counted by audience and state, with the first and last hand-over of the
-- audience: read from the tallies and their unfolded changes (migration 012), never from the
-- deliveries. $1 warning id
WITH per_audience AS (
    SELECT audience, sum(queued) AS queued, sum(sending) AS sending, sum(sent) AS sent,
           sum(delivered) AS delivered, sum(failed) AS failed, sum(cancelled) AS cancelled,
           min(first_sent) AS first_sent, max(last_sent) AS last_sent
      FROM (SELECT * FROM delivery_tallies WHERE warning_id = $1
            UNION ALL
            SELECT * FROM delivery_tally_changes WHERE warning_id = $1) AS t
     GROUP BY audience
)
SELECT a.audience, s.state, s.n, a.first_sent, a.last_sent
  FROM per_audience a
 CROSS JOIN LATERAL (VALUES ('cancelled', a.cancelled), ('delivered', a.delivered),
                            ('failed', a.failed), ('queued', a.queued), ('sending', a.sending),
                            ('sent', a.sent)) AS s(state, n)
 WHERE s.n > 0
 ORDER BY a.audience, s.state;

-- name: progress_by_division
-- One warning rolled up to the divisions of one level: its deliveries by state, its call-outs
-- (叫应) and its field tasks. Each thing counts under the division of that level that contains
-- its person: a delivery's recipient, a call-out's responder, a task's village. People above the
-- level (a county head in a town roll-up) are in no row of it.
-- Each source is rolled up to the level on its own (narrow rows, one aggregate each), and the
-- four meet by division code at the end. Deliveries are read from their tallies and unfolded
-- changes (migration 012): a city-wide warning has millions of deliveries but a few tens of
-- thousands of tallies, so the read costs the divisions and the responders, not the deliveries.
-- Codes are digits: grouped, joined and ordered byte-wise (COLLATE "C"), the order is the same
-- and no comparison goes through the server's locale (~10 ms on 27,000 tallies under C.UTF-8).
-- The tallies are summed per division (one per audience) before they meet the divisions: a
-- hash join of 6,000 rows, not a sort of 27,000.
-- Call-outs: open means pending, notified or escalated; overdue is open and past the deadline
-- at $3; escalated counts those at least one escalation step has fired for. Field tasks: done
-- is state done; persons are the people the tasks are about, reached what was reported done.
-- Speakers: those known in the covered villages, and how many are offline now.
-- Within a division ($4, its code prefix), only its own divisions are rolled up: a town's
-- villages, not the city's 6,000; every source joins them, so the read costs the town.
-- $1 warning id, $2 code prefix length of the level (6 county, 9 town, 12 village), $3 now,
-- $4 code prefix of the division the roll-up stays within (NULL: everywhere)
WITH within AS (
    -- The divisions at the level or below: what a row of the level may count.
    SELECT code COLLATE "C" AS code, rpad(left(code, $2), 12, '0') COLLATE "C" AS rolled
      FROM divisions
     WHERE code_prefix_length(level) >= $2
       AND ($4::text IS NULL OR starts_with(code, $4))
), sent AS (
    SELECT w.rolled AS code,
           sum(x.queued + x.sending + x.sent + x.delivered + x.failed + x.cancelled) AS total,
           sum(x.queued) AS queued, sum(x.sending) AS sending, sum(x.sent) AS sent,
           sum(x.delivered) AS delivered, sum(x.failed) AS failed,
           sum(x.cancelled) AS cancelled
      FROM (SELECT division_code, sum(queued) AS queued, sum(sending) AS sending,
                   sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed,
                   sum(cancelled) AS cancelled
              FROM (SELECT * FROM delivery_tallies WHERE warning_id = $1
                    UNION ALL
                    SELECT * FROM delivery_tally_changes WHERE warning_id = $1) AS t
             WHERE $4::text IS NULL OR starts_with(division_code, $4)
             GROUP BY division_code) AS x
      JOIN within w ON w.code = x.division_code
     GROUP BY w.rolled
    HAVING sum(x.queued + x.sending + x.sent + x.delivered + x.failed + x.cancelled) <> 0
), called AS (
    SELECT w.rolled AS code,
           count(*) AS c_total,
           count(*) FILTER (WHERE c.state = 'acknowledged' AND NOT c.ack_late) AS c_on_time,
           count(*) FILTER (WHERE c.state = 'acknowledged' AND c.ack_late) AS c_late,
           count(*) FILTER (WHERE c.state IN ('pending', 'notified', 'escalated')) AS c_open,
           count(*) FILTER (WHERE c.state IN ('pending', 'notified', 'escalated')
                              AND c.deadline < $3::timestamptz) AS c_overdue,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM callout_events e
                                           WHERE e.callout_id = c.id AND e.kind = 'step_fired'))
               AS c_escalated,
           count(*) FILTER (WHERE c.state = 'closed') AS c_closed
      FROM callouts c
      JOIN responders r ON r.id = c.responder_id
      JOIN within w ON w.code = r.division_code
     WHERE c.warning_id = $1
     GROUP BY w.rolled
), tasked AS (
    SELECT w.rolled AS code,
           count(*) AS t_total,
           count(*) FILTER (WHERE t.state = 'done') AS t_done,
           count(*) FILTER (WHERE t.state IN ('open', 'escalated')) AS t_open,
           count(*) FILTER (WHERE t.state IN ('open', 'escalated')
                              AND t.deadline < $3::timestamptz) AS t_overdue,
           sum(t.targets)::bigint AS t_persons,
           sum(least(t.done, t.targets))::bigint AS t_reached
      FROM field_tasks t
      JOIN within w ON w.code = t.village_code
     WHERE t.warning_id = $1
     GROUP BY w.rolled
), heard AS (
    SELECT w.rolled AS code, count(*) AS s_total, count(*) FILTER (WHERE NOT s.online) AS s_offline
      FROM speakers s
      JOIN warning_villages wv ON wv.warning_id = $1 AND wv.village_code = s.division_code
      JOIN within w ON w.code = s.division_code
     GROUP BY w.rolled
), codes AS (
    SELECT code FROM sent UNION SELECT code FROM called
    UNION SELECT code FROM tasked UNION SELECT code FROM heard
)
SELECT k.code,
       coalesce(d.total, 0)::bigint AS total, coalesce(d.queued, 0)::bigint AS queued,
       coalesce(d.sending, 0)::bigint AS sending, coalesce(d.sent, 0)::bigint AS sent,
       coalesce(d.delivered, 0)::bigint AS delivered, coalesce(d.failed, 0)::bigint AS failed,
       coalesce(d.cancelled, 0)::bigint AS cancelled,
       coalesce(c.c_total, 0) AS c_total, coalesce(c.c_on_time, 0) AS c_on_time,
       coalesce(c.c_late, 0) AS c_late, coalesce(c.c_open, 0) AS c_open,
       coalesce(c.c_overdue, 0) AS c_overdue, coalesce(c.c_escalated, 0) AS c_escalated,
       coalesce(c.c_closed, 0) AS c_closed,
       coalesce(t.t_total, 0) AS t_total, coalesce(t.t_done, 0) AS t_done,
       coalesce(t.t_open, 0) AS t_open, coalesce(t.t_overdue, 0) AS t_overdue,
       coalesce(t.t_persons, 0) AS t_persons, coalesce(t.t_reached, 0) AS t_reached,
       coalesce(h.s_total, 0) AS s_total, coalesce(h.s_offline, 0) AS s_offline,
       coalesce(n.name, '') AS name
  FROM codes k
  LEFT JOIN sent d ON d.code = k.code
  LEFT JOIN called c ON c.code = k.code
  LEFT JOIN tasked t ON t.code = k.code
  LEFT JOIN heard h ON h.code = k.code
  LEFT JOIN divisions n ON n.code = k.code
 ORDER BY k.code;

-- name: list_deliveries
-- One page of a warning's deliveries in id order, with the recipient's name: the responder
-- (for responder and helper deliveries), the facility and its contact, the household's head,
-- or the village of a loudspeaker.
-- $1 warning id, $2 only ids above this one (0 for the first page), $3 limit,
-- $4 state or NULL, $5 audience or NULL
SELECT x.id, x.audience, x.recipient_id, x.division_code, x.channel_kind, x.channel, x.address,
       x.state, x.attempts, x.error, x.queued_at, x.sending_at, x.sent_at, x.delivered_at,
       x.failed_at, x.cancelled_at,
       coalesce(
           CASE x.audience
               WHEN 'responder' THEN r.name
               WHEN 'helper' THEN r.name
               WHEN 'facility' THEN f.name || ' ' || f.contact_name
               WHEN 'household' THEN h.head_name
               WHEN 'broadcast' THEN v.name
           END, '') AS name
  FROM deliveries x
  LEFT JOIN responders r ON x.audience IN ('responder', 'helper') AND r.id = x.recipient_id
  LEFT JOIN facilities f ON x.audience = 'facility' AND f.id = x.recipient_id
  LEFT JOIN households h ON x.audience = 'household' AND h.id = x.recipient_id
  LEFT JOIN divisions v ON x.audience = 'broadcast' AND v.code = x.division_code
 WHERE x.warning_id = $1 AND x.id > $2
   AND ($4::text IS NULL OR x.state = $4) AND ($5::text IS NULL OR x.audience = $5)
 ORDER BY x.id
 LIMIT $3;

-- name: preview_facts
-- What a preview adds to the normalised warning: its state and how many villages its area
-- resolved to. No row when the warning does not exist.
-- $1 warning id
SELECT w.state, (SELECT count(*) FROM warning_villages wv WHERE wv.warning_id = w.id) AS villages
  FROM warnings w
 WHERE w.id = $1;

-- name: list_rejected
-- Refused messages, newest first, with the body cut to a preview.
-- $1 only ids below this one (NULL for the first page), $2 limit, $3 preview length in characters
SELECT id, received_at, feed, error, detail, left(body, $3) AS body, length(body) > $3 AS truncated
  FROM rejected_messages
 WHERE $1::bigint IS NULL OR id < $1
 ORDER BY id DESC
 LIMIT $2;

-- name: get_rejected
-- One refused message with its whole stored body. $1 id
SELECT id, received_at, feed, error, detail, body, false AS truncated
  FROM rejected_messages WHERE id = $1;

-- name: warning_brief
-- The few columns handlers check before acting on a warning (no raw message). $1 warning id
SELECT id, state, plan_state, author, hazard, level, status, area, expires
  FROM warnings WHERE id = $1;

-- name: list_callouts
-- One page of a warning's call-outs in id order, with the responder, the division and the latest
-- event. Open means pending, notified or escalated; overdue means open and past the deadline.
-- The last step is the latest one the escalation cursor has passed (fired or skipped), read from
-- the call-out's frozen chain: its action and whom it was for.
-- $1 warning id, $2 only ids above this one (0 for the first page), $3 limit,
-- $4 text[] states or NULL for all, $5 level or NULL, $6 division code prefix or NULL,
-- $7 only open call-outs past their deadline at this time (NULL: no such filter),
-- $8 only this call-out (NULL: any)
SELECT c.id, c.warning_id, c.responder_id, coalesce(r.name, '') AS name, c.phone,
       coalesce(r.division_code, '') AS division_code, coalesce(d.name, '') AS division_name,
       c.level, c.state, c.opened_at, c.deadline, c.notified_at, c.acknowledged_at, c.ack_late,
       c.ack_via, c.ack_by, c.cursor,
       coalesce(jsonb_array_length(c.snapshot -> 'steps'), 0) AS escalation_steps,
       c.next_check_at, c.closed_at,
       e.kind AS last_event, e.at AS last_event_at, e.actor AS last_event_actor,
       -- (a negative index would count from the end of the chain: none passed yet is NULL)
       CASE WHEN c.cursor > 0 THEN c.snapshot -> 'steps' -> (c.cursor - 1) ->> 'action' END
           AS last_step,
       CASE WHEN c.cursor > 0 THEN c.snapshot -> 'steps' -> (c.cursor - 1) ->> 'target_name' END
           AS last_step_target
  FROM callouts c
  LEFT JOIN responders r ON r.id = c.responder_id
  LEFT JOIN divisions d ON d.code = r.division_code
  LEFT JOIN LATERAL (
      SELECT x.kind, x.at, x.actor FROM callout_events x
       WHERE x.callout_id = c.id
       ORDER BY x.id DESC
       LIMIT 1
  ) AS e ON true
 WHERE c.warning_id = $1 AND c.id > $2
   AND ($4::text[] IS NULL OR c.state = ANY($4::text[]))
   AND ($5::text IS NULL OR c.level = $5)
   AND ($6::text IS NULL OR starts_with(r.division_code, $6))
   AND ($7::timestamptz IS NULL
        OR (c.state IN ('pending', 'notified', 'escalated') AND c.deadline < $7::timestamptz))
   AND ($8::bigint IS NULL OR c.id = $8)
 ORDER BY c.id
 LIMIT $3;

-- name: callout_summary
-- A warning's call-outs at a glance. Acknowledged ones are on time or late; open ones are
-- pending, notified or escalated, overdue when past the deadline at $2; escalated counts the
-- call-outs at least one escalation step has fired for, answered since or not.
-- $1 warning id, $2 now
SELECT count(*) AS total,
       count(*) FILTER (WHERE c.state = 'acknowledged' AND NOT c.ack_late) AS acknowledged_on_time,
       count(*) FILTER (WHERE c.state = 'acknowledged' AND c.ack_late) AS acknowledged_late,
       count(*) FILTER (WHERE c.state IN ('pending', 'notified', 'escalated')) AS open,
       count(*) FILTER (WHERE c.state IN ('pending', 'notified', 'escalated')
                          AND c.deadline < $2::timestamptz) AS overdue,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM callout_events x
                                       WHERE x.callout_id = c.id AND x.kind = 'step_fired'))
           AS escalated,
       count(*) FILTER (WHERE c.state = 'closed') AS closed
  FROM callouts c
 WHERE c.warning_id = $1;

-- name: warning_audit
-- Everything recorded about one warning, in time order: its audit entries (subject
-- 'warning:ID'), officers' actions on its call-outs (audit subject 'callout:ID'), policy reloads
-- between its arrival and its expiry, every event of its call-outs and of its field tasks. Ties in time keep the order of each table (id) within a
-- source; the rank puts audit entries before the events they caused.
-- Columns: at, source (audit | callout | task), rank, id (of the row in its table), actor,
-- action, subject, detail.
-- $1 warning id, $2 $3 $4 only entries after this (at, rank, id) (NULLs: from the start),
-- $5 limit (NULL: all)
SELECT at, source, rank, id, actor, action, subject, detail FROM (
    SELECT a.at, 'audit' AS source, 0 AS rank, a.id, a.actor, a.action, a.subject, a.detail
      FROM audit_log a
     WHERE a.subject = 'warning:' || $1::bigint
    UNION ALL
    SELECT a.at, 'audit', 0, a.id, a.actor, a.action, a.subject, a.detail
      FROM callouts c
      JOIN audit_log a ON a.subject = 'callout:' || c.id
     WHERE c.warning_id = $1
    UNION ALL
    -- The policy decides what happens next to an open warning: its reloads while it ran.
    SELECT a.at, 'audit', 0, a.id, a.actor, a.action, a.subject, a.detail
      FROM warnings w
      JOIN audit_log a ON a.subject = 'policy' AND a.at >= w.received_at
                      AND (w.expires IS NULL OR a.at <= w.expires)
     WHERE w.id = $1
    UNION ALL
    SELECT e.at, 'callout', 1, e.id, e.actor, e.kind, 'callout:' || e.callout_id, e.detail
      FROM callouts c
      JOIN callout_events e ON e.callout_id = c.id
     WHERE c.warning_id = $1
    UNION ALL
    SELECT e.at, 'task', 2, e.id, e.actor, e.kind, 'task:' || e.task_id, e.detail
      FROM field_tasks t
      JOIN field_task_events e ON e.task_id = t.id
     WHERE t.warning_id = $1
) AS entries
 WHERE $2::timestamptz IS NULL OR (at, rank, id) > ($2::timestamptz, $3::integer, $4::bigint)
 ORDER BY at, rank, id
 LIMIT $5::bigint;

-- name: callout_outcomes
-- How a warning's call-outs ended, per responder level: answered on time, late, or never (still
-- open, or closed unanswered), and the time to answer (opening to acknowledgement, seconds)
-- at the 50th and 90th percentile of those answered. $1 warning id
SELECT c.level,
       count(*) AS total,
       count(*) FILTER (WHERE c.state = 'acknowledged' AND NOT c.ack_late) AS on_time,
       count(*) FILTER (WHERE c.state = 'acknowledged' AND c.ack_late) AS late,
       count(*) FILTER (WHERE c.state <> 'acknowledged') AS never,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM c.acknowledged_at - c.opened_at)) AS p50_s,
       percentile_cont(0.9) WITHIN GROUP (
           ORDER BY extract(epoch FROM c.acknowledged_at - c.opened_at)) AS p90_s
  FROM callouts c
 WHERE c.warning_id = $1
 GROUP BY ROLLUP (c.level)
 ORDER BY c.level NULLS LAST;

-- name: escalation_steps
-- A warning's escalation steps by action (repeat, backup, superior, duty_officer): how many
-- fired and how many were skipped (nobody to call). $1 warning id
SELECT e.detail ->> 'action' AS action,
       count(*) FILTER (WHERE e.kind = 'step_fired') AS fired,
       count(*) FILTER (WHERE e.kind = 'step_skipped') AS skipped
  FROM callouts c
  JOIN callout_events e ON e.callout_id = c.id
 WHERE c.warning_id = $1 AND e.kind IN ('step_fired', 'step_skipped')
 GROUP BY 1
 ORDER BY 1;

-- name: field_task_totals
-- A warning's field tasks: how many, how many done, people concerned and reported reached.
-- $1 warning id
SELECT count(*) AS total,
       count(*) FILTER (WHERE state = 'done') AS done,
       coalesce(sum(targets), 0) AS persons,
       coalesce(sum(least(done, targets)), 0) AS reached
  FROM field_tasks
 WHERE warning_id = $1;

-- name: texts_facts
-- What a warning's texts depend on beyond the warning itself: the code responders reply with
-- (a waiting Update takes the one of the warning it amends, as it will when released), and the
-- warnings whose reached people its notices go to (those it ended; waiting: the one it amends).
-- $1 warning id
SELECT coalesce(w.short_code,
                CASE WHEN w.msg_type = 'Update' THEN a.short_code END) AS short_code,
       coalesce(nullif(ARRAY(SELECT e.id FROM warnings e WHERE e.ended_by = w.id ORDER BY e.id),
                       '{}'),
                CASE WHEN w.amends_id IS NOT NULL THEN ARRAY[w.amends_id] END,
                '{}') AS ended
  FROM warnings w
  LEFT JOIN warnings a ON a.id = w.amends_id
 WHERE w.id = $1;
