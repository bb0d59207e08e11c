-- The scheduler asks for what is due after every run: by `next_run_at`
-- (connections_by_due) or by a provider's notification. This index makes the
-- second half an index read too, so that a poll reads the due connections
-- only, not every connection (docs/connections.md, "Scheduling").
CREATE INDEX connections_notified ON connections (notified_at) WHERE notified_at IS NOT NULL;
