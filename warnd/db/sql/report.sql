-- The evaluation report of one warning (效果评估): every figure is one set-based statement here,
-- so the report of a city-wide warning costs a few scans of its rows, never a loop over them.
-- "Issued" is when the warning was released: its approval, or its arrival when none was needed.
-- Escalation and field-task messages are the call-out machinery, not the warning's reach: the
-- per-division reach leaves them out; the per-audience table shows them on rows of their own.

-- name: report_warning
-- The warning itself, the counties it covers, how many villages, and the blind drill it was (its
-- scheduler, window and postponements). $1 warning id
SELECT w.id, w.status, w.msg_type, w.hazard, w.level, w.event, w.headline, w.area_desc, w.state,
       w.sent, coalesce(w.approved_at, w.received_at) AS issued_at, w.expires,
       coalesce((SELECT array_agg(d.name ORDER BY d.code)
                   FROM divisions d
                  WHERE d.level = 'county'
                    AND d.code IN (SELECT code FROM covered_codes(w.id, ARRAY['county']))),
                '{}') AS counties,
       (SELECT count(*) FROM warning_villages v WHERE v.warning_id = w.id) AS villages,
       b.id AS blind_drill_id, b.scheduled_by AS drill_scheduled_by,
       b.window_start AS drill_window_start, b.window_end AS drill_window_end,
       coalesce(b.postponements, 0) AS drill_postponements
  FROM warnings w
  LEFT JOIN blind_drills b ON b.warning_id = w.id
 WHERE w.id = $1;

-- name: report_reach_audiences
-- Reach per audience: people (a recipient per address; escalation and task messages by address
-- alone), messages, delivered, failed, cancelled, and seconds from issue to the first delivery
-- and to the delivery that made 90 % of the audience's messages delivered (NULL if never).
-- The 90 % point is the k-th delivery, k = ceil(0.9 × messages), of the m delivered: the
-- percentile (k − ½) / m of the delivery times (percentile_disc skips the undelivered NULLs);
-- grouped and sorted once, never numbered row by row (1 M deliveries: a window was 12 s).
-- $1 warning id, $2 issued at
WITH x AS (
    SELECT audience, CASE WHEN audience IN ('escalation', 'field_task') THEN 0
                          ELSE recipient_id END AS recipient,
           address, state, delivered_at
      FROM deliveries
     WHERE warning_id = $1
), totals AS (
    SELECT audience, count(*) AS n, count(delivered_at) AS m FROM x GROUP BY audience
), people AS (
    SELECT audience, count(*) AS people
      FROM (SELECT DISTINCT audience, recipient, address FROM x) AS distinct_recipients
     GROUP BY audience
)
SELECT x.audience, p.people,
       count(*) AS messages,
       count(*) FILTER (WHERE x.state = 'delivered') AS delivered,
       count(*) FILTER (WHERE x.state = 'failed') AS failed,
       count(*) FILTER (WHERE x.state = 'cancelled') AS cancelled,
       extract(epoch FROM min(x.delivered_at) - $2::timestamptz)::float8 AS first_s,
       CASE WHEN ceil(0.9 * t.n) <= t.m THEN extract(epoch FROM (percentile_disc(
           least(1.0, (ceil(0.9 * t.n) - 0.5) / greatest(t.m, 1))) WITHIN GROUP (
           ORDER BY x.delivered_at)) - $2::timestamptz)::float8 END AS p90_s
  FROM x
  JOIN totals t ON t.audience = x.audience
  JOIN people p ON p.audience = x.audience
 GROUP BY x.audience, p.people, t.n, t.m
 ORDER BY array_position(ARRAY['responder', 'broadcast', 'facility', 'helper', 'household',
                               'escalation', 'field_task'], x.audience);

-- name: report_reach_divisions
-- The warning's reach per division of one level (escalation and task messages left out): each
-- delivery counts under the division of that level containing its recipient; recipients above
-- the level are in no row. As report_reach_audiences otherwise (people: a recipient per
-- audience and address). $1 warning id, $2 issued at, $3 code prefix length (6 county, 9 town)
WITH x AS (
    SELECT rpad(left(d.division_code, $3), 12, '0') AS code, d.audience, d.recipient_id,
           d.address, d.state, d.delivered_at
      FROM deliveries d
     WHERE d.warning_id = $1 AND d.audience NOT IN ('escalation', 'field_task')
       AND NOT EXISTS (SELECT 1 FROM divisions a
                        WHERE a.code = d.division_code AND code_prefix_length(a.level) < $3)
), totals AS (
    SELECT code, count(*) AS n, count(delivered_at) AS m FROM x GROUP BY code
), people AS (
    SELECT code, count(*) AS people
      FROM (SELECT DISTINCT code, audience, recipient_id, address FROM x) AS distinct_recipients
     GROUP BY code
), per_code AS (
    SELECT x.code, p.people,
           count(*) AS messages,
           count(*) FILTER (WHERE x.state = 'delivered') AS delivered,
           count(*) FILTER (WHERE x.state = 'failed') AS failed,
           count(*) FILTER (WHERE x.state = 'cancelled') AS cancelled,
           extract(epoch FROM min(x.delivered_at) - $2::timestamptz)::float8 AS first_s,
           CASE WHEN ceil(0.9 * t.n) <= t.m THEN extract(epoch FROM (percentile_disc(
               least(1.0, (ceil(0.9 * t.n) - 0.5) / greatest(t.m, 1))) WITHIN GROUP (
               ORDER BY x.delivered_at)) - $2::timestamptz)::float8 END AS p90_s
      FROM x
      JOIN totals t ON t.code = x.code
      JOIN people p ON p.code = x.code
     GROUP BY x.code, p.people, t.n, t.m
)
SELECT p.*, coalesce(v.name, p.code) AS name,
       coalesce(c.name, '') AS county
  FROM per_code p
  LEFT JOIN divisions v ON v.code = p.code
  LEFT JOIN divisions c ON c.code = rpad(left(p.code, 6), 12, '0') AND $3 > 6
 ORDER BY p.code;

-- name: report_failures
-- Failed deliveries by audience, channel kind and reason. $1 warning id
SELECT audience, channel_kind, coalesce(error, 'unknown') AS reason, count(*) AS count
  FROM deliveries
 WHERE warning_id = $1 AND state = 'failed'
 GROUP BY 1, 2, 3
 ORDER BY count(*) DESC, 1, 2, 3;

-- name: report_channels
-- Per channel instance (or kind, for what no channel took): messages, accepted by the channel,
-- delivered, failed, cancelled, how many arrived by fail-over, throughput (accepted per minute
-- between the first and the last hand-over; NULL below two) and the median receipt delay.
-- $1 warning id
SELECT coalesce(channel, '') AS channel, channel_kind,
       count(*) AS messages,
       count(*) FILTER (WHERE state IN ('sent', 'delivered')) AS accepted,
       count(*) FILTER (WHERE state = 'delivered') AS delivered,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE failed_over_from IS NOT NULL) AS failed_over_in,
       CASE WHEN count(sent_at) >= 2 AND max(sent_at) > min(sent_at)
            THEN (count(sent_at) * 60.0
                  / extract(epoch FROM max(sent_at) - min(sent_at)))::float8 END AS per_minute,
       (percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM delivered_at - sent_at)))::float8 AS receipt_p50_s
  FROM deliveries
 WHERE warning_id = $1
 GROUP BY 1, 2
 ORDER BY 2, 1;

-- name: report_failovers
-- Deliveries that failed over, from which kind to which, and how many of them got through.
-- $1 warning id
SELECT failed_over_from AS from_kind, channel_kind AS to_kind, count(*) AS count,
       count(*) FILTER (WHERE state = 'delivered') AS delivered
  FROM deliveries
 WHERE warning_id = $1 AND failed_over_from IS NOT NULL
 GROUP BY 1, 2
 ORDER BY 1, 2;

-- name: report_callout_divisions
-- Call-and-respond and field tasks per division of one level, with the drill score: answer rate
-- (answered of called), time score (1 at or under the median target, 0 at or over the limit,
-- linear between, on the median time to answer) and task completion (done of ordered), weighted
-- by the policy; a division without tasks is scored on the other two, re-weighted. Responders
-- above the level are in no row. Score 0-100, NULL where nobody was called. A row per warning
-- and division: the drills before this one, scored alike, make each town's trend.
-- $1 bigint[] warning ids, $2 code prefix length, $3 answer weight, $4 time weight, $5 task weight,
-- $6 target seconds, $7 limit seconds
WITH c AS (
    SELECT c.warning_id, rpad(left(r.division_code, $2), 12, '0') AS code,
           count(*) AS total,
           count(*) FILTER (WHERE c.state = 'acknowledged' AND NOT c.ack_late) AS on_time,
           count(*) FILTER (WHERE c.state = 'acknowledged' AND c.ack_late) AS late,
           count(*) FILTER (WHERE c.state <> 'acknowledged') AS never,
           (percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM c.acknowledged_at - c.opened_at)))::float8 AS p50_s,
           (percentile_cont(0.9) WITHIN GROUP (
               ORDER BY extract(epoch FROM c.acknowledged_at - c.opened_at)))::float8 AS p90_s
      FROM callouts c
      JOIN responders r ON r.id = c.responder_id
     WHERE c.warning_id = ANY($1::bigint[]) AND code_prefix_length(c.level) >= $2
     GROUP BY 1, 2
), t AS (
    SELECT warning_id, rpad(left(village_code, $2), 12, '0') AS code,
           count(*) AS tasks, count(*) FILTER (WHERE state = 'done') AS tasks_done
      FROM field_tasks
     WHERE warning_id = ANY($1::bigint[])
     GROUP BY 1, 2
), joined AS (
    SELECT coalesce(c.warning_id, t.warning_id) AS warning_id, coalesce(c.code, t.code) AS code,
           coalesce(c.total, 0) AS total, coalesce(c.on_time, 0) AS on_time,
           coalesce(c.late, 0) AS late, coalesce(c.never, 0) AS never, c.p50_s, c.p90_s,
           coalesce(t.tasks, 0) AS tasks, coalesce(t.tasks_done, 0) AS tasks_done
      FROM c FULL JOIN t ON t.warning_id = c.warning_id AND t.code = c.code
), rated AS (
    SELECT j.*,
           CASE WHEN total > 0 THEN (on_time + late)::float8 / total END AS answer_rate,
           CASE WHEN total = 0 THEN NULL
                WHEN p50_s IS NULL THEN 0.0
                ELSE least(1.0, greatest(0.0, ($7::float8 - p50_s) / ($7::float8 - $6::float8)))
           END AS time_score,
           CASE WHEN tasks > 0 THEN tasks_done::float8 / tasks END AS task_rate
      FROM joined j
)
SELECT r.*, coalesce(d.name, r.code) AS name, coalesce(cn.name, '') AS county,
       CASE WHEN r.total > 0 THEN round((100 * (
           $3::float8 * r.answer_rate + $4::float8 * r.time_score
           + $5::float8 * coalesce(r.task_rate, 0))
           / ($3::float8 + $4::float8 + CASE WHEN r.tasks > 0 THEN $5::float8 ELSE 0 END))::numeric,
           1)::float8 END AS score
  FROM rated r
  LEFT JOIN divisions d ON d.code = r.code
  LEFT JOIN divisions cn ON cn.code = rpad(left(r.code, 6), 12, '0') AND $2 > 6
 ORDER BY r.code, r.warning_id;

-- name: report_never_answered
-- The call-outs nobody answered (未叫应名单): who, their phone, where, how far the chain went,
-- and the backup's name and phone, for the bureau to follow up by hand. $1 warning id
WITH steps AS (
    SELECT e.callout_id, count(*) AS fired
      FROM callout_events e
      JOIN callouts c ON c.id = e.callout_id
     WHERE c.warning_id = $1 AND e.kind = 'step_fired'
     GROUP BY 1
)
SELECT r.name, c.phone, c.level, r.role, coalesce(dv.name, '') AS division,
       coalesce(town.name, '') AS town, coalesce(county.name, '') AS county, c.state,
       c.deadline, coalesce(s.fired, 0) AS steps_fired,
       coalesce(b.name, '') AS backup_name, coalesce(b.phone, '') AS backup_phone
  FROM callouts c
  JOIN responders r ON r.id = c.responder_id
  LEFT JOIN responders b ON b.id = r.backup_id
  LEFT JOIN divisions dv ON dv.code = r.division_code
  LEFT JOIN divisions county
         ON county.code = rpad(left(r.division_code, 6), 12, '0') AND c.level <> 'city'
  LEFT JOIN divisions town
         ON town.code = rpad(left(r.division_code, 9), 12, '0') AND c.level IN ('town', 'village')
  LEFT JOIN steps s ON s.callout_id = c.id
 WHERE c.warning_id = $1 AND c.state <> 'acknowledged'
 ORDER BY r.division_code, r.name, c.phone;

-- name: report_field_tasks
-- Field tasks per village: ordered, done, overdue (not done by the deadline: done late, or still
-- not done past it at $2), people concerned and reported reached, and the kinds.
-- $1 warning id, $2 now
SELECT t.village_code, coalesce(v.name, t.village_code) AS village,
       coalesce(town.name, '') AS town, coalesce(county.name, '') AS county,
       string_agg(DISTINCT t.kind, ',' ORDER BY t.kind) AS kinds,
       count(*) AS ordered,
       count(*) FILTER (WHERE t.state = 'done') AS done,
       count(*) FILTER (WHERE (t.state = 'done' AND t.completed_at > t.deadline)
                           OR (t.state <> 'done' AND t.deadline < $2::timestamptz)) AS overdue,
       sum(t.targets) AS persons,
       sum(least(t.done, t.targets)) AS reached
  FROM field_tasks t
  LEFT JOIN divisions v ON v.code = t.village_code
  LEFT JOIN divisions town ON town.code = rpad(left(t.village_code, 9), 12, '0')
  LEFT JOIN divisions county ON county.code = rpad(left(t.village_code, 6), 12, '0')
 WHERE t.warning_id = $1
 GROUP BY t.village_code, v.name, town.name, county.name
 ORDER BY t.village_code;

-- name: report_timeline
-- Deliveries and answers over time from the issue, in buckets of whole minutes: one minute, or
-- as many as keep the series to 120 buckets at most. Events before the issue count in the first.
-- $1 warning id, $2 issued at
WITH ev AS (
    SELECT delivered_at AS at, 1 AS delivered, 0 AS answered
      FROM deliveries WHERE warning_id = $1 AND delivered_at IS NOT NULL
    UNION ALL
    SELECT acknowledged_at, 0, 1
      FROM callouts WHERE warning_id = $1 AND acknowledged_at IS NOT NULL
), span AS (
    SELECT greatest(1, ceil(extract(epoch FROM max(at) - $2::timestamptz) / 60.0 / 120))::int
               AS bucket,
           max(at) AS last
      FROM ev
), counted AS (
    SELECT greatest(0, floor(extract(epoch FROM ev.at - $2::timestamptz) / 60.0 / span.bucket))::int
               AS i,
           sum(ev.delivered) AS delivered, sum(ev.answered) AS answered
      FROM ev, span
     GROUP BY 1
)
SELECT s.i * span.bucket AS minute, span.bucket,
       coalesce(c.delivered, 0)::bigint AS delivered, coalesce(c.answered, 0)::bigint AS answered
  FROM span
 CROSS JOIN generate_series(
     0, greatest(0, floor(extract(epoch FROM span.last - $2::timestamptz) / 60.0 / span.bucket))::int
 ) AS s(i)
  LEFT JOIN counted c ON c.i = s.i
 WHERE span.last IS NOT NULL  -- nothing delivered or answered yet: no series at all
 ORDER BY s.i;

-- name: report_drills
-- The drills (status Exercise, alerts) that covered a county this warning covers, this one and
-- up to nine before it, newest first: call-outs, answered, on time, answer rate, median time.
-- $1 warning id
WITH me AS (
    SELECT w.sent, array(SELECT code FROM covered_codes(w.id, ARRAY['county'])) AS counties
      FROM warnings w WHERE w.id = $1
), drills AS (
    SELECT w.id, w.sent, w.event, w.level
      FROM warnings w, me
     WHERE w.status = 'Exercise' AND w.msg_type = 'Alert'
       AND (w.id = $1 OR w.sent < me.sent)
       AND EXISTS (SELECT 1 FROM covered_codes(w.id, ARRAY['county']) cc
                    WHERE cc.code = ANY(me.counties))
     ORDER BY w.sent DESC, w.id DESC
     LIMIT 10
)
SELECT d.id, d.sent, d.event, d.level,
       count(c.id) AS total,
       count(c.id) FILTER (WHERE c.state = 'acknowledged') AS answered,
       count(c.id) FILTER (WHERE c.state = 'acknowledged' AND NOT c.ack_late) AS on_time,
       CASE WHEN count(c.id) > 0
            THEN (count(c.id) FILTER (WHERE c.state = 'acknowledged'))::float8 / count(c.id)
       END AS answer_rate,
       (percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM c.acknowledged_at - c.opened_at)))::float8 AS p50_s
  FROM drills d
  LEFT JOIN callouts c ON c.warning_id = d.id
 GROUP BY d.id, d.sent, d.event, d.level
 ORDER BY d.sent DESC, d.id DESC;
