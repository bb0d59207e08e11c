-- The scheduler takes the due connections soonest first, `coalesce(next_run_at,
-- 0), id` (never run first), at most what its free workers can run. With this
-- index in that order a look reads only the connections it returns, even when
-- every connection is due at once (the first sync of thousands just added, or
-- a worker back from an outage): through `connections_by_due` it read and
-- sorted all the due ones each time, after every run (docs/store.md,
-- "Connections, history and deliveries").
CREATE INDEX connections_due_order ON connections (coalesce(next_run_at, 0), id);
DROP INDEX connections_by_due;
