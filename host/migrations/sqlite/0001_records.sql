-- The records store: one row per record, change-tracked per (connection, model).
-- Version 1 is the layout of sync-host 0.1 (which created it without a
-- schema version), so its databases upgrade in place.
CREATE TABLE IF NOT EXISTS scopes (
    id INTEGER PRIMARY KEY,
    connection TEXT NOT NULL,
    model TEXT NOT NULL,
    -- last timestamp handed out, so timestamps strictly increase per scope
    clock_us INTEGER NOT NULL DEFAULT 0,
    UNIQUE (connection, model)
);
CREATE TABLE IF NOT EXISTS records (
    scope INTEGER NOT NULL REFERENCES scopes(id),
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    -- SHA-256 of the record's canonical JSON (keys sorted, no whitespace)
    hash BLOB NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_modified_at INTEGER NOT NULL,
    last_action TEXT NOT NULL CHECK (last_action IN ('ADDED', 'UPDATED', 'DELETED')),
    deleted_at INTEGER,
    PRIMARY KEY (scope, id)
);
CREATE INDEX IF NOT EXISTS records_by_modification ON records (scope, last_modified_at, id);
CREATE TABLE IF NOT EXISTS checkpoints (
    connection TEXT NOT NULL,
    sync TEXT NOT NULL,
    value TEXT NOT NULL,
    saved_at INTEGER NOT NULL,
    PRIMARY KEY (connection, sync)
);
