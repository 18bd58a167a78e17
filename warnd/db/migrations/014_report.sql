-- 014: what the evaluation report needs that the outbox did not keep.

-- The channel kind a delivery left when it failed over to the next one (SMS -> voice): the report
-- counts fail-overs from where to where; without it a failed-over row looks like any other.
ALTER TABLE deliveries ADD COLUMN failed_over_from text;
