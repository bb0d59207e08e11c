//! Connections, credentials and run history in SQLite.

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use std::collections::BTreeMap;
use std::time::Duration;

use super::{now_us, Shared};
use crate::store::{
    Connection, ConnectionSecrets, ConnectionStatus, ConnectionStore, ConnectionUpdate, NotificationRoute, Outcome,
    Removal, RunEnd, RunHistory, RunRecord, StoreError, StoredCredentials, Tokens, Trigger,
};

pub struct SqliteConnections {
    connection: Shared,
}

impl SqliteConnections {
    pub(super) fn new(connection: Shared) -> Self {
        SqliteConnections { connection }
    }
}

const COLUMNS: &str = "id, base_url, config, every_secs, paused, status, status_message, failures, next_run_at, \
     created_at, updated_at, webhook_url, notified_at, provider";

fn connection_from(row: &Row<'_>) -> rusqlite::Result<Result<Connection, StoreError>> {
    let id: String = row.get(0)?;
    let config: String = row.get(2)?;
    let status: String = row.get(5)?;
    let corrupt = |what: String| Ok(Err(StoreError::Corrupt(format!("connection `{id}`: {what}"))));
    let Ok(config) = serde_json::from_str::<BTreeMap<String, String>>(&config) else {
        return corrupt(format!("config is not a JSON object of strings: {config}"));
    };
    let Some(status) = ConnectionStatus::parse(&status) else {
        return corrupt(format!("unknown status {status}"));
    };
    Ok(Ok(Connection {
        base_url: row.get(1)?,
        config,
        every: row.get::<_, Option<i64>>(3)?.map(|s| Duration::from_secs(s.max(1) as u64)),
        paused: row.get(4)?,
        status,
        status_message: row.get(6)?,
        failures: row.get(7)?,
        next_run_at_us: row.get(8)?,
        created_us: row.get(9)?,
        updated_us: row.get(10)?,
        webhook_url: row.get(11)?,
        notified_at_us: row.get(12)?,
        provider: row.get(13)?,
        id,
    }))
}

fn credentials_from(row: &Row<'_>) -> rusqlite::Result<Option<StoredCredentials>> {
    let kind: String = row.get(0)?;
    Ok(match kind.as_str() {
        "oauth" => Some(StoredCredentials::OAuth {
            token_url: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
            client_id: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
            client_secret: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
            refresh_token: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
            access_token: row.get(5)?,
            access_expires_us: row.get(6)?,
            access_issued_us: row.get(7)?,
        }),
        "access_token" => Some(StoredCredentials::AccessToken(row.get::<_, Option<String>>(5)?.unwrap_or_default())),
        _ => None,
    })
}

impl ConnectionStore for SqliteConnections {
    fn insert(
        &mut self,
        connection: &Connection,
        credentials: &StoredCredentials,
        secrets: &ConnectionSecrets,
    ) -> Result<(), StoreError> {
        let mut db = self.connection.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM connections WHERE id = ?1)", [&connection.id], |r| r.get(0))?;
        if exists {
            return Err(StoreError::ConnectionExists(connection.id.clone()));
        }
        let now = now_us();
        tx.execute(
            "INSERT INTO connections (id, base_url, config, every_secs, paused, status, status_message, failures, next_run_at,
                                      created_at, updated_at, webhook_url, provider)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12)",
            params![
                connection.id,
                connection.base_url,
                serde_json::to_string(&connection.config).expect("a map of strings serializes"),
                connection.every.map(|e| e.as_secs() as i64),
                connection.paused,
                connection.status.as_str(),
                connection.status_message,
                connection.failures,
                connection.next_run_at_us,
                now,
                connection.webhook_url,
                connection.provider,
            ],
        )?;
        match credentials {
            StoredCredentials::OAuth {
                token_url,
                client_id,
                client_secret,
                refresh_token,
                access_token,
                access_expires_us,
                ..
            } => {
                tx.execute(
                    "INSERT INTO credentials (connection, kind, token_url, client_id, client_secret, refresh_token, access_token, access_expires_at, updated_at)
                     VALUES (?1, 'oauth', ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![connection.id, token_url, client_id, client_secret, refresh_token, access_token, access_expires_us, now],
                )?;
            }
            StoredCredentials::AccessToken(token) => {
                tx.execute(
                    "INSERT INTO credentials (connection, kind, access_token, updated_at) VALUES (?1, 'access_token', ?2, ?3)",
                    params![connection.id, token, now],
                )?;
            }
        }
        tx.execute(
            "UPDATE credentials SET webhook_secret = ?2, verifier_token = ?3 WHERE connection = ?1",
            params![connection.id, secrets.webhook_secret, secrets.verifier_token],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn get(&mut self, id: &str) -> Result<Option<Connection>, StoreError> {
        let db = self.connection.lock();
        let found = db
            .query_row(&format!("SELECT {COLUMNS} FROM connections WHERE id = ?1"), [id], connection_from)
            .optional()?;
        found.transpose()
    }

    fn list(&mut self) -> Result<Vec<Connection>, StoreError> {
        let db = self.connection.lock();
        let mut statement = db.prepare(&format!("SELECT {COLUMNS} FROM connections ORDER BY id"))?;
        let rows = statement.query_map([], connection_from)?;
        let mut connections = Vec::new();
        for row in rows {
            connections.push(row??);
        }
        Ok(connections)
    }

    fn update(&mut self, id: &str, update: &ConnectionUpdate) -> Result<Option<Connection>, StoreError> {
        {
            let db = self.connection.lock();
            let changed = update_connection(&db, id, update)?;
            if changed == 0 {
                return Ok(None);
            }
        }
        self.get(id)
    }

    fn remove(&mut self, id: &str, purge: bool) -> Result<Removal, StoreError> {
        let mut db = self.connection.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM credentials WHERE connection = ?1", [id])?;
        let mut removal = Removal {
            connection: tx.execute("DELETE FROM connections WHERE id = ?1", [id])? > 0,
            ..Default::default()
        };
        // Its secret is gone with it: what it had not yet delivered cannot be signed.
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'given_up', last_error = 'the connection was removed'
             WHERE connection = ?1 AND status = 'pending'",
            [id],
        )?;
        if purge {
            removal.records = tx
                .execute("DELETE FROM records WHERE scope IN (SELECT id FROM scopes WHERE connection = ?1)", [id])?
                as u64;
            let mut rows = removal.records;
            for table in ["scopes", "checkpoints", "runs", "webhook_deliveries"] {
                rows += tx.execute(&format!("DELETE FROM {table} WHERE connection = ?1"), [id])? as u64;
            }
            removal.purged = rows > 0;
        }
        tx.commit()?;
        Ok(removal)
    }

    fn due(&mut self, now_us: i64, quiet: Duration) -> Result<Vec<Connection>, StoreError> {
        let db = self.connection.lock();
        let mut statement = db.prepare(&format!(
            "SELECT {COLUMNS} FROM connections
             WHERE coalesce(next_run_at, 0) <= ?1 OR notified_at IS NOT NULL
             ORDER BY coalesce(next_run_at, 0), id"
        ))?;
        let rows = statement.query_map([now_us], connection_from)?;
        let mut connections = Vec::new();
        for row in rows {
            let connection = row??;
            if crate::schedule::due(&connection.timing(), now_us, quiet).is_some() {
                connections.push(connection);
            }
        }
        Ok(connections)
    }

    fn credentials(&mut self, id: &str) -> Result<Option<StoredCredentials>, StoreError> {
        let db = self.connection.lock();
        let found = db
            .query_row(
                "SELECT kind, token_url, client_id, client_secret, refresh_token, access_token, access_expires_at, updated_at
                 FROM credentials WHERE connection = ?1",
                [id],
                credentials_from,
            )
            .optional()?;
        Ok(found.flatten())
    }

    fn secrets(&mut self, id: &str) -> Result<Option<ConnectionSecrets>, StoreError> {
        let db = self.connection.lock();
        Ok(db
            .query_row("SELECT webhook_secret, verifier_token FROM credentials WHERE connection = ?1", [id], |row| {
                Ok(ConnectionSecrets { webhook_secret: row.get(0)?, verifier_token: row.get(1)? })
            })
            .optional()?)
    }

    fn verifier_tokens(&mut self) -> Result<Vec<String>, StoreError> {
        let db = self.connection.lock();
        let mut statement =
            db.prepare_cached("SELECT DISTINCT verifier_token FROM credentials WHERE verifier_token IS NOT NULL")?;
        let tokens = statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
        Ok(tokens)
    }

    fn notify(
        &mut self,
        route: &NotificationRoute<'_>,
        now_us: i64,
        verifier: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let db = self.connection.lock();
        let mut statement = db.prepare_cached(
            "UPDATE connections SET notified_at = ?2
             WHERE provider = ?4 AND json_extract(config, ?5) = ?1
               AND (SELECT verifier_token FROM credentials WHERE connection = connections.id) IS ?3
             RETURNING id",
        )?;
        // A JSON path with the key quoted, whatever characters it has.
        let path = format!("$.{}", serde_json::Value::String(route.account_key.to_owned()));
        let ids = statement
            .query_map(params![route.account, now_us, verifier, route.provider, path], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    fn clear_notification(&mut self, id: &str, start_us: i64) -> Result<(), StoreError> {
        self.connection.lock().execute(
            "UPDATE connections SET notified_at = NULL WHERE id = ?1 AND notified_at <= ?2",
            params![id, start_us],
        )?;
        Ok(())
    }

    fn save_tokens(&mut self, id: &str, tokens: &Tokens) -> Result<(), StoreError> {
        let db = self.connection.lock();
        db.execute(
            "UPDATE credentials SET access_token = ?2, access_expires_at = ?3,
                    refresh_token = coalesce(?4, refresh_token), updated_at = ?5
             WHERE connection = ?1",
            params![id, tokens.access_token, tokens.access_expires_us, tokens.refresh_token, now_us()],
        )?;
        Ok(())
    }

    fn reset(&mut self, id: &str, empty: bool) -> Result<(), StoreError> {
        let mut db = self.connection.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM checkpoints WHERE connection = ?1", [id])?;
        if empty {
            tx.execute("DELETE FROM records WHERE scope IN (SELECT id FROM scopes WHERE connection = ?1)", [id])?;
            tx.execute("DELETE FROM scopes WHERE connection = ?1", [id])?;
        } else {
            // A listing begun before the reset is not the next run's.
            tx.execute("UPDATE scopes SET open_listing = NULL WHERE connection = ?1", [id])?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// `update` of the connection `id`, on `db` (a connection or a transaction);
/// returns the rows changed.
fn update_connection(db: &rusqlite::Connection, id: &str, update: &ConnectionUpdate) -> rusqlite::Result<usize> {
    db.execute(
        "UPDATE connections SET
            paused = CASE WHEN ?2 THEN ?3 ELSE paused END,
            every_secs = CASE WHEN ?4 THEN ?5 ELSE every_secs END,
            status = coalesce(?6, status),
            status_message = CASE WHEN ?7 THEN ?8 ELSE status_message END,
            failures = coalesce(?9, failures),
            next_run_at = CASE WHEN ?10 THEN ?11 ELSE next_run_at END,
            updated_at = ?12
         WHERE id = ?1",
        params![
            id,
            update.paused.is_some(),
            update.paused.unwrap_or(false),
            update.every.is_some(),
            update.every.flatten().map(|e| e.as_secs() as i64),
            update.status.map(|s| s.as_str()),
            update.status_message.is_some(),
            update.status_message.clone().flatten(),
            update.failures,
            update.next_run_at_us.is_some(),
            update.next_run_at_us.flatten(),
            now_us(),
        ],
    )
}

pub struct SqliteRuns {
    connection: Shared,
}

impl SqliteRuns {
    pub(super) fn new(connection: Shared) -> Self {
        SqliteRuns { connection }
    }
}

fn run_from(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let trigger: String = row.get(2)?;
    let outcome: Option<String> = row.get(5)?;
    Ok(RunRecord {
        id: row.get(0)?,
        connection: row.get(1)?,
        trigger: Trigger::parse(&trigger).unwrap_or(Trigger::Cli),
        started_us: row.get(3)?,
        ended_us: row.get(4)?,
        outcome: outcome.map(|o| if o == "success" { Outcome::Success } else { Outcome::Failure }),
        summary: row.get(6)?,
        error: row.get(7)?,
        worker: row.get(8)?,
    })
}

impl RunHistory for SqliteRuns {
    fn begin(&mut self, run: &RunRecord) -> Result<Option<i64>, StoreError> {
        let mut db = self.connection.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let abandoned_since: Option<i64> = tx.query_row(
            "SELECT min(started_at) FROM runs WHERE connection = ?1 AND outcome IS NULL",
            [&run.connection],
            |row| row.get(0),
        )?;
        tx.execute(
            "UPDATE runs SET ended_at = ?2, outcome = 'failure', error = ?3 WHERE connection = ?1 AND outcome IS NULL",
            params![run.connection, run.started_us, crate::store::history::ABANDONED],
        )?;
        tx.execute(
            "INSERT INTO runs (id, connection, trigger, started_at, worker) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run.id, run.connection, run.trigger.as_str(), run.started_us, run.worker],
        )?;
        let running = ConnectionUpdate { status: Some(ConnectionStatus::Running), ..Default::default() };
        update_connection(&tx, &run.connection, &running)?;
        tx.execute(
            "UPDATE connections SET notified_at = NULL WHERE id = ?1 AND notified_at <= ?2",
            params![run.connection, run.started_us],
        )?;
        tx.commit()?;
        Ok(abandoned_since)
    }

    fn end(&mut self, end: &RunEnd<'_>, update: &ConnectionUpdate) -> Result<(), StoreError> {
        let mut db = self.connection.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE runs SET ended_at = ?2, outcome = ?3, summary = ?4, error = ?5 WHERE id = ?1",
            params![end.id, end.ended_us, end.outcome.as_str(), end.summary, end.error],
        )?;
        update_connection(&tx, end.connection, update)?;
        tx.commit()?;
        Ok(())
    }

    fn list(
        &mut self,
        connection: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<(Vec<RunRecord>, bool), StoreError> {
        let db = self.connection.lock();
        let (before_us, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let mut statement = db.prepare_cached(
            "SELECT id, connection, trigger, started_at, ended_at, outcome, summary, error, worker FROM runs
             WHERE connection = ?1 AND (started_at < ?2 OR (started_at = ?2 AND id < ?3))
             ORDER BY started_at DESC, id DESC LIMIT ?4",
        )?;
        let mut runs = statement
            .query_map(params![connection, before_us, before_id, i64::from(limit) + 1], run_from)?
            .collect::<Result<Vec<_>, _>>()?;
        let more = runs.len() > limit as usize;
        runs.truncate(limit as usize);
        Ok((runs, more))
    }
}
