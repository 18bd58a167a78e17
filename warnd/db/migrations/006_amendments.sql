-- 006: officers' cancels and corrections of orange and red warnings wait for a second officer.

-- The warning an officer's cancel or correction is for. A waiting one ends it only when
-- approved: until then the original stays in force, and nobody is told anything new.
ALTER TABLE warnings ADD COLUMN amends_id bigint REFERENCES warnings (id);
CREATE INDEX warnings_amends ON warnings (amends_id) WHERE amends_id IS NOT NULL;

-- A warning an approver refused: it never went out.
ALTER TABLE warnings DROP CONSTRAINT warnings_state_check;
ALTER TABLE warnings ADD CONSTRAINT warnings_state_check
    CHECK (state IN ('pending_approval', 'active', 'superseded', 'cancelled', 'expired', 'muted',
                     'rejected'));
