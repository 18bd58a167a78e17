-- 008: replies counted per number and minute, in the database: the cap on an auto-replying
-- phone or a looping gateway holds across every warnd process, not each one's memory.
CREATE TABLE reply_counts (
    phone   text NOT NULL,
    minute  timestamptz NOT NULL,
    n       integer NOT NULL,
    PRIMARY KEY (phone, minute)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON reply_counts TO warnd_app;
