-- The duty officer's board (值班台): the live figures of the warnings under way. Refreshed every
-- few seconds by every open console, so each figure costs divisions and call-outs, never
-- deliveries: those are read from their tallies (migration 012).

-- name: board_warnings
-- Warnings waiting for approval, then active ones, each newest first, with its deliveries by
-- state, its call-outs (as callout_summary) and its field tasks (as field_task_totals, with open
-- and overdue). Overdue is reckoned at $1. Past the limit, active ones are left out before any
-- waiting one: a warning nobody approves is never sent, so the board must not hide it.
-- $1 now, $2 limit
WITH shown AS (
    SELECT id, source, status, msg_type, hazard, level, event, headline, area_desc, state,
           plan_state, author, approver, received_at, expires
      FROM warnings
     WHERE state IN ('active', 'pending_approval')
     ORDER BY state = 'pending_approval' DESC, id DESC
     LIMIT $2
), sent AS (
    SELECT t.warning_id, sum(t.queued) AS queued, sum(t.sending) AS sending,
           sum(t.sent) AS sent, sum(t.delivered) AS delivered, sum(t.failed) AS failed,
           sum(t.cancelled) AS cancelled
      FROM (SELECT * FROM delivery_tallies WHERE warning_id IN (SELECT id FROM shown)
            UNION ALL
            SELECT * FROM delivery_tally_changes WHERE warning_id IN (SELECT id FROM shown)) AS t
     GROUP BY t.warning_id
), calls AS (
    SELECT c.warning_id,
           count(*) AS total,
           count(*) FILTER (WHERE c.state = 'acknowledged' AND NOT c.ack_late) AS on_time,
           count(*) FILTER (WHERE c.state = 'acknowledged' AND c.ack_late) AS late,
           count(*) FILTER (WHERE c.state IN ('pending', 'notified', 'escalated')) AS open,
           count(*) FILTER (WHERE c.state IN ('pending', 'notified', 'escalated')
                              AND c.deadline < $1::timestamptz) AS overdue,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM callout_events x
                                           WHERE x.callout_id = c.id
                                             AND x.kind = 'step_fired')) AS escalated,
           count(*) FILTER (WHERE c.state = 'closed') AS closed
      FROM callouts c
     WHERE c.warning_id IN (SELECT id FROM shown)
     GROUP BY c.warning_id
), tasks AS (
    SELECT t.warning_id,
           count(*) AS total,
           count(*) FILTER (WHERE t.state = 'done') AS done,
           count(*) FILTER (WHERE t.state IN ('open', 'escalated')) AS open,
           count(*) FILTER (WHERE t.state IN ('open', 'escalated')
                              AND t.deadline < $1::timestamptz) AS overdue,
           coalesce(sum(t.targets), 0) AS persons,
           coalesce(sum(least(t.done, t.targets)), 0) AS reached
      FROM field_tasks t
     WHERE t.warning_id IN (SELECT id FROM shown)
     GROUP BY t.warning_id
)
SELECT s.*,
       coalesce(d.queued, 0) AS queued, coalesce(d.sending, 0) AS sending,
       coalesce(d.sent, 0) AS sent, coalesce(d.delivered, 0) AS delivered,
       coalesce(d.failed, 0) AS failed, coalesce(d.cancelled, 0) AS cancelled,
       coalesce(c.total, 0) AS c_total, coalesce(c.on_time, 0) AS c_on_time,
       coalesce(c.late, 0) AS c_late, coalesce(c.open, 0) AS c_open,
       coalesce(c.overdue, 0) AS c_overdue, coalesce(c.escalated, 0) AS c_escalated,
       coalesce(c.closed, 0) AS c_closed,
       coalesce(k.total, 0) AS t_total, coalesce(k.done, 0) AS t_done,
       coalesce(k.open, 0) AS t_open, coalesce(k.overdue, 0) AS t_overdue,
       coalesce(k.persons, 0)::bigint AS t_persons, coalesce(k.reached, 0)::bigint AS t_reached
  FROM shown s
  LEFT JOIN sent d ON d.warning_id = s.id
  LEFT JOIN calls c ON c.warning_id = s.id
  LEFT JOIN tasks k ON k.warning_id = s.id
 ORDER BY s.state = 'pending_approval' DESC, s.id DESC;

-- name: board_counts
-- The board's counts beyond the warnings it lists: all those waiting for approval, however many
-- are under way, and the speakers online and offline (one row per village at most).
SELECT (SELECT count(*) FROM warnings WHERE state = 'pending_approval') AS pending_approval,
       (SELECT count(*) FROM speakers WHERE online) AS speakers_online,
       (SELECT count(*) FROM speakers WHERE NOT online) AS speakers_offline;

-- name: silent_feeds
-- Feeds whose heartbeat has stopped (the heartbeat stage's verdict), longest silent first.
SELECT feed, changed_at FROM feed_health WHERE silent ORDER BY changed_at;

-- name: fold_delivery_tallies
-- Move the deliveries' tally changes into their tallies (housekeeping): the number folded.
SELECT fold_delivery_tallies();
