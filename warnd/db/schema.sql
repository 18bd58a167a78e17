-- The declared schema: what the numbered migrations in migrations/ build, as one document.
--
-- warnd never applies this file; databases are built and upgraded by the migrations alone.
-- tests/test_schema.py builds one database from the migrations and one from this file and fails
-- on any difference in tables, columns, constraints, indexes, functions, triggers or sequences.
-- So when a migration changes the schema, change this file in the same commit.
--
-- Columns are listed in the order the database holds them (columns added by later migrations
-- come last), because that is the order ``SELECT *`` and ``COPY`` without a column list see.
-- Unnamed constraints get PostgreSQL's default names (``<table>_<column>_check``,
-- ``<table>_<column>_fkey``, ``<table>_<columns>_key``), the names that appear in error messages.
--
-- Division codes are 12-digit National Bureau of Statistics codes (county and town codes padded
-- with zeros); the prefix that a division shares with everything under it has length 4 (city),
-- 6 (county), 9 (town) or 12 (village).


-- ---------------------------------------------------------------------------------------------
-- The roster: divisions and the people and places warnings must reach. Imported from the
-- city's files; every row has a ``ref`` (the roster's own key, stable across imports) and
-- ``exercise`` (takes part in exercises, 演练).
-- ---------------------------------------------------------------------------------------------

-- The administrative divisions from the city down to villages, with the roster's flags on a
-- village. blind_spot (no loudspeaker broadcast) and remote make gong tasks; the other flags are
-- kept from the roster files and exported, not read by planning.
CREATE TABLE divisions (
    code          text PRIMARY KEY CHECK (code ~ '^[0-9]{12}$'),
    name          text NOT NULL,
    level         text NOT NULL CHECK (level IN ('city', 'county', 'town', 'village')),
    parent_code   text REFERENCES divisions (code),
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    lon           double precision CHECK (lon BETWEEN -180 AND 180),
    blind_spot    boolean NOT NULL DEFAULT false,  -- no loudspeaker or signal coverage (警报盲区)
    remote        boolean NOT NULL DEFAULT false,
    mountain      boolean NOT NULL DEFAULT false,
    flood_storage boolean NOT NULL DEFAULT false,  -- 蓄滞洪区
    low_lying     boolean NOT NULL DEFAULT false,
    geo_hazard    boolean NOT NULL DEFAULT false   -- 地质灾害隐患点
);
CREATE INDEX divisions_parent ON divisions (parent_code);
CREATE INDEX divisions_level ON divisions (level, code);

-- The length of the code prefix shared by a division and everything under it.
CREATE FUNCTION code_prefix_length(level text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE level WHEN 'city' THEN 4 WHEN 'county' THEN 6 WHEN 'town' THEN 9 ELSE 12 END
$$;

-- Officials who must be told and must answer (叫应); the backup (B角) is escalated to.
CREATE TABLE responders (
    id            bigserial PRIMARY KEY,
    ref           text NOT NULL UNIQUE,
    name          text NOT NULL,
    phone         text NOT NULL CHECK (phone ~ '^\+[0-9]{6,15}$'),
    division_code text NOT NULL REFERENCES divisions (code),
    level         text NOT NULL CHECK (level IN ('city', 'county', 'town', 'village')),
    role          text NOT NULL DEFAULT '',
    specialities  text[] NOT NULL DEFAULT '{all}'
        CHECK (specialities <@ ARRAY['flood', 'forest_fire', 'geological', 'earthquake', 'all']),
    backup_id     bigint REFERENCES responders (id) DEFERRABLE INITIALLY DEFERRED,  -- B角
    exercise      boolean NOT NULL DEFAULT false
);
CREATE INDEX responders_division ON responders (division_code);
CREATE INDEX responders_phone ON responders (phone);
CREATE INDEX responders_backup ON responders (backup_id);

-- Households of a village, reached on every phone they registered.
CREATE TABLE households (
    id            bigserial PRIMARY KEY,
    ref           text NOT NULL UNIQUE,
    village_code  text NOT NULL REFERENCES divisions (code),
    address       text NOT NULL,
    head_name     text NOT NULL DEFAULT '',
    phones        text[] NOT NULL,
    exercise      boolean NOT NULL DEFAULT false
);
CREATE INDEX households_village ON households (village_code);

-- People who need someone at the door (living alone, children, sick, disabled, pregnant); the
-- helper is the responder who visits them.
CREATE TABLE special_persons (
    id            bigserial PRIMARY KEY,
    ref           text NOT NULL UNIQUE,
    household_id  bigint REFERENCES households (id) ON DELETE SET NULL,
    village_code  text NOT NULL REFERENCES divisions (code),
    name          text NOT NULL,
    category      text NOT NULL
        CHECK (category IN ('elderly_alone', 'child', 'sick', 'disabled', 'pregnant')),
    address       text NOT NULL DEFAULT '',
    phone         text CHECK (phone ~ '^\+[0-9]{6,15}$'),
    helper_id     bigint NOT NULL REFERENCES responders (id),
    exercise      boolean NOT NULL DEFAULT false
);
CREATE INDEX special_persons_village ON special_persons (village_code);
CREATE INDEX special_persons_helper ON special_persons (helper_id);
CREATE INDEX special_persons_household ON special_persons (household_id);

-- Schools, care homes and hospitals, reached through their contact person.
CREATE TABLE facilities (
    id            bigserial PRIMARY KEY,
    ref           text NOT NULL UNIQUE,
    village_code  text NOT NULL REFERENCES divisions (code),
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('school', 'kindergarten', 'elderly_care',
                                                'child_welfare', 'minors_protection', 'hospital')),
    address       text NOT NULL DEFAULT '',
    contact_name  text NOT NULL,
    contact_phone text NOT NULL CHECK (contact_phone ~ '^\+[0-9]{6,15}$'),
    exercise      boolean NOT NULL DEFAULT false
);
CREATE INDEX facilities_village ON facilities (village_code);


-- ---------------------------------------------------------------------------------------------
-- Warnings: what came in, where it applies, and the texts rendered for it.
-- ---------------------------------------------------------------------------------------------

-- Every accepted message, CAP or manual, in normalised form, with the state of its planning.
CREATE TABLE warnings (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL,             -- feed name, or 'officer'
    sender          text NOT NULL,
    identifier      text NOT NULL,
    sent            timestamptz NOT NULL,
    status          text NOT NULL CHECK (status IN ('Actual', 'Exercise', 'System', 'Test', 'Draft')),
    msg_type        text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel', 'Ack', 'Error')),
    refs            text[] NOT NULL DEFAULT '{}',  -- 'sender,identifier,sent' triples
    supersedes_id   bigint REFERENCES warnings (id),
    hazard          text NOT NULL,
    level           text NOT NULL CHECK (level IN ('blue', 'yellow', 'orange', 'red')),
    event           text NOT NULL DEFAULT '',
    headline        text NOT NULL DEFAULT '',
    description     text NOT NULL DEFAULT '',
    instruction     text NOT NULL DEFAULT '',
    area_desc       text NOT NULL DEFAULT '',
    area            jsonb NOT NULL,            -- {"codes": [...], "polygons": [...], "circles": [...]}
    effective       timestamptz,
    expires         timestamptz,
    state           text NOT NULL CHECK (state IN ('pending_approval', 'active', 'superseded',
                                                   'cancelled', 'expired', 'muted',
                                                   'rejected')),  -- rejected: refused approval
    author          text,
    approver        text,
    approved_at     timestamptz,
    raw             text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    plan_state      text NOT NULL DEFAULT 'none'
        CHECK (plan_state IN ('none', 'pending', 'planning', 'done')),
    plan_cursor     integer NOT NULL DEFAULT 0,     -- last planned step, so a restart resumes
    planned_at      timestamptz,
    plan_error      text,                           -- why the last planning attempt failed
    plan_retry_at   timestamptz,                    -- not before then (after a failure)
    -- A short code (A7, B12…) that responders may name in a reply when several warnings are
    -- open at once; unique among open warnings (warnings_open_short_code).
    short_code      text CHECK (short_code ~ '^[A-Z][0-9]{1,3}$'),
    -- The Update or Cancel that ended this warning: an Update's plan and a Cancel's notices
    -- start from the people the warnings it ended had reached.
    ended_by        bigint REFERENCES warnings (id),
    -- The warning an officer's cancel or correction is for; a waiting one ends it when approved.
    amends_id       bigint REFERENCES warnings (id),
    -- Per source: one feed's message cannot make another's real one a "duplicate".
    CONSTRAINT warnings_source_sender_identifier_sent_key UNIQUE (source, sender, identifier, sent)
);
CREATE INDEX warnings_key ON warnings (sender, identifier, sent);  -- what references name
CREATE INDEX warnings_amends ON warnings (amends_id) WHERE amends_id IS NOT NULL;
CREATE INDEX warnings_plan ON warnings (plan_state) WHERE plan_state IN ('pending', 'planning');
CREATE INDEX warnings_source ON warnings (source, received_at);
CREATE UNIQUE INDEX warnings_open_short_code ON warnings (short_code)
    WHERE short_code IS NOT NULL AND state IN ('pending_approval', 'active');
CREATE INDEX warnings_ended_by ON warnings (ended_by) WHERE ended_by IS NOT NULL;

-- Messages a feed sent that were refused, kept for the duty officer.
CREATE TABLE rejected_messages (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    feed         text,
    error        text NOT NULL,
    detail       text NOT NULL,
    body         text NOT NULL                  -- the first bytes, decoded leniently
);
CREATE INDEX rejected_messages_feed ON rejected_messages (feed, received_at);

-- The villages a warning's area resolves to: computed once, used by preview and planning.
-- No foreign keys: rows are only ever selected from divisions for a warning just stored, and a
-- per-row check would cost ingest latency on a city-wide warning (6,000 rows).
CREATE TABLE warning_villages (
    warning_id   bigint NOT NULL,
    village_code text NOT NULL,
    PRIMARY KEY (warning_id, village_code)
);

-- The division codes a warning covers: its villages and every town, county and city above them,
-- of the given levels. One definition for planning, previews and progress, so what an officer is
-- shown is what is sent; asking only for the levels needed keeps the first step fast.
CREATE FUNCTION covered_codes(
    warning bigint, levels text[] DEFAULT ARRAY['city', 'county', 'town', 'village']
) RETURNS TABLE (code text)
LANGUAGE sql STABLE AS $$
    SELECT village_code FROM warning_villages
     WHERE warning_id = warning AND 'village' = ANY(levels)
    UNION SELECT rpad(left(village_code, 9), 12, '0') FROM warning_villages
     WHERE warning_id = warning AND 'town' = ANY(levels)
    UNION SELECT rpad(left(village_code, 6), 12, '0') FROM warning_villages
     WHERE warning_id = warning AND 'county' = ANY(levels)
    UNION SELECT rpad(left(village_code, 4), 12, '0') FROM warning_villages
     WHERE warning_id = warning AND 'city' = ANY(levels)
$$;

-- Texts rendered once per (warning, audience, channel kind): deliveries point at them.
CREATE TABLE messages (
    id           bigserial PRIMARY KEY,
    warning_id   bigint NOT NULL REFERENCES warnings (id) ON DELETE CASCADE,
    audience     text NOT NULL,
    channel_kind text NOT NULL,
    body         text NOT NULL,
    UNIQUE (warning_id, audience, channel_kind)
);


-- ---------------------------------------------------------------------------------------------
-- Delivery: the outbox, what comes back from channels, and the health of feeds.
-- ---------------------------------------------------------------------------------------------

-- The outbox: one row per recipient address and channel kind; the source of truth of what was
-- sent. No foreign keys on warning_id, message_id, callout_id or task_id: planning writes
-- millions of rows whose ids come from rows it has just read or written, and PostgreSQL checks
-- a foreign key with a trigger per row (measured: 40 % of planning time). Warnings are never
-- deleted.
CREATE TABLE deliveries (
    id             bigserial PRIMARY KEY,
    warning_id     bigint NOT NULL,
    message_id     bigint NOT NULL,
    audience       text NOT NULL CHECK (audience IN ('responder', 'facility', 'helper', 'household',
                                                     'broadcast', 'escalation', 'field_task')),
    recipient_id   bigint NOT NULL,            -- responders / facilities / households id, or 0
    division_code  text NOT NULL,
    address        text NOT NULL,              -- E.164 phone, or a loudspeaker's village code
    channel_kind   text NOT NULL,
    fallback       text[] NOT NULL DEFAULT '{}',  -- kinds to try, in order, on permanent failure
    priority       smallint NOT NULL,          -- lower is sooner: hazard and level, then audience
    state          text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'cancelled')),
    attempts       integer NOT NULL DEFAULT 0,
    due_at         timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    channel        text,                       -- the channel instance that took it
    external_id    text,                       -- the gateway's message id
    error          text,
    queued_at      timestamptz NOT NULL DEFAULT now(),
    sending_at     timestamptz,
    sent_at        timestamptz,
    delivered_at   timestamptz,
    failed_at      timestamptz,
    cancelled_at   timestamptz,
    -- The call-out a delivery was made for (its first call and every escalation step), so that
    -- an answer cancels the call-out's queued attempts on every other channel.
    callout_id     bigint,
    step           integer,                    -- the escalation step that made it, if any
    -- A notice is one message about an earlier warning to someone it already reached: the
    -- correction of an Update (inside its area), "no longer applies to you" (outside it), or the
    -- cancellation. The planner of an Update skips whoever got a notice, so nobody gets the
    -- whole warning twice.
    notice         text CHECK (notice IN ('correction', 'withdrawn', 'cancelled')),
    -- SMS segments an accepted text took, as the channel counted them (what operators bill).
    parts          smallint,
    task_id        bigint,                     -- the field task (itself, a reminder, an escalation)
    -- Past this time the message is too late to send (an earthquake alert after the shaking):
    -- it is cancelled as expired, by dispatch or by the channel (migration 009).
    expires_at     timestamptz,
    -- The channel kind it left when it last failed over to the next one (migration 014).
    failed_over_from text,
    -- A re-run of the same escalation step is a no-op (ON CONFLICT ON CONSTRAINT), while another
    -- step may reach the same address again; NULLS NOT DISTINCT keeps deliveries that are no
    -- step unique too.
    CONSTRAINT deliveries_recipient_key
        UNIQUE NULLS NOT DISTINCT (warning_id, audience, recipient_id, address, channel_kind, step)
);
CREATE INDEX deliveries_queue ON deliveries (channel_kind, priority, id) WHERE state = 'queued';
CREATE INDEX deliveries_lease ON deliveries (lease_until) WHERE state = 'sending';
CREATE INDEX deliveries_external ON deliveries (channel, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX deliveries_warning ON deliveries (warning_id, id);
CREATE INDEX deliveries_callout ON deliveries (callout_id) WHERE callout_id IS NOT NULL;
CREATE INDEX deliveries_escalation_address ON deliveries (address) WHERE audience = 'escalation';
CREATE INDEX deliveries_notice ON deliveries (warning_id, address) WHERE notice IS NOT NULL;
CREATE INDEX deliveries_task ON deliveries (task_id) WHERE task_id IS NOT NULL;
-- Broadcast commands that failed for good, whose villages get gong tasks (migration 009).
CREATE INDEX deliveries_broadcast_failed ON deliveries (warning_id)
    WHERE audience = 'broadcast' AND state = 'failed';

-- Deliveries counted per (warning, division, audience) and state (migration 012): every
-- statement that changes deliveries appends its net change per key to delivery_tally_changes
-- (a statement-level trigger over the transition tables, taking no lock another writer waits
-- on); fold_delivery_tallies() moves the changes into delivery_tallies. Readers add both, so
-- counts are exact at any moment. first_sent / last_sent bound the sent_at of the rows that
-- entered a key (sent_at is written once and never cleared). The trigger and the fold run as
-- the owner: the runtime role only reads the figures.
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

-- Inbound events from channels that matched nothing yet (replies, unknown receipts), for the
-- officer.
CREATE TABLE inbound_events (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    channel      text NOT NULL,
    kind         text NOT NULL,
    sender       text,
    payload      jsonb NOT NULL,
    matched      boolean NOT NULL DEFAULT false
);
-- Receipts that came before their send was recorded, waiting to be matched (a short window).
CREATE INDEX inbound_events_unmatched_receipts ON inbound_events (received_at)
    WHERE NOT matched AND kind = 'receipt';

-- Whether each feed with an expected heartbeat is silent; shared by every warnd process, so an
-- alarm is raised (and audited) once, by whichever process notices first.
CREATE TABLE feed_health (
    feed        text PRIMARY KEY,
    silent      boolean NOT NULL,
    changed_at  timestamptz NOT NULL
);


-- ---------------------------------------------------------------------------------------------
-- Audit: append-only records of what people and the system decided.
-- ---------------------------------------------------------------------------------------------

-- Refuses any change to an append-only table (audit_log, callout_events, field_task_events).
-- The message says audit_log whatever the table: one function serves all three triggers.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$;

-- What people and the system decided; an audit export reads one warning's entries by subject.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    subject text NOT NULL DEFAULT '',
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_subject ON audit_log (subject, id);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();


-- ---------------------------------------------------------------------------------------------
-- Call-and-respond (叫应): call-outs that must be answered, and what happened to them.
-- ---------------------------------------------------------------------------------------------

-- One call-out per (warning, responder) who must answer. The escalation chain is frozen into
-- ``snapshot`` when it opens; ``cursor`` counts the steps fired or skipped; ``next_check_at`` is
-- the durable timer the escalation scanner claims (with FOR UPDATE SKIP LOCKED).
CREATE TABLE callouts (
    id              bigserial PRIMARY KEY,
    warning_id      bigint NOT NULL REFERENCES warnings (id),
    responder_id    bigint NOT NULL REFERENCES responders (id),
    phone           text NOT NULL,              -- the registered number replies must come from
    level           text NOT NULL,              -- the responder's level when it opened
    state           text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'notified', 'acknowledged', 'escalated', 'closed')),
    opened_at       timestamptz NOT NULL,
    deadline        timestamptz NOT NULL,
    notified_at     timestamptz,
    acknowledged_at timestamptz,
    ack_late        boolean,
    ack_via         text CHECK (ack_via IN ('sms', 'voice', 'device', 'officer')),
    ack_by          text,                       -- the officer who recorded it, or the number
    snapshot        jsonb NOT NULL,
    cursor          integer NOT NULL DEFAULT 0,
    next_check_at   timestamptz,
    closed_at       timestamptz,
    UNIQUE (warning_id, responder_id)
);
CREATE INDEX callouts_due ON callouts (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX callouts_open_phone ON callouts (phone)
    WHERE state IN ('pending', 'notified', 'escalated');
-- Pending call-outs, swept for those whose message went out while they were locked
-- (migration 009).
CREATE INDEX callouts_pending ON callouts (id) WHERE state = 'pending';

-- What happened to each call-out, in order: opened, notified, acknowledged, step_fired,
-- step_skipped, closed. Append-only. No foreign key: events are written in the statements that
-- create or change their call-out, and a per-row check planned while ``callouts`` was empty
-- stays a sequential scan for the connection's life (measured: 6.7 s to open 10,000 call-outs
-- instead of 0.7 s).
CREATE TABLE callout_events (
    id          bigserial PRIMARY KEY,
    callout_id  bigint NOT NULL,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    actor       text NOT NULL DEFAULT 'system',
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX callout_events_callout ON callout_events (callout_id, id);
CREATE TRIGGER callout_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON callout_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();


-- ---------------------------------------------------------------------------------------------
-- Field tasks (敲门入户, 鸣锣吹哨): a person on the ground reaches people a text may not.
-- ---------------------------------------------------------------------------------------------

-- Door-knocking: a helper visits the special-group persons assigned to them in one village
-- (``targets`` of them). Gongs: the village responder of a blind-spot or remote village sounds
-- the alarm (``targets`` = 1). Progress comes back by SMS (已通知 5 / 完成); an overdue task
-- escalates like a call-out, with its own frozen chain, cursor and durable timer.
CREATE TABLE field_tasks (
    id            bigserial PRIMARY KEY,
    warning_id    bigint NOT NULL REFERENCES warnings (id),
    kind          text NOT NULL CHECK (kind IN ('door_knock', 'gong')),
    village_code  text NOT NULL,
    assignee_id   bigint NOT NULL REFERENCES responders (id),
    phone         text NOT NULL,              -- the assignee's number progress must come from
    targets       integer NOT NULL CHECK (targets >= 1),
    done          integer NOT NULL DEFAULT 0 CHECK (done >= 0),
    state         text NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'escalated', 'done', 'closed')),
    opened_at     timestamptz NOT NULL,
    deadline      timestamptz NOT NULL,
    reported_at   timestamptz,                -- the last progress report
    completed_at  timestamptz,
    closed_at     timestamptz,
    snapshot      jsonb NOT NULL,
    cursor        integer NOT NULL DEFAULT 0,
    next_check_at timestamptz,
    UNIQUE (warning_id, kind, village_code, assignee_id)
);
CREATE INDEX field_tasks_due ON field_tasks (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX field_tasks_open_phone ON field_tasks (phone) WHERE state IN ('open', 'escalated');
CREATE INDEX field_tasks_warning ON field_tasks (warning_id, village_code);

-- What happened to each task, in order: opened, progress, done, step_fired, step_skipped,
-- closed. Append-only; no foreign key, as for callout_events.
CREATE TABLE field_task_events (
    id       bigserial PRIMARY KEY,
    task_id  bigint NOT NULL,
    at       timestamptz NOT NULL,
    kind     text NOT NULL,
    actor    text NOT NULL DEFAULT 'system',
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX field_task_events_task ON field_task_events (task_id, id);
CREATE TRIGGER field_task_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON field_task_events FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();


-- ---------------------------------------------------------------------------------------------
-- Bookkeeping
-- ---------------------------------------------------------------------------------------------

-- The migrations applied to this database. Created by warnd/db/migrate.py itself rather than by
-- a migration, since it must exist before the first one runs; declared here because it is part
-- of every warnd database.
CREATE TABLE schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,              -- sha256 of the file, so an edited migration is refused
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Replies per number and minute (migration 008): the cap on an auto-replying phone or a looping
-- gateway, held across every warnd process. Old minutes are pruned by housekeeping.
CREATE TABLE reply_counts (
    phone   text NOT NULL,
    minute  timestamptz NOT NULL,
    n       integer NOT NULL,
    PRIMARY KEY (phone, minute)
);

-- The loudspeakers' state as their broadcast channel last reported it (migration 009): online,
-- heartbeat, readings, last play. A speaker's id is its village's code.
CREATE TABLE speakers (
    channel        text NOT NULL,
    id             text NOT NULL,
    division_code  text REFERENCES divisions (code) ON DELETE SET NULL,  -- its village, if known
    online         boolean NOT NULL,
    state_at       timestamptz NOT NULL,   -- when the state above was reported
    heartbeat_at   timestamptz,
    power          text,
    battery        smallint CHECK (battery BETWEEN 0 AND 100),
    volume         smallint CHECK (volume BETWEEN 0 AND 100),
    detail         text NOT NULL DEFAULT '',
    played_at      timestamptz,            -- the last play confirmation
    played         boolean,
    played_detail  text,
    PRIMARY KEY (channel, id)
);
CREATE INDEX speakers_division ON speakers (division_code);

-- Whether each county's loudspeakers are in alarm (too many offline); shared by every warnd
-- process, so the alarm is raised (and audited) once, as a silent feed's is.
CREATE TABLE speaker_alarms (
    county_code  text PRIMARY KEY,
    alarmed      boolean NOT NULL,
    changed_at   timestamptz NOT NULL
);

-- The earthquake early-warning reports received from seismic feeds (migration 010), one row per
-- (event, report number) whichever feed or process received it first: a second copy of a report
-- (a retry, or the same national event through a second feed) is a duplicate, not a second alert.
CREATE TABLE eew_reports (
    id           bigserial PRIMARY KEY,
    feed         text NOT NULL,
    event_id     text NOT NULL,
    report_no    integer NOT NULL CHECK (report_no >= 1),
    origin_time  timestamptz NOT NULL,
    lat          double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon          double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    depth_km     double precision NOT NULL CHECK (depth_km BETWEEN 0 AND 700),
    magnitude    double precision NOT NULL CHECK (magnitude BETWEEN 0 AND 10),
    place        text NOT NULL,
    final        boolean NOT NULL,
    cancel       boolean NOT NULL,
    status       text NOT NULL CHECK (status IN ('Actual', 'Exercise', 'Test')),
    -- received: being handed to the fast path now; handed: it took the report; recorded: no
    -- fast path in that process, or a Test; failed: the hand-off failed, and the feed's retry
    -- of the same report takes it over (a duplicate of a failed report is not ignored).
    state        text NOT NULL DEFAULT 'received'
        CHECK (state IN ('received', 'handed', 'recorded', 'failed')),
    received_at  timestamptz NOT NULL,
    summary      jsonb,                        -- villages per level etc., computed on receipt
    raw          text NOT NULL,
    -- the durable record written (warning, deliveries, call-outs; or nothing to record): a
    -- report received a while ago without it was interrupted by a crash (FastPath.recover)
    recorded_at  timestamptz,
    CONSTRAINT eew_reports_event_id_report_no_key UNIQUE (event_id, report_no)
);
CREATE INDEX eew_reports_received ON eew_reports (received_at);
CREATE INDEX eew_reports_unrecorded ON eew_reports (received_at) WHERE recorded_at IS NULL;

-- Blind drills (双盲演练, migration 014): an officer gives a window and the scenarios to choose
-- from; warnd picks the moment and the scenario at random and keeps both secret (only the
-- scheduling officer and the audit log see them) until the drill fires as an Exercise warning. A
-- live orange or red warning in the drill's county postpones it.
CREATE TABLE blind_drills (
    id             bigserial PRIMARY KEY,
    scheduled_by   text NOT NULL,
    scheduled_at   timestamptz NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL CHECK (window_end > window_start),
    counties       text[] NOT NULL,             -- the counties it may fall on (not secret)
    fire_at        timestamptz NOT NULL,        -- secret until it fires
    scenario       jsonb NOT NULL,              -- secret: hazard, level, county, texts
    -- The scenarios it was drawn from: what an approver reads (orange and red drills wait for a
    -- second officer, as manual warnings do), learning what it may be, not which or when.
    scenarios      jsonb NOT NULL,
    state          text NOT NULL DEFAULT 'scheduled'
        CHECK (state IN ('pending_approval', 'scheduled', 'fired', 'cancelled')),
    approved_by    text,
    approved_at    timestamptz,
    postponements  integer NOT NULL DEFAULT 0,
    warning_id     bigint REFERENCES warnings (id),
    fired_at       timestamptz,
    cancelled_by   text,
    cancelled_at   timestamptz
);
CREATE INDEX blind_drills_due ON blind_drills (fire_at) WHERE state = 'scheduled';

-- The duty officers who sign in to the console (migration 011): in the database, so that
-- `warnd user add` and lockout counters take effect at once in every process.
CREATE TABLE console_users (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    password_hash   text NOT NULL,                 -- argon2id, PHC string
    roles           text[] NOT NULL CHECK (cardinality(roles) > 0
                        AND roles <@ ARRAY['officer', 'approver', 'admin']),
    created_at      timestamptz NOT NULL,
    failed_logins   integer NOT NULL DEFAULT 0,    -- consecutive failures since the last success
    locked_until    timestamptz,                   -- too many failures: refused until then
    disabled_at     timestamptz                    -- disabled (migration 016): refused at sign-in
);

-- A signed-in officer's session. Only the SHA-256 of the cookie's token is kept, so a copy of
-- the table signs nobody in. A session idle past the timeout is refused and deleted.
CREATE TABLE console_sessions (
    token_sha256    text PRIMARY KEY,
    user_name       text NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_name);

-- =============================================================================================
-- The role warnd runs as (migration 007): it writes warnings and the outbox but owns nothing,
-- so it cannot change the schema, disable the append-only triggers, truncate a table or rewrite
-- history. Migrations, roster replacement and benchmarks run as the owner.
-- =============================================================================================

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warnd_app') THEN
        CREATE ROLE warnd_app NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO warnd_app;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON divisions, responders, households, special_persons, facilities TO warnd_app;
GRANT SELECT, INSERT, UPDATE
    ON warnings, rejected_messages, warning_villages, messages, deliveries, inbound_events,
       feed_health, callouts, field_tasks TO warnd_app;
GRANT SELECT, INSERT ON audit_log, callout_events, field_task_events TO warnd_app;
GRANT SELECT ON schema_migrations TO warnd_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON reply_counts TO warnd_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON speakers, speaker_alarms TO warnd_app;
GRANT SELECT, INSERT, UPDATE ON eew_reports TO warnd_app;
GRANT SELECT, INSERT, UPDATE ON blind_drills TO warnd_app;
GRANT SELECT, INSERT, UPDATE ON console_users TO warnd_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO warnd_app;
GRANT SELECT ON delivery_tallies, delivery_tally_changes TO warnd_app;
GRANT EXECUTE ON FUNCTION fold_delivery_tallies() TO warnd_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO warnd_app;
