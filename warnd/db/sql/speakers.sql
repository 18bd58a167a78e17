-- The loudspeakers' states (kept by inbound from what broadcast channels report): the watch on
-- counties going silent, and the officers' list.

-- name: speakers_by_county
-- Speakers and offline speakers per county, for those whose village is known.
SELECT c.code AS county_code, c.name, count(*) AS total,
       count(*) FILTER (WHERE NOT s.online) AS offline
  FROM speakers s
  JOIN divisions c ON c.code = left(s.division_code, 6) || '000000' AND c.level = 'county'
 GROUP BY c.code, c.name;

-- name: speaker_alarm_change
-- Record a county's alarm state; returns a row only if this call changed it (so one process
-- reports it), with ``first`` true when the county had no state before.
-- $1 county code, $2 alarmed, $3 now
INSERT INTO speaker_alarms AS a (county_code, alarmed, changed_at) VALUES ($1, $2, $3::timestamptz)
ON CONFLICT (county_code) DO UPDATE SET alarmed = excluded.alarmed, changed_at = excluded.changed_at
 WHERE a.alarmed <> excluded.alarmed
RETURNING xmax = 0 AS first;

-- name: list_speakers
-- Speakers in a division (a code prefix; '' for all), optionally only online or offline, by id
-- after a cursor, with their village, town and county names.
-- $1 code prefix, $2 online (NULL: both), $3 $4 after this id and channel, $5 limit
SELECT s.channel, s.id, s.division_code, v.name AS village, t.name AS town, c.name AS county,
       s.online, s.state_at, s.heartbeat_at, s.power, s.battery, s.volume, s.detail,
       s.played_at, s.played, s.played_detail
  FROM speakers s
  LEFT JOIN divisions v ON v.code = s.division_code
  LEFT JOIN divisions t ON t.code = left(s.division_code, 9) || '000'
  LEFT JOIN divisions c ON c.code = left(s.division_code, 6) || '000000'
 WHERE ($1 = '' OR s.division_code LIKE $1 || '%')
   AND ($2::boolean IS NULL OR s.online = $2)
   AND (s.id, s.channel) > ($3, $4)
 ORDER BY s.id, s.channel
 LIMIT $5;

-- name: count_speakers
-- How many speakers of a division (as list_speakers) are online and offline.
-- $1 code prefix
SELECT count(*) FILTER (WHERE s.online) AS online, count(*) FILTER (WHERE NOT s.online) AS offline
  FROM speakers s
 WHERE $1 = '' OR s.division_code LIKE $1 || '%';
