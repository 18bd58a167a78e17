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
-- A warning's deliveries counted by audience and state, with the first and last hand-over.
-- $1 warning id
SELECT audience, state, count(*) AS n, min(sent_at) AS first_sent, max(sent_at) AS last_sent
  FROM deliveries
 WHERE warning_id = $1
 GROUP BY audience, state
 ORDER BY audience, state;

-- name: progress_by_division
-- Deliveries of one warning rolled up to the divisions of one level. A delivery counts under the
-- division of that level that contains its recipient; recipients above the level (a county head
-- in a town roll-up) are in no row of it.
-- $1 warning id, $2 code prefix length of the level (6 county, 9 town, 12 village)
SELECT g.code, coalesce(d.name, '') AS name, g.total, g.queued, g.sending, g.sent, g.delivered,
       g.failed, g.cancelled
  FROM (
    SELECT rpad(left(x.division_code, $2), 12, '0') AS code,
           count(*) AS total,
           count(*) FILTER (WHERE x.state = 'queued') AS queued,
           count(*) FILTER (WHERE x.state = 'sending') AS sending,
           count(*) FILTER (WHERE x.state = 'sent') AS sent,
           count(*) FILTER (WHERE x.state = 'delivered') AS delivered,
           count(*) FILTER (WHERE x.state = 'failed') AS failed,
           count(*) FILTER (WHERE x.state = 'cancelled') AS cancelled
      FROM deliveries x
      JOIN divisions dv ON dv.code = x.division_code
     WHERE x.warning_id = $1 AND code_prefix_length(dv.level) >= $2
     GROUP BY 1
  ) g
  LEFT JOIN divisions d ON d.code = g.code
 ORDER BY g.code;

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
       e.kind AS last_event, e.at AS last_event_at, e.actor AS last_event_actor
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
