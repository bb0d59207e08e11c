-- As SQLite's 0008: the scheduler's look for due connections reads the
-- notified ones through this index, not by reading every connection
-- (docs/store.md, "Connections, history and deliveries").
CREATE INDEX connections_notified ON connections (notified_at) WHERE notified_at IS NOT NULL;
