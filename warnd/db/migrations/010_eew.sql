-- 010: the earthquake early-warning reports received from seismic feeds, one row per (event,
-- report number), whichever feed or process received it first: a second copy of a report (a
-- retry, or the same national event through a second feed) is a duplicate, not a second alert.
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
    CONSTRAINT eew_reports_event_id_report_no_key UNIQUE (event_id, report_no)
);
CREATE INDEX eew_reports_received ON eew_reports (received_at);
GRANT SELECT, INSERT, UPDATE ON eew_reports TO warnd_app;
GRANT USAGE, SELECT ON SEQUENCE eew_reports_id_seq TO warnd_app;
