-- 007: the role warnd runs as. It writes warnings and the outbox but owns nothing, so it cannot
-- change the schema, disable the append-only triggers, truncate a table or rewrite history:
-- call-out and field-task events and the audit log can only grow. Migrations, roster
-- replacement and benchmarks run as the owner; the daemon's connections run as warnd_app
-- (directly, through a login role that is a member, or by SET ROLE from the owner's login).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warnd_app') THEN
        CREATE ROLE warnd_app NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO warnd_app;
-- The roster: imports replace it.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON divisions, responders, households, special_persons, facilities TO warnd_app;
-- Warnings and the outbox: written and updated, never deleted.
GRANT SELECT, INSERT, UPDATE
    ON warnings, rejected_messages, warning_villages, messages, deliveries, inbound_events,
       feed_health, callouts, field_tasks TO warnd_app;
-- History: appended, never changed.
GRANT SELECT, INSERT ON audit_log, callout_events, field_task_events TO warnd_app;
GRANT SELECT ON schema_migrations TO warnd_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO warnd_app;
