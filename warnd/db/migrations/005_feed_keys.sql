-- 005: a warning is keyed per source. One feed must not be able to post a message with another
-- feed's sender and identifier first and so have the real one answered "duplicate", never sent.
ALTER TABLE warnings DROP CONSTRAINT warnings_sender_identifier_sent_key;
ALTER TABLE warnings ADD CONSTRAINT warnings_source_sender_identifier_sent_key
    UNIQUE (source, sender, identifier, sent);
-- References (an Update's or Cancel's) name the sender, identifier and sent only.
CREATE INDEX warnings_key ON warnings (sender, identifier, sent);
