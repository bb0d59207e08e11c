//! Checkpoints' statements, which both backends run on a run's connection.

/// Parameters: connection, sync. One row: the value.
pub const GET: &str = "SELECT value FROM checkpoints WHERE connection = $1 AND sync = $2";

/// Parameters: connection, sync, value, saved at (µs).
pub const SAVE: &str = "INSERT INTO checkpoints (connection, sync, value, saved_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (connection, sync) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at";
