-- Dispatch: workers claim due deliveries, hand them to a channel, and record what happened.

-- name: claim_deliveries
-- Claim up to $3 due deliveries of one channel kind, most urgent first; rows another worker holds
-- are skipped. The lease makes a crashed worker's rows come back; ``attempts`` doubles as the
-- claim's fencing token, so only the latest claim of a row may record its outcome. Rows of a
-- warning that is no longer active (cancelled, superseded, expired) are cancelled here instead
-- of sent, whatever path brought them back to the queue; so are rows past their own expiry (an
-- earthquake alert after the shaking): never sent late.
-- $1 channel kind, $2 channel instance name, $3 how many, $4 now, $5 lease seconds
WITH due AS (
    -- A Cancel's notices go out although the Cancel itself is muted (it alarms nobody).
    SELECT d.id,
           CASE WHEN NOT (w.state = 'active' OR (w.msg_type = 'Cancel' AND w.state = 'muted'))
                THEN 'warning no longer active'
                WHEN d.expires_at <= $4::timestamptz
                THEN 'expired: too late to send, not sent late'
           END AS dropped,
           w.hazard, w.level, w.status = 'Exercise' AS exercise, w.expires, w.msg_type
      FROM deliveries d JOIN warnings w ON w.id = d.warning_id
     WHERE d.state = 'queued' AND d.channel_kind = $1::text AND d.due_at <= $4::timestamptz
     ORDER BY d.priority, d.id
     LIMIT $3
       FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d
   SET state = CASE WHEN due.dropped IS NULL THEN 'sending' ELSE 'cancelled' END,
       sending_at = CASE WHEN due.dropped IS NULL THEN $4::timestamptz ELSE d.sending_at END,
       cancelled_at = CASE WHEN due.dropped IS NULL THEN d.cancelled_at ELSE $4::timestamptz END,
       error = coalesce(due.dropped, d.error),
       channel = CASE WHEN due.dropped IS NULL THEN $2::text ELSE d.channel END,
       attempts = d.attempts + CASE WHEN due.dropped IS NULL THEN 1 ELSE 0 END,
       lease_until = CASE WHEN due.dropped IS NULL
                          THEN $4::timestamptz + make_interval(secs => $5::float8) END
  FROM due, messages m
 WHERE d.id = due.id AND m.id = d.message_id
RETURNING d.id, d.warning_id, d.address, d.attempts, d.fallback, d.state, m.body, d.priority,
          d.expires_at, due.hazard, due.level, due.exercise, due.expires, due.msg_type;

-- name: record_sent
-- Accepted by the gateway; a call-out whose first message went out is now "notified".
-- $1 bigint[] ids, $2 int[] attempts (fence), $3 text[] external ids, $4 int[] SMS parts (or
-- NULL), $5 now
WITH sent AS (
    UPDATE deliveries d
       SET state = 'sent', sent_at = $5::timestamptz, external_id = r.external_id,
           parts = r.parts, lease_until = NULL, error = NULL
      FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[])
           AS r(id, attempts, external_id, parts)
     WHERE d.id = r.id AND d.attempts = r.attempts AND d.state = 'sending'
    RETURNING d.callout_id
)
-- A call-out another transaction holds (an answer, the other channel's worker) is skipped rather
-- than waited for: it is being answered or marked notified by that one, and waiting on rows
-- locked in another order is how two workers deadlock.
UPDATE callouts c SET state = 'notified', notified_at = $5::timestamptz
 WHERE c.id IN (SELECT l.id FROM callouts l
                 WHERE l.id IN (SELECT callout_id FROM sent) AND l.state = 'pending'
                 ORDER BY l.id
                   FOR UPDATE SKIP LOCKED);

-- name: record_retry
-- A transient failure: back to the queue, due again after its backoff.
-- $1 bigint[] ids, $2 int[] attempts (fence), $3 float8[] delay seconds, $4 text[] reasons, $5 now
UPDATE deliveries d
   SET state = 'queued', due_at = $5::timestamptz + make_interval(secs => r.delay),
       error = r.reason, lease_until = NULL
  FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::text[]) AS r(id, attempts, delay, reason)
 WHERE d.id = r.id AND d.attempts = r.attempts AND d.state = 'sending';

-- name: record_failover
-- A permanent failure with another channel kind left to try: re-queue on the next kind, with the
-- text rendered for that kind. If the recipient already has a delivery on that kind, the row
-- fails instead (the recipient is being reached on that kind already).
-- $1 bigint[] ids, $2 int[] attempts (fence), $3 text[] reasons, $4 now
UPDATE deliveries d
   SET channel_kind = d.fallback[1], fallback = d.fallback[2:], state = 'queued',
       failed_over_from = d.channel_kind,
       due_at = $4::timestamptz, attempts = 0, error = r.reason, lease_until = NULL,
       channel = NULL, message_id = m.id
  FROM unnest($1::bigint[], $2::int[], $3::text[]) AS r(id, attempts, reason), messages m
 WHERE d.id = r.id AND d.attempts = r.attempts AND d.state = 'sending'
   AND cardinality(d.fallback) > 0
   AND m.warning_id = d.warning_id AND m.audience = d.audience AND m.channel_kind = d.fallback[1]
   AND NOT EXISTS (
       SELECT 1 FROM deliveries o
        WHERE o.warning_id = d.warning_id AND o.audience = d.audience
          AND o.recipient_id = d.recipient_id AND o.address = d.address
          AND o.channel_kind = d.fallback[1] AND o.step IS NOT DISTINCT FROM d.step)
RETURNING d.id;

-- name: record_failed
-- A permanent failure with nothing left to try.
-- $1 bigint[] ids, $2 int[] attempts (fence), $3 text[] reasons, $4 now
UPDATE deliveries d
   SET state = 'failed', failed_at = $4::timestamptz, error = r.reason, lease_until = NULL
  FROM unnest($1::bigint[], $2::int[], $3::text[]) AS r(id, attempts, reason)
 WHERE d.id = r.id AND d.attempts = r.attempts AND d.state = 'sending';

-- name: record_expired
-- Too late to be of use (the channel held it past its expiry): cancelled, never failed over.
-- $1 bigint[] ids, $2 int[] attempts (fence), $3 text[] reasons, $4 now
UPDATE deliveries d
   SET state = 'cancelled', cancelled_at = $4::timestamptz, error = r.reason, lease_until = NULL
  FROM unnest($1::bigint[], $2::int[], $3::text[]) AS r(id, attempts, reason)
 WHERE d.id = r.id AND d.attempts = r.attempts AND d.state = 'sending';

-- name: release_claims
-- Hand back claimed rows that were never sent (a worker stopping mid-batch).
-- $1 bigint[] ids, $2 int[] attempts (fence)
UPDATE deliveries d
   SET state = 'queued', lease_until = NULL, attempts = d.attempts - 1
  FROM unnest($1::bigint[], $2::int[]) AS r(id, attempts)
 WHERE d.id = r.id AND d.attempts = r.attempts AND d.state = 'sending';

-- name: reclaim_expired_leases
-- Rows whose worker died while sending come back to the queue (at-least-once to the gateway).
-- $1 now
UPDATE deliveries SET state = 'queued', lease_until = NULL, due_at = $1::timestamptz
 WHERE state = 'sending' AND lease_until < $1::timestamptz;

-- name: record_receipts
-- Receipts from the network (delivery receipts, call results, device confirmations) for messages
-- a channel accepted; returns the external ids that matched.
-- $1 channel name, $2 text[] external ids, $3 bool[] delivered, $4 text[] details, $5 now
UPDATE deliveries d
   SET state = CASE WHEN r.ok THEN 'delivered' ELSE 'failed' END,
       delivered_at = CASE WHEN r.ok THEN $5::timestamptz ELSE d.delivered_at END,
       failed_at = CASE WHEN r.ok THEN d.failed_at ELSE $5::timestamptz END,
       error = CASE WHEN r.ok THEN d.error ELSE r.detail END
  FROM unnest($2::text[], $3::bool[], $4::text[]) AS r(external_id, ok, detail)
 WHERE d.channel = $1::text AND d.external_id = r.external_id AND d.state IN ('sent', 'sending')
RETURNING d.external_id;

-- name: record_inbound
-- Keep inbound events a person may need to see: replies, call results, device confirmations
-- and receipts that matched no delivery; their ids, in the order given.
-- $1 channel, $2 text[] kinds, $3 text[] senders, $4 jsonb[] payloads, $5 bool[] matched, $6 now
INSERT INTO inbound_events (channel, kind, sender, payload, matched, received_at)
SELECT $1::text, e.kind, e.sender, e.payload, e.matched, $6::timestamptz
  FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::bool[])
       WITH ORDINALITY AS e(kind, sender, payload, matched, n)
 ORDER BY e.n
RETURNING id;

-- name: queue_depth
-- Queued deliveries per channel kind, for metrics and readiness.
SELECT channel_kind, count(*) AS queued FROM deliveries WHERE state = 'queued'
 GROUP BY channel_kind;

-- name: match_early_receipts
-- Receipts kept unmatched because they arrived before their send was recorded, applied to the
-- deliveries that now carry their gateway id; younger than $1 only, at most $2 per call.
-- $1 oldest receipt time considered, $2 limit, $3 now
WITH early AS (
    SELECT e.id, e.channel, e.payload->>'external_id' AS external_id,
           e.payload->>'status' = 'delivered' AS ok,
           btrim((e.payload->>'status') || ' ' || coalesce(e.payload->>'detail', '')) AS detail
      FROM inbound_events e
     WHERE NOT e.matched AND e.kind = 'receipt' AND e.received_at >= $1::timestamptz
     ORDER BY e.received_at DESC  -- the early ones are the newest; junk must not starve them
     LIMIT $2
       FOR UPDATE SKIP LOCKED
), applied AS (
    UPDATE deliveries d
       SET state = CASE WHEN early.ok THEN 'delivered' ELSE 'failed' END,
           delivered_at = CASE WHEN early.ok THEN $3::timestamptz ELSE d.delivered_at END,
           failed_at = CASE WHEN early.ok THEN d.failed_at ELSE $3::timestamptz END,
           error = CASE WHEN early.ok THEN d.error ELSE early.detail END
      FROM early
     WHERE d.channel = early.channel AND d.external_id = early.external_id
       AND d.state IN ('sent', 'sending')
    RETURNING early.id, d.channel, early.external_id, early.ok
)
UPDATE inbound_events e SET matched = true
  FROM applied
 WHERE e.id = applied.id
RETURNING applied.channel, applied.external_id, applied.ok;

-- name: mark_inbound_matched
-- Reports kept as unmatched that a later try matched. $1 bigint[] inbound event ids
UPDATE inbound_events SET matched = true WHERE id = ANY($1::bigint[]);

-- name: record_speaker_states
-- What speakers reported of themselves, the latest report per speaker kept (a report older than
-- the kept one changes nothing: the broker may deliver a queued heartbeat late).
-- $1 channel, $2 ids, $3 online, $4 heartbeat, $5 power, $6 battery, $7 volume, $8 detail, $9 at
INSERT INTO speakers AS s (channel, id, division_code, online, state_at, heartbeat_at,
                           power, battery, volume, detail)
SELECT DISTINCT ON (r.id) $1::text, r.id, d.code, r.online, r.at,
       CASE WHEN r.heartbeat THEN r.at END, r.power, r.battery, r.volume, r.detail
  FROM unnest($2::text[], $3::bool[], $4::bool[], $5::text[], $6::smallint[], $7::smallint[],
              $8::text[], $9::timestamptz[]) AS r(id, online, heartbeat, power, battery, volume,
                                                  detail, at)
  LEFT JOIN divisions d ON d.code = r.id
 ORDER BY r.id, r.at DESC
ON CONFLICT (channel, id) DO UPDATE
   SET online = excluded.online,
       state_at = excluded.state_at,
       heartbeat_at = coalesce(excluded.heartbeat_at, s.heartbeat_at),
       power = coalesce(excluded.power, s.power),
       battery = coalesce(excluded.battery, s.battery),
       volume = coalesce(excluded.volume, s.volume),
       detail = excluded.detail
 WHERE excluded.state_at >= s.state_at;

-- name: record_speaker_plays
-- The last play confirmation of each speaker whose command these external ids name.
-- $1 channel, $2 external ids, $3 played, $4 detail, $5 at
UPDATE speakers s
   SET played_at = p.at, played = p.played, played_detail = p.detail
  FROM (SELECT DISTINCT ON (d.address) d.address, r.played, r.detail, r.at
          FROM unnest($2::text[], $3::bool[], $4::text[], $5::timestamptz[])
               AS r(external_id, played, detail, at)
          JOIN deliveries d ON d.channel = $1 AND d.external_id = r.external_id
         ORDER BY d.address, r.at DESC) p
 WHERE s.channel = $1 AND s.id = p.address AND (s.played_at IS NULL OR p.at >= s.played_at);

-- name: notify_skipped_callouts
-- Call-outs still pending although a message of theirs went out: record_sent skips a call-out
-- another transaction holds (waiting for it deadlocks), and when that transaction does not mark
-- it notified itself (an escalation scan, a failed answer), this sweep does, with the time the
-- first message went out. Held ones are skipped again, for the next sweep.
UPDATE callouts c SET state = 'notified', notified_at = s.first_sent
  FROM (SELECT l.id, min(d.sent_at) AS first_sent
          FROM callouts l JOIN deliveries d ON d.callout_id = l.id
         WHERE l.state = 'pending' AND d.sent_at IS NOT NULL
         GROUP BY l.id) s
 WHERE c.id = s.id
   AND c.id IN (SELECT l.id FROM callouts l
                 WHERE l.id = s.id AND l.state = 'pending' FOR UPDATE SKIP LOCKED)
RETURNING c.id;
