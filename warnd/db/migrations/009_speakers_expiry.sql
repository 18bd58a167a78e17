-- 009: when a delivery is too late to send, and the loudspeakers' state as their broadcast channel last reported it (online, heartbeat,
-- readings, last play), for the preview, the progress roll-up, the speaker list and the alarm
-- on a county whose speakers are going silent. A speaker's id is its village's code.
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
GRANT SELECT, INSERT, UPDATE, DELETE ON speakers, speaker_alarms TO warnd_app;

-- Broadcast commands that failed for good: their villages get gong tasks (the planner looks
-- for them every few seconds, so the index must stay small).
CREATE INDEX deliveries_broadcast_failed ON deliveries (warning_id)
    WHERE audience = 'broadcast' AND state = 'failed';

-- A message that can no longer arrive in time (an earthquake alert after the shaking) is not
-- sent late: past this time it is cancelled as expired, by dispatch or by the channel.
ALTER TABLE deliveries ADD COLUMN expires_at timestamptz;

-- Pending call-outs, swept for those whose message went out while they were locked.
CREATE INDEX callouts_pending ON callouts (id) WHERE state = 'pending';
