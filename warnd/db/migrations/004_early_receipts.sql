-- 004: receipts that arrive before their send is recorded are kept and matched later.

-- A fast network can report a message delivered before the worker that sent it has written the
-- gateway's id on the delivery. Such a receipt is kept as an unmatched inbound event at once and
-- matched by ``match_early_receipts`` once the id is there, so no receipt is lost to that race
-- and nobody waits on a timer for it.
CREATE INDEX inbound_events_unmatched_receipts ON inbound_events (received_at)
    WHERE NOT matched AND kind = 'receipt';
