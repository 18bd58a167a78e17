-- 011: the duty officers who sign in to the console, and their server-side sessions. Users
-- live in the database, not in the config file: `warnd user add` must take effect without a
-- restart or a config reload, lockout counters change at every failed sign-in, and every warnd
-- process behind one database must agree on both.
CREATE TABLE console_users (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    password_hash   text NOT NULL,                 -- argon2id, PHC string
    roles           text[] NOT NULL CHECK (cardinality(roles) > 0
                        AND roles <@ ARRAY['officer', 'approver', 'admin']),
    created_at      timestamptz NOT NULL,
    failed_logins   integer NOT NULL DEFAULT 0,    -- consecutive failures since the last success
    locked_until    timestamptz                    -- too many failures: refused until then
);

-- A signed-in officer's session. Only the SHA-256 of the cookie's token is kept, so a copy of
-- the table signs nobody in. A session idle past the timeout is refused and deleted.
CREATE TABLE console_sessions (
    token_sha256    text PRIMARY KEY,
    user_name       text NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_name);

GRANT SELECT, INSERT, UPDATE ON console_users TO warnd_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO warnd_app;
