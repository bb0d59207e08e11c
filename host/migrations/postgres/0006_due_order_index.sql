-- As SQLite's 0009: the scheduler's look for due connections reads them in
-- the order it takes them, `coalesce(next_run_at, 0), id`, so that it reads
-- only what it returns even when every connection is due at once
-- (docs/store.md, "Connections, history and deliveries").
CREATE INDEX connections_due_order ON connections ((coalesce(next_run_at, 0)), id);
DROP INDEX connections_by_due;
