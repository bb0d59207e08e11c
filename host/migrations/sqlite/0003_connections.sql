-- Connections the host runs unattended, their credentials, and run history.
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    base_url TEXT NOT NULL,
    -- the configuration the component reads, as a JSON object of strings
    config TEXT NOT NULL,
    -- seconds between runs; NULL: the component's declared frequency
    every_secs INTEGER,
    paused INTEGER NOT NULL DEFAULT 0,
    -- idle | running | failing | needs_reauth
    status TEXT NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'failing', 'needs_reauth')),
    status_message TEXT,
    -- failed runs in a row, for the backoff
    failures INTEGER NOT NULL DEFAULT 0,
    -- when the next run is due (microseconds since the epoch); NULL: now
    next_run_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX connections_by_due ON connections (next_run_at);
-- Secrets: readable by the host alone (the database file is 0600).
CREATE TABLE credentials (
    connection TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('oauth', 'access_token')),
    token_url TEXT,
    client_id TEXT,
    client_secret TEXT,
    refresh_token TEXT,
    access_token TEXT,
    -- when the access token expires (microseconds since the epoch)
    access_expires_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    -- schedule | api | webhook | cli
    trigger TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    -- NULL while running
    outcome TEXT CHECK (outcome IN ('success', 'failure')),
    -- the summary line, as JSON
    summary TEXT,
    error TEXT
);
CREATE INDEX runs_by_connection ON runs (connection, started_at, id);
