-- Webhooks: out to the user's application after runs, in from the provider.
ALTER TABLE connections ADD COLUMN webhook_url TEXT;
-- when the provider last said something changed (microseconds since the epoch)
ALTER TABLE connections ADD COLUMN notified_at INTEGER;
ALTER TABLE credentials ADD COLUMN webhook_secret TEXT;
ALTER TABLE credentials ADD COLUMN verifier_token TEXT;
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    connection TEXT NOT NULL,
    run TEXT,
    url TEXT NOT NULL,
    -- the JSON body, signed at each attempt
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'given_up')),
    attempts INTEGER NOT NULL DEFAULT 0,
    -- when it may be tried (again); a claim pushes it into the future
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_connection ON webhook_deliveries (connection, id);
