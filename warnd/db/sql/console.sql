-- The console's officers and their sessions (migration 011).

-- name: insert_console_user
-- A new officer; nothing when the name is taken.
-- $1 name, $2 argon2 hash, $3 roles text[], $4 now
INSERT INTO console_users (name, password_hash, roles, created_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: set_console_password
-- A new password (and roles) for an existing officer; unlocks them. $1 name, $2 hash, $3 roles
UPDATE console_users
   SET password_hash = $2, roles = $3, failed_logins = 0, locked_until = NULL
 WHERE name = $1
RETURNING name;

-- name: console_user
-- An officer as sign-in reads them. $1 name
SELECT name, password_hash, roles, failed_logins, locked_until, disabled_at
  FROM console_users
 WHERE name = $1;

-- name: console_users
-- Every officer, for `warnd user list`, with their last activity in the console.
SELECT u.name, u.roles, u.created_at, u.locked_until, u.disabled_at,
       (SELECT max(s.last_seen) FROM console_sessions s WHERE s.user_name = u.name) AS last_seen
  FROM console_users u
 ORDER BY u.name;

-- name: set_console_user_disabled
-- Disable (at $2) or enable (NULL) an officer; a disabled officer's sessions end with it.
-- $1 name, $2 disabled_at or NULL
WITH ended AS (
    DELETE FROM console_sessions WHERE user_name = $1 AND $2::timestamptz IS NOT NULL
)
UPDATE console_users SET disabled_at = $2, failed_logins = 0, locked_until = NULL
 WHERE name = $1
RETURNING name;

-- name: console_sign_in_failed
-- One more failed sign-in; the failure that reaches the limit locks the officer out until
-- $3 + $4 and starts the count again. $1 name, $2 the limit, $3 now, $4 lockout (interval)
UPDATE console_users
   SET failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,
       locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3::timestamptz + $4::interval
                           ELSE locked_until END
 WHERE name = $1
RETURNING failed_logins, locked_until;

-- name: console_sign_in_succeeded
-- A successful sign-in clears the failure count and opens a session.
-- $1 name, $2 token sha256, $3 csrf token, $4 now
WITH cleared AS (
    UPDATE console_users SET failed_logins = 0, locked_until = NULL WHERE name = $1
)
INSERT INTO console_sessions (token_sha256, user_name, csrf_token, created_at, last_seen)
VALUES ($2, $1, $3, $4, $4);

-- name: console_session
-- The live session of a token, marked seen now; nothing when unknown or idle since before
-- $3. $1 token sha256, $2 now, $3 the oldest last_seen still live
UPDATE console_sessions s
   SET last_seen = $2
  FROM console_users u
 WHERE s.token_sha256 = $1 AND s.last_seen >= $3 AND u.name = s.user_name
   AND u.disabled_at IS NULL
RETURNING u.name, u.roles, s.csrf_token;

-- name: delete_console_session
-- Sign out, or forget a session found idle. $1 token sha256
DELETE FROM console_sessions WHERE token_sha256 = $1 RETURNING user_name;

-- name: delete_idle_console_sessions
-- Sessions idle since before $1 are gone for good. $1 the oldest last_seen still live
DELETE FROM console_sessions WHERE last_seen < $1;

-- name: search_divisions
-- Counties, towns and villages whose name or code contains $1, counties first, with their
-- parents' names for telling 张庄村 from 张庄村. $1 text, $2 limit
SELECT d.code, d.name, d.level,
       concat_ws(' / ', g.name, p.name) AS parents
  FROM divisions d
  LEFT JOIN divisions p ON p.code = d.parent_code
  LEFT JOIN divisions g ON g.code = p.parent_code AND g.level <> 'city'
 WHERE d.level IN ('county', 'town', 'village')
   AND (d.name LIKE '%' || $1 || '%' OR d.code LIKE $1 || '%')
 ORDER BY array_position(ARRAY['county', 'town', 'village'], d.level), d.code
 LIMIT $2;

-- name: division_names
-- The names of the given divisions, in the order of $1. $1 text[] codes (12 digits)
SELECT d.code, d.name, d.level
  FROM unnest($1::text[]) WITH ORDINALITY AS c (code, n)
  JOIN divisions d ON d.code = c.code
 ORDER BY c.n;

-- name: warning_village_points
-- Where a warning's villages are, for the map (一张图): those the planner resolved its area to.
-- $1 warning id
SELECT d.code, d.name, d.lat, d.lon
  FROM warning_villages wv
  JOIN divisions d ON d.code = wv.village_code
 WHERE wv.warning_id = $1 AND d.lat IS NOT NULL AND d.lon IS NOT NULL
 ORDER BY d.code;

-- name: town_points
-- Where the city's counties and towns are: the compose page's map to draw an area on.
SELECT code, name, lat, lon, level
  FROM divisions
 WHERE level IN ('county', 'town') AND lat IS NOT NULL AND lon IS NOT NULL
 ORDER BY code;

-- name: console_session_live
-- Whether a session is still live, without marking it seen (an open live stream is not the
-- officer at work). $1 token sha256, $2 the oldest last_seen still live
SELECT EXISTS (SELECT 1 FROM console_sessions WHERE token_sha256 = $1 AND last_seen >= $2);

-- name: division_card
-- One division for the roster page: its parent, its flags, and (a village) its households.
-- $1 code (12 digits)
SELECT d.code, d.name, d.level, d.parent_code, p.name AS parent_name, d.blind_spot, d.remote,
       CASE WHEN d.level = 'village'
            THEN (SELECT count(*) FROM households h WHERE h.village_code = d.code) END
           AS households,
       (SELECT count(*) FROM divisions c WHERE c.parent_code = d.code) AS children
  FROM divisions d
  LEFT JOIN divisions p ON p.code = d.parent_code
 WHERE d.code = $1;

-- name: division_children
-- The divisions directly under one, by code. $1 code (12 digits)
SELECT code, name, level, blind_spot FROM divisions WHERE parent_code = $1 ORDER BY code;

-- name: division_responders
-- The responsible people (责任人) of one division with their backup (B角). $1 code (12 digits)
SELECT r.ref, r.name, r.phone, r.level, r.role, r.specialities, r.exercise, b.name AS backup,
       b.phone AS backup_phone
  FROM responders r
  LEFT JOIN responders b ON b.id = r.backup_id
 WHERE r.division_code = $1
 ORDER BY r.ref;

-- name: pending_amendments
-- An officer's cancels and corrections of a warning still waiting for a second officer.
-- $1 the warning they are for
SELECT id, msg_type, author, received_at FROM warnings
 WHERE amends_id = $1 AND state = 'pending_approval'
 ORDER BY id;

-- name: area_summary
-- What divisions picked while composing hold, before anything is stored: villages, households
-- and responsible people under them (each counted once however the picks overlap).
-- $1 text[] division codes (12 digits)
WITH picked AS (
    SELECT CASE d.level WHEN 'county' THEN left(d.code, 6)
                        WHEN 'town' THEN left(d.code, 9)
                        ELSE d.code END AS prefix
      FROM divisions d
     WHERE d.code = ANY($1::text[]) AND d.level IN ('county', 'town', 'village')
)
SELECT (SELECT count(*) FROM divisions v
         WHERE v.level = 'village'
           AND EXISTS (SELECT 1 FROM picked p WHERE v.code LIKE p.prefix || '%')) AS villages,
       (SELECT count(*) FROM households h
         WHERE EXISTS (SELECT 1 FROM picked p WHERE h.village_code LIKE p.prefix || '%'))
           AS households,
       (SELECT count(*) FROM responders r
         WHERE EXISTS (SELECT 1 FROM picked p WHERE r.division_code LIKE p.prefix || '%'))
           AS responders;

-- name: warning_timeline
-- Deliveries delivered and call-outs answered per time bucket, for the warning page's chart.
-- Read once when the page asks for the chart, never by the live stream.
-- $1 warning id, $2 bucket (interval), $3 origin (the warning's arrival)
SELECT 'delivered' AS series, date_bin($2::interval, delivered_at, $3::timestamptz) AS t,
       count(*) AS n
  FROM deliveries
 WHERE warning_id = $1 AND delivered_at IS NOT NULL
 GROUP BY 2
UNION ALL
SELECT 'answered', date_bin($2::interval, acknowledged_at, $3::timestamptz), count(*)
  FROM callouts
 WHERE warning_id = $1 AND acknowledged_at IS NOT NULL
 GROUP BY 2
ORDER BY 1, 2;
