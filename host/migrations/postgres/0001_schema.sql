-- The host's PostgreSQL schema: the same tables and meaning as the SQLite
-- files 0001-0005 (see docs/store.md), in PostgreSQL's types.
CREATE TABLE scopes (
    id BIGSERIAL PRIMARY KEY,
    connection TEXT NOT NULL,
    model TEXT NOT NULL,
    -- last timestamp handed out, so timestamps strictly increase per scope;
    -- writers take this row's lock first, so commit order is timestamp order
    clock_us BIGINT NOT NULL DEFAULT 0,
    open_listing BIGINT,
    last_listing BIGINT NOT NULL DEFAULT 0,
    UNIQUE (connection, model)
);
CREATE TABLE records (
    scope BIGINT NOT NULL REFERENCES scopes(id),
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    hash BYTEA NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_modified_at BIGINT NOT NULL,
    last_action TEXT NOT NULL CHECK (last_action IN ('ADDED', 'UPDATED', 'DELETED')),
    deleted_at BIGINT,
    listing BIGINT,
    PRIMARY KEY (scope, id)
);
CREATE INDEX records_by_modification ON records (scope, last_modified_at, id);
CREATE TABLE checkpoints (
    connection TEXT NOT NULL,
    sync TEXT NOT NULL,
    value TEXT NOT NULL,
    saved_at BIGINT NOT NULL,
    PRIMARY KEY (connection, sync)
);
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    base_url TEXT NOT NULL,
    config JSONB NOT NULL,
    every_secs BIGINT,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'failing', 'needs_reauth')),
    status_message TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    next_run_at BIGINT,
    webhook_url TEXT,
    notified_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX connections_by_due ON connections (next_run_at);
CREATE TABLE credentials (
    connection TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('oauth', 'access_token')),
    token_url TEXT,
    client_id TEXT,
    client_secret TEXT,
    refresh_token TEXT,
    access_token TEXT,
    access_expires_at BIGINT,
    webhook_secret TEXT,
    verifier_token TEXT,
    updated_at BIGINT NOT NULL
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    outcome TEXT CHECK (outcome IN ('success', 'failure')),
    summary TEXT,
    error TEXT,
    -- the process that ran it (host:pid)
    worker TEXT
);
CREATE INDEX runs_by_connection ON runs (connection, started_at, id);
CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    connection TEXT NOT NULL,
    run TEXT,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'given_up')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_connection ON webhook_deliveries (connection, id);
