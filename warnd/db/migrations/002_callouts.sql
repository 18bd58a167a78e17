-- 002: call-and-respond (叫应): call-outs that must be answered, their events, durable timers.

-- A short code per warning (A7, B12…) that responders may name in a reply when several warnings
-- are open at once; unique among warnings that are still open.
ALTER TABLE warnings ADD COLUMN short_code text CHECK (short_code ~ '^[A-Z][0-9]{1,3}$');
CREATE UNIQUE INDEX warnings_open_short_code ON warnings (short_code)
    WHERE short_code IS NOT NULL AND state IN ('pending_approval', 'active');

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

-- Deliveries made for a call-out (the first call and every escalation step) point back at it,
-- so that an answer cancels the call-out's queued attempts on every other channel.
ALTER TABLE deliveries ADD COLUMN callout_id bigint;
ALTER TABLE deliveries ADD COLUMN step integer;  -- the escalation step that made it, if any
CREATE INDEX deliveries_callout ON deliveries (callout_id) WHERE callout_id IS NOT NULL;
CREATE INDEX deliveries_escalation_address ON deliveries (address) WHERE audience = 'escalation';
ALTER TABLE deliveries DROP CONSTRAINT deliveries_audience_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_audience_check
    CHECK (audience IN ('responder', 'facility', 'helper', 'household', 'broadcast', 'escalation'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_recipient_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_recipient_key
    UNIQUE NULLS NOT DISTINCT (warning_id, audience, recipient_id, address, channel_kind, step);

-- What happened to each call-out, in order: opened, notified, acknowledged, step_fired,
-- step_skipped, closed. Append-only, like the audit log. No foreign key: events are written in
-- the statements that create or change their call-out, and a per-row check planned while
-- ``callouts`` was empty stays a sequential scan for the connection's life (measured: 6.7 s to
-- open 10,000 call-outs instead of 0.7 s).
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
