-- Retention (kopilka/directory/retention.py) and fenced outbox leases (issue 10).

-- Pruning walks each growing table by age; without these it would scan whole tables.
CREATE INDEX IF NOT EXISTS webhook_audit_received_idx ON webhook_audit (received_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_finished_idx ON webhook_deliveries (status, finished_at)
    WHERE status <> 'pending';
CREATE INDEX IF NOT EXISTS telegram_messages_finished_idx ON telegram_messages (created_at)
    WHERE status <> 'pending';
CREATE INDEX IF NOT EXISTS order_claims_claimed_idx ON order_claims (claimed_at);
CREATE INDEX IF NOT EXISTS identity_conflicts_seen_idx ON identity_conflicts (seen_at);

-- Fencing: a claimed outbox row carries the token of its claim. The lease itself is
-- next_attempt_at (pushed past the request timeout when claimed); whoever writes the outcome must
-- still hold the token, so a dispatcher whose lease expired and was taken over cannot overwrite
-- what the new owner does (its result is dropped, the new owner retries). NULL: not claimed.
ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS lease_token uuid;
ALTER TABLE telegram_messages ADD COLUMN IF NOT EXISTS lease_token uuid;
