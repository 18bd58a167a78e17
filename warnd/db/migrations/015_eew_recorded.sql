-- 015: when an early-warning report's durable record (its warning, deliveries and call-outs, or
-- the finding that it raised nothing) was written. The fast path hands alerts to the channels
-- before the record commits; a report received some time ago without one was interrupted by a
-- crash, and housekeeping records it then (FastPath.recover). Reports already here are done.
ALTER TABLE eew_reports ADD COLUMN recorded_at timestamptz;
UPDATE eew_reports SET recorded_at = received_at;
CREATE INDEX eew_reports_unrecorded ON eew_reports (received_at) WHERE recorded_at IS NULL;
