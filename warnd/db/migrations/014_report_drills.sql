-- 014: what the evaluation report needs that the outbox did not keep.

-- The channel kind a delivery left when it failed over to the next one (SMS -> voice): the report
-- counts fail-overs from where to where; without it a failed-over row looks like any other.
ALTER TABLE deliveries ADD COLUMN failed_over_from text;

-- Blind drills (双盲演练): an officer gives a window and the scenarios to choose from; warnd picks
-- the moment and the scenario at random and keeps both secret (only the scheduling officer and
-- the audit log see them) until the drill fires as an Exercise warning. A live orange or red
-- warning in the drill's county postpones it.
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
GRANT SELECT, INSERT, UPDATE ON blind_drills TO warnd_app;
GRANT USAGE, SELECT ON SEQUENCE blind_drills_id_seq TO warnd_app;
