-- 016: an officer who left, or whose password leaked, is disabled rather than deleted (the audit
-- log names them; their name must not be given to someone else): refused at sign-in, their
-- sessions ended. `warnd user disable NAME`, `enable NAME`.
ALTER TABLE console_users ADD COLUMN disabled_at timestamptz;
