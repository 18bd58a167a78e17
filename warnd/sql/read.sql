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
