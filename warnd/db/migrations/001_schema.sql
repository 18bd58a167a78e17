-- 001: the roster, warnings, the delivery outbox and the audit trail.
-- Codes are 12-digit National Bureau of Statistics division codes (county and town codes padded
-- with zeros); prefix length by level: city 4, county 6, town 9, village 12.

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

CREATE TABLE responders (
    id            bigserial PRIMARY KEY,
    ref           text NOT NULL UNIQUE,              -- the roster's own key, stable across imports
    name          text NOT NULL,
    phone         text NOT NULL CHECK (phone ~ '^\+[0-9]{6,15}$'),
    division_code text NOT NULL REFERENCES divisions (code),
    level         text NOT NULL CHECK (level IN ('city', 'county', 'town', 'village')),
    role          text NOT NULL DEFAULT '',
    specialities  text[] NOT NULL DEFAULT '{all}'
        CHECK (specialities <@ ARRAY['flood', 'forest_fire', 'geological', 'earthquake', 'all']),
    backup_id     bigint REFERENCES responders (id) DEFERRABLE INITIALLY DEFERRED,
    exercise      boolean NOT NULL DEFAULT false     -- takes part in exercises (演练)
);
CREATE INDEX responders_division ON responders (division_code);
CREATE INDEX responders_phone ON responders (phone);
CREATE INDEX responders_backup ON responders (backup_id);

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

-- Warnings: every accepted message, CAP or manual, in normalised form.
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
                                                   'cancelled', 'expired', 'muted')),
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
    UNIQUE (sender, identifier, sent)
);
CREATE INDEX warnings_plan ON warnings (plan_state) WHERE plan_state IN ('pending', 'planning');
CREATE INDEX warnings_source ON warnings (source, received_at);

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

-- The length of the code prefix shared by a division and everything under it.
CREATE FUNCTION code_prefix_length(level text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE level WHEN 'city' THEN 4 WHEN 'county' THEN 6 WHEN 'town' THEN 9 ELSE 12 END
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

-- The outbox: one row per recipient address and channel kind; the source of truth of what was sent.
-- No foreign keys on warning_id and message_id: planning writes millions of rows whose ids come
-- from the warning and messages it has just read or written, and PostgreSQL checks a foreign key
-- with a trigger per row (measured: 40 % of planning time). Warnings are never deleted.
CREATE TABLE deliveries (
    id             bigserial PRIMARY KEY,
    warning_id     bigint NOT NULL,
    message_id     bigint NOT NULL,
    audience       text NOT NULL CHECK (audience IN ('responder', 'facility', 'helper',
                                                     'household', 'broadcast')),
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
    CONSTRAINT deliveries_recipient_key
        UNIQUE (warning_id, audience, recipient_id, address, channel_kind)
);
CREATE INDEX deliveries_queue ON deliveries (channel_kind, priority, id) WHERE state = 'queued';
CREATE INDEX deliveries_lease ON deliveries (lease_until) WHERE state = 'sending';
CREATE INDEX deliveries_external ON deliveries (channel, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX deliveries_warning ON deliveries (warning_id, id);

-- Inbound events from channels that matched nothing yet (replies, unknown receipts), for the officer.
CREATE TABLE inbound_events (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    channel      text NOT NULL,
    kind         text NOT NULL,
    sender       text,
    payload      jsonb NOT NULL,
    matched      boolean NOT NULL DEFAULT false
);

-- Whether each feed with an expected heartbeat is silent; shared by every warnd process, so an
-- alarm is raised (and audited) once, by whichever process notices first.
CREATE TABLE feed_health (
    feed        text PRIMARY KEY,
    silent      boolean NOT NULL,
    changed_at  timestamptz NOT NULL
);

-- Append-only audit of what people and the system decided.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    subject text NOT NULL DEFAULT '',
    detail  jsonb NOT NULL DEFAULT '{}'
);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
