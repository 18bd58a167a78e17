-- Notices to the people an ended warning already reached: corrections, withdrawals, cancellations.
-- "Reached" means a message to them was handed to a channel (sending, sent or delivered), or
-- they got a correction of an earlier warning in the chain (they were reached before it).
-- Withdrawal notices do not count: they told their reader the warning no longer concerns them.

-- name: reached_kinds
-- The (audience, channel kind) pairs among the people these warnings reached (in one range of
-- their delivery ids, or all), to render once.
-- $1 bigint[] ended warning ids, $2 $3 the first and last delivery id (NULL: every one)
SELECT DISTINCT audience, channel_kind FROM deliveries
 WHERE warning_id = ANY($1::bigint[]) AND notice IS DISTINCT FROM 'withdrawn'
   AND (state IN ('sending', 'sent', 'delivered') OR notice = 'correction')
   AND id BETWEEN coalesce($2::bigint, 0) AND coalesce($3::bigint, 9223372036854775807);

-- name: ended_delivery_ids
-- The first and last delivery id of the warnings an Update or Cancel ends: its notices are
-- written a range of ids at a time, a step each, like households a chunk of villages at a time.
-- $1 the Update or Cancel
SELECT min(d.id) AS first, max(d.id) AS last
  FROM warnings w JOIN deliveries d ON d.warning_id = w.id
 WHERE w.ended_by = $1;

-- name: write_notices
-- One notice per address these warnings reached, among their deliveries $10 to $11, on the kind
-- that reached it (an SMS before a call before a loudspeaker, when several did; an address whose
-- deliveries straddle two ranges keeps the notice of the first range). For a Cancel every
-- notice is the cancellation; for an Update, those still inside its area get the correction and
-- the others the withdrawal.
-- $1 the Update or Cancel, $2 bigint[] ended warning ids, $3 is a Cancel,
-- $4 text[] notice, $5 text[] audience ('*' for any), $6 text[] kind, $7 bigint[] message id,
-- $8 priority, $9 now, $10 $11 the first and last delivery id of the range
WITH reached AS (
    SELECT DISTINCT ON (d.address) d.audience, d.recipient_id, d.division_code, d.address,
           d.channel_kind
      FROM deliveries d
     WHERE d.warning_id = ANY($2::bigint[]) AND d.notice IS DISTINCT FROM 'withdrawn'
       AND (d.state IN ('sending', 'sent', 'delivered') OR d.notice = 'correction')
       AND d.id BETWEEN $10 AND $11
       AND NOT EXISTS (SELECT 1 FROM deliveries n
                        WHERE n.warning_id = $1 AND n.notice IS NOT NULL AND n.address = d.address)
     ORDER BY d.address, CASE d.channel_kind WHEN 'sms' THEN 0 WHEN 'voice' THEN 1 ELSE 2 END,
              d.id
),
classified AS (
    SELECT r.*,
           CASE WHEN $3 THEN 'cancelled'
                WHEN r.division_code IN (SELECT code FROM covered_codes($1)) THEN 'correction'
                ELSE 'withdrawn' END AS notice
      FROM reached r
),
texts AS (
    SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::bigint[])
        AS t(notice, audience, kind, message_id)
)
INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code, address,
                        channel_kind, priority, queued_at, due_at, notice)
SELECT $1, t.message_id, c.audience, c.recipient_id, c.division_code, c.address, c.channel_kind,
       $8, $9::timestamptz, $9::timestamptz, c.notice
  FROM classified c
  JOIN texts t ON t.notice = c.notice AND t.kind = c.channel_kind
              AND (t.audience = '*' OR t.audience = c.audience)
ON CONFLICT ON CONSTRAINT deliveries_recipient_key DO NOTHING;
