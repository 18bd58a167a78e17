-- 003: field tasks (敲门入户, 鸣锣吹哨) and notices to the people an ended warning already reached.

-- The Update or Cancel that ended a warning: an Update's plan and a Cancel's notices start from
-- the people the warnings it ended had reached.
ALTER TABLE warnings ADD COLUMN ended_by bigint REFERENCES warnings (id);
CREATE INDEX warnings_ended_by ON warnings (ended_by) WHERE ended_by IS NOT NULL;

-- A notice is one message about an earlier warning to someone it already reached: the correction
-- of an Update (inside its area), "no longer applies to you" (outside it), or the cancellation.
-- The planner of an Update skips whoever got a notice, so nobody gets the whole warning twice.
ALTER TABLE deliveries ADD COLUMN notice text
    CHECK (notice IN ('correction', 'withdrawn', 'cancelled'));
CREATE INDEX deliveries_notice ON deliveries (warning_id, address) WHERE notice IS NOT NULL;

-- How many SMS segments an accepted text took, as the channel counted them (what operators bill,
-- and what tells a duty officer a text was cut into many parts).
ALTER TABLE deliveries ADD COLUMN parts smallint;

-- Field-task messages (the task itself, its reminders and escalations) point at their task.
ALTER TABLE deliveries ADD COLUMN task_id bigint;
CREATE INDEX deliveries_task ON deliveries (task_id) WHERE task_id IS NOT NULL;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_audience_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_audience_check
    CHECK (audience IN ('responder', 'facility', 'helper', 'household', 'broadcast', 'escalation',
                        'field_task'));

-- A field task: a person on the ground reaches people a text may not (DOMAIN §5). Door-knocking:
-- a helper visits the special-group persons assigned to them in one village (``targets`` of
-- them). Gongs: the village responder of a blind-spot or remote village sounds the alarm
-- (``targets`` = 1). Progress comes back by SMS (已通知 5 / 完成); an overdue task escalates
-- like a call-out, with its own frozen chain, cursor and durable timer.
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

-- What happened to each task: opened, progress, done, step_fired, step_skipped, closed.
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

-- The audit export of one warning reads its entries by subject.
CREATE INDEX audit_log_subject ON audit_log (subject, id);
