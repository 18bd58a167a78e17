-- Channel ownership: one warnd process at a time holds a channel, by a session advisory lock
-- (first key 2052; the second is the channel's key, warnd.pipeline.ownership.channel_key).

-- name: try_own_channels
-- Try to take these channels; the keys now held by this session. A key this session holds
-- already must not be asked again (the lock would be counted twice).
-- $1 int[] channel keys
SELECT k AS key FROM unnest($1::int[]) AS k WHERE pg_try_advisory_lock(2052, k);

-- name: channel_holders
-- Who holds each held channel lock: the holding session's application name (warnd sets it to
-- its host and process id on the ownership connection). The key comes back signed, as given.
SELECT (CASE WHEN l.objid::bigint >= 2147483648 THEN l.objid::bigint - 4294967296
             ELSE l.objid::bigint END)::int AS key,
       coalesce(a.application_name, 'backend ' || l.pid) AS holder
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.classid = 2052 AND l.objsubid = 2 AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());

-- name: ownership_keepalives
-- Short TCP keepalives on the ownership connection: when the host holding a channel vanishes
-- without closing its socket, the server ends the session (and frees its locks) within
-- idle + count × interval seconds instead of the system's two hours.
-- $1 seconds idle and between probes
SELECT set_config('tcp_keepalives_idle', $1::text, false),
       set_config('tcp_keepalives_interval', $1::text, false),
       set_config('tcp_keepalives_count', '2', false);
