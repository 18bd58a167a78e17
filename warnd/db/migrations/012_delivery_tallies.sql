-- 012: deliveries counted per (warning, division, audience) and state, so that a warning's
-- progress reads a few thousand counters instead of its millions of deliveries.
--
-- Every statement that inserts, updates or deletes deliveries appends its net change per key to
-- delivery_tally_changes (a statement-level trigger over the transition tables: one row per key
-- the statement touched, whatever code path ran it, tests and tools included). Appending takes
-- no lock another writer waits on, so concurrent dispatch workers never queue behind a shared
-- counter row. fold_delivery_tallies() moves the changes into delivery_tallies (the daemon's
-- housekeeping calls it every few seconds); readers add both, so a count is exact at any moment
-- and folding only keeps the change table short.
--
-- first_sent / last_sent bound the sent_at of the rows that entered the key. A delivery's
-- sent_at is written once (record_sent, or the insert of one already sent) and never cleared,
-- so over a warning's keys they are the earliest and latest hand-over.
--
-- The runtime role only reads both tables: the trigger and the fold run as their owner
-- (SECURITY DEFINER), so a compromised process cannot forge the figures officers see.
CREATE TABLE delivery_tallies (
    warning_id     bigint NOT NULL,
    division_code  text NOT NULL,
    audience       text NOT NULL,
    -- One column per state rather than a row per state: a read sums a sixth of the rows.
    queued         integer NOT NULL,
    sending        integer NOT NULL,
    sent           integer NOT NULL,
    delivered      integer NOT NULL,
    failed         integer NOT NULL,
    cancelled      integer NOT NULL,
    first_sent     timestamptz,
    last_sent      timestamptz,
    PRIMARY KEY (warning_id, division_code, audience)
);

-- No foreign key to warnings, as on deliveries: its check would take a share lock on the
-- warning's row in every dispatch statement, and wait behind an officer's amendment holding it.
CREATE TABLE delivery_tally_changes (
    warning_id     bigint NOT NULL,
    division_code  text NOT NULL,
    audience       text NOT NULL,
    queued         integer NOT NULL,
    sending        integer NOT NULL,
    sent           integer NOT NULL,
    delivered      integer NOT NULL,
    failed         integer NOT NULL,
    cancelled      integer NOT NULL,
    first_sent     timestamptz,
    last_sent      timestamptz
);
CREATE INDEX delivery_tally_changes_warning ON delivery_tally_changes (warning_id);

CREATE FUNCTION tally_deliveries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    -- Rows leaving (old) count -1 in their state, rows arriving (new) +1; an insert has no old
    -- rows and a delete no new ones. Keys whose counts net to zero (an update that moved no row
    -- between states: a gateway id, a lease) leave nothing.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_tally_changes
        SELECT warning_id, division_code, audience,
               count(*) FILTER (WHERE state = 'queued'),
               count(*) FILTER (WHERE state = 'sending'),
               count(*) FILTER (WHERE state = 'sent'),
               count(*) FILTER (WHERE state = 'delivered'),
               count(*) FILTER (WHERE state = 'failed'),
               count(*) FILTER (WHERE state = 'cancelled'),
               min(sent_at), max(sent_at)
          FROM new_rows
         GROUP BY warning_id, division_code, audience;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO delivery_tally_changes
        SELECT warning_id, division_code, audience,
               -count(*) FILTER (WHERE state = 'queued'),
               -count(*) FILTER (WHERE state = 'sending'),
               -count(*) FILTER (WHERE state = 'sent'),
               -count(*) FILTER (WHERE state = 'delivered'),
               -count(*) FILTER (WHERE state = 'failed'),
               -count(*) FILTER (WHERE state = 'cancelled'),
               NULL, NULL
          FROM old_rows
         GROUP BY warning_id, division_code, audience;
    ELSE
        INSERT INTO delivery_tally_changes
        SELECT c.* FROM (
            SELECT warning_id, division_code, audience,
                   coalesce(sum(n) FILTER (WHERE state = 'queued'), 0)::integer AS queued,
                   coalesce(sum(n) FILTER (WHERE state = 'sending'), 0)::integer AS sending,
                   coalesce(sum(n) FILTER (WHERE state = 'sent'), 0)::integer AS sent,
                   coalesce(sum(n) FILTER (WHERE state = 'delivered'), 0)::integer AS delivered,
                   coalesce(sum(n) FILTER (WHERE state = 'failed'), 0)::integer AS failed,
                   coalesce(sum(n) FILTER (WHERE state = 'cancelled'), 0)::integer AS cancelled,
                   min(sent_at) AS first_sent, max(sent_at) AS last_sent
              FROM (SELECT warning_id, division_code, audience, state, -1 AS n,
                           NULL::timestamptz AS sent_at
                      FROM old_rows
                    UNION ALL
                    SELECT warning_id, division_code, audience, state, 1, sent_at
                      FROM new_rows) AS moved
             GROUP BY warning_id, division_code, audience) AS c
         WHERE (c.queued, c.sending, c.sent, c.delivered, c.failed, c.cancelled)
               <> (0, 0, 0, 0, 0, 0);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_tally_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_deliveries();
CREATE TRIGGER deliveries_tally_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_deliveries();
CREATE TRIGGER deliveries_tally_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_deliveries();

-- Emptying the outbox (the owner, in a benchmark's reset) empties its counts. A reset under
-- session_replication_role = replica fires no trigger: it must name both tables itself.
CREATE FUNCTION truncate_delivery_tallies() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    TRUNCATE delivery_tallies, delivery_tally_changes;
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_tally_truncate AFTER TRUNCATE ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION truncate_delivery_tallies();

-- Move the changes into the tallies; the number of change rows folded. Keys are written in
-- order, so two folds at once wait for each other instead of deadlocking.
CREATE FUNCTION fold_delivery_tallies() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH moved AS (
        DELETE FROM delivery_tally_changes RETURNING *
    ), folded AS (
        INSERT INTO delivery_tallies AS t
        SELECT warning_id, division_code, audience, sum(queued), sum(sending), sum(sent),
               sum(delivered), sum(failed), sum(cancelled), min(first_sent), max(last_sent)
          FROM moved
         GROUP BY warning_id, division_code, audience
         ORDER BY warning_id, division_code, audience
        ON CONFLICT (warning_id, division_code, audience) DO UPDATE
           SET queued = t.queued + excluded.queued,
               sending = t.sending + excluded.sending,
               sent = t.sent + excluded.sent,
               delivered = t.delivered + excluded.delivered,
               failed = t.failed + excluded.failed,
               cancelled = t.cancelled + excluded.cancelled,
               first_sent = least(t.first_sent, excluded.first_sent),
               last_sent = greatest(t.last_sent, excluded.last_sent)
        RETURNING 1
    )
    SELECT count(*) FROM moved;
$$;

-- The deliveries already there.
INSERT INTO delivery_tallies
SELECT warning_id, division_code, audience,
       count(*) FILTER (WHERE state = 'queued'),
       count(*) FILTER (WHERE state = 'sending'),
       count(*) FILTER (WHERE state = 'sent'),
       count(*) FILTER (WHERE state = 'delivered'),
       count(*) FILTER (WHERE state = 'failed'),
       count(*) FILTER (WHERE state = 'cancelled'),
       min(sent_at), max(sent_at)
  FROM deliveries
 GROUP BY warning_id, division_code, audience;

GRANT SELECT ON delivery_tallies, delivery_tally_changes TO warnd_app;
GRANT EXECUTE ON FUNCTION fold_delivery_tallies() TO warnd_app;
