//! Connections, credentials, run history and webhook deliveries in PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::Row;

use super::{wait, Shared};
use crate::store::{
    Connection, ConnectionSecrets, ConnectionStatus, ConnectionStore, ConnectionUpdate, Delivery, DeliveryStatus,
    NotificationRoute, Outcome, Removal, RunEnd, RunHistory, RunRecord, StoreError, StoredCredentials, Tokens, Trigger,
    WebhookStore,
};
use crate::time::now_us;

pub struct PgConnections {
    connection: Shared,
}

impl PgConnections {
    pub(super) fn new(connection: Shared) -> Self {
        PgConnections { connection }
    }
}

const COLUMNS: &str = "id, base_url, config::text, every_secs, paused, status, status_message, failures, next_run_at, \
     created_at, updated_at, webhook_url, notified_at, provider";

fn connection_from(row: &Row) -> Result<Connection, StoreError> {
    let id: String = row.get(0);
    let config: String = row.get(2);
    let status: String = row.get(5);
    let config = serde_json::from_str::<BTreeMap<String, String>>(&config)
        .map_err(|_| StoreError::Corrupt(format!("connection `{id}`: config is not a JSON object of strings")))?;
    let status = ConnectionStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("connection `{id}`: unknown status {status}")))?;
    Ok(Connection {
        base_url: row.get(1),
        config,
        every: row.get::<_, Option<i64>>(3).map(|s| Duration::from_secs(s.max(1) as u64)),
        paused: row.get(4),
        status,
        status_message: row.get(6),
        failures: row.get::<_, i32>(7) as u32,
        next_run_at_us: row.get(8),
        created_us: row.get(9),
        updated_us: row.get(10),
        webhook_url: row.get(11),
        notified_at_us: row.get(12),
        provider: row.get(13),
        id,
    })
}

impl ConnectionStore for PgConnections {
    fn insert(
        &mut self,
        connection: &Connection,
        credentials: &StoredCredentials,
        secrets: &ConnectionSecrets,
    ) -> Result<(), StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            let now = now_us();
            let config = serde_json::to_string(&connection.config).expect("a map of strings serializes");
            let inserted = tx
                .execute(
                    "INSERT INTO connections (id, base_url, config, every_secs, paused, status, status_message, failures,
                                              next_run_at, created_at, updated_at, webhook_url, provider)
                     VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
                    &[
                        &connection.id,
                        &connection.base_url,
                        &config,
                        &connection.every.map(|e| e.as_secs() as i64),
                        &connection.paused,
                        &connection.status.as_str(),
                        &connection.status_message,
                        &(connection.failures as i32),
                        &connection.next_run_at_us,
                        &now,
                        &connection.webhook_url,
                        &connection.provider,
                    ],
                )
                .await?;
            if inserted == 0 {
                return Err(StoreError::ConnectionExists(connection.id.clone()));
            }
            let (kind, token_url, client_id, client_secret, refresh_token, access_token, expires) = match credentials {
                StoredCredentials::OAuth {
                    token_url,
                    client_id,
                    client_secret,
                    refresh_token,
                    access_token,
                    access_expires_us,
                    ..
                } => (
                    "oauth",
                    Some(token_url.as_str()),
                    Some(client_id.as_str()),
                    Some(client_secret.as_str()),
                    Some(refresh_token.as_str()),
                    access_token.as_deref(),
                    *access_expires_us,
                ),
                StoredCredentials::AccessToken(token) => {
                    ("access_token", None, None, None, None, Some(token.as_str()), None)
                }
            };
            tx.execute(
                "INSERT INTO credentials (connection, kind, token_url, client_id, client_secret, refresh_token, access_token,
                                          access_expires_at, webhook_secret, verifier_token, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &connection.id,
                    &kind,
                    &token_url,
                    &client_id,
                    &client_secret,
                    &refresh_token,
                    &access_token,
                    &expires,
                    &secrets.webhook_secret,
                    &secrets.verifier_token,
                    &now,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get(&mut self, id: &str) -> Result<Option<Connection>, StoreError> {
        let client = self.connection.lock();
        let row = wait(client.query_opt(&format!("SELECT {COLUMNS} FROM connections WHERE id = $1"), &[&id]))?;
        row.as_ref().map(connection_from).transpose()
    }

    fn list(&mut self) -> Result<Vec<Connection>, StoreError> {
        let client = self.connection.lock();
        let rows = wait(client.query(&format!("SELECT {COLUMNS} FROM connections ORDER BY id"), &[]))?;
        rows.iter().map(connection_from).collect()
    }

    fn update(&mut self, id: &str, update: &ConnectionUpdate) -> Result<Option<Connection>, StoreError> {
        let client = self.connection.lock();
        let row = wait(update_connection(&*client, id, update))?;
        row.as_ref().map(connection_from).transpose()
    }

    fn remove(&mut self, id: &str, purge: bool) -> Result<Removal, StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            tx.execute("DELETE FROM credentials WHERE connection = $1", &[&id]).await?;
            let connection = tx.execute("DELETE FROM connections WHERE id = $1", &[&id]).await? > 0;
            let mut removal = Removal { connection, ..Default::default() };
            // Its secret is gone with it: what it had not yet delivered cannot be signed.
            tx.execute(
                "UPDATE webhook_deliveries SET status = 'given_up', last_error = 'the connection was removed'
                 WHERE connection = $1 AND status = 'pending'",
                &[&id],
            )
            .await?;
            if purge {
                removal.records = tx
                    .execute("DELETE FROM records WHERE scope IN (SELECT id FROM scopes WHERE connection = $1)", &[&id])
                    .await?;
                let mut rows = removal.records;
                for table in ["scopes", "checkpoints", "runs", "webhook_deliveries"] {
                    rows += tx.execute(&format!("DELETE FROM {table} WHERE connection = $1"), &[&id]).await?;
                }
                removal.purged = rows > 0;
            }
            tx.commit().await?;
            Ok(removal)
        })
    }

    fn due(&mut self, now_us: i64, quiet: Duration) -> Result<Vec<Connection>, StoreError> {
        let client = self.connection.lock();
        let rows = wait(client.query(
            &format!(
                "SELECT {COLUMNS} FROM connections
                 WHERE coalesce(next_run_at, 0) <= $1 OR notified_at IS NOT NULL
                 ORDER BY coalesce(next_run_at, 0), id"
            ),
            &[&now_us],
        ))?;
        let connections: Vec<Connection> = rows.iter().map(connection_from).collect::<Result<_, _>>()?;
        Ok(connections.into_iter().filter(|c| crate::schedule::due(&c.timing(), now_us, quiet).is_some()).collect())
    }

    fn credentials(&mut self, id: &str) -> Result<Option<StoredCredentials>, StoreError> {
        let client = self.connection.lock();
        let row = wait(client.query_opt(
            "SELECT kind, token_url, client_id, client_secret, refresh_token, access_token, access_expires_at, updated_at
             FROM credentials WHERE connection = $1",
            &[&id],
        ))?;
        Ok(row.and_then(|row| match row.get::<_, String>(0).as_str() {
            "oauth" => Some(StoredCredentials::OAuth {
                token_url: row.get::<_, Option<String>>(1).unwrap_or_default(),
                client_id: row.get::<_, Option<String>>(2).unwrap_or_default(),
                client_secret: row.get::<_, Option<String>>(3).unwrap_or_default(),
                refresh_token: row.get::<_, Option<String>>(4).unwrap_or_default(),
                access_token: row.get(5),
                access_expires_us: row.get(6),
                access_issued_us: row.get(7),
            }),
            "access_token" => Some(StoredCredentials::AccessToken(row.get::<_, Option<String>>(5).unwrap_or_default())),
            _ => None,
        }))
    }

    fn secrets(&mut self, id: &str) -> Result<Option<ConnectionSecrets>, StoreError> {
        let client = self.connection.lock();
        let row = wait(
            client.query_opt("SELECT webhook_secret, verifier_token FROM credentials WHERE connection = $1", &[&id]),
        )?;
        Ok(row.map(|r| ConnectionSecrets { webhook_secret: r.get(0), verifier_token: r.get(1) }))
    }

    fn verifier_tokens(&mut self) -> Result<Vec<String>, StoreError> {
        let client = self.connection.lock();
        let rows = wait(
            client.query("SELECT DISTINCT verifier_token FROM credentials WHERE verifier_token IS NOT NULL", &[]),
        )?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn notify(
        &mut self,
        route: &NotificationRoute<'_>,
        now_us: i64,
        verifier: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.connection.lock();
        let rows = wait(client.query(
            "UPDATE connections SET notified_at = $2
             WHERE provider = $4 AND config ->> $5 = $1
               AND (SELECT verifier_token FROM credentials WHERE connection = connections.id) IS NOT DISTINCT FROM $3
             RETURNING id",
            &[&route.account, &now_us, &verifier, &route.provider, &route.account_key],
        ))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn clear_notification(&mut self, id: &str, start_us: i64) -> Result<(), StoreError> {
        let client = self.connection.lock();
        wait(client.execute(
            "UPDATE connections SET notified_at = NULL WHERE id = $1 AND notified_at <= $2",
            &[&id, &start_us],
        ))?;
        Ok(())
    }

    fn save_tokens(&mut self, id: &str, tokens: &Tokens) -> Result<(), StoreError> {
        let client = self.connection.lock();
        wait(client.execute(
            "UPDATE credentials SET access_token = $2, access_expires_at = $3, refresh_token = coalesce($4, refresh_token),
                    updated_at = $5
             WHERE connection = $1",
            &[&id, &tokens.access_token, &tokens.access_expires_us, &tokens.refresh_token, &now_us()],
        ))?;
        Ok(())
    }

    fn reset(&mut self, id: &str, empty: bool) -> Result<(), StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            tx.execute("DELETE FROM checkpoints WHERE connection = $1", &[&id]).await?;
            if empty {
                tx.execute("DELETE FROM records WHERE scope IN (SELECT id FROM scopes WHERE connection = $1)", &[&id])
                    .await?;
                tx.execute("DELETE FROM scopes WHERE connection = $1", &[&id]).await?;
            } else {
                tx.execute("UPDATE scopes SET open_listing = NULL WHERE connection = $1", &[&id]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// `update` of the connection `id`, on a client or a transaction; the
/// connection as it is then, if it exists.
async fn update_connection(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
    update: &ConnectionUpdate,
) -> Result<Option<Row>, tokio_postgres::Error> {
    client
        .query_opt(
            &format!(
                "UPDATE connections SET
                    paused = CASE WHEN $2 THEN $3 ELSE paused END,
                    every_secs = CASE WHEN $4 THEN $5 ELSE every_secs END,
                    status = coalesce($6, status),
                    status_message = CASE WHEN $7 THEN $8 ELSE status_message END,
                    failures = coalesce($9, failures),
                    next_run_at = CASE WHEN $10 THEN $11 ELSE next_run_at END,
                    updated_at = $12
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &update.paused.is_some(),
                &update.paused.unwrap_or(false),
                &update.every.is_some(),
                &update.every.flatten().map(|e| e.as_secs() as i64),
                &update.status.map(|s| s.as_str()),
                &update.status_message.is_some(),
                &update.status_message.clone().flatten(),
                &update.failures.map(|f| f as i32),
                &update.next_run_at_us.is_some(),
                &update.next_run_at_us.flatten(),
                &now_us(),
            ],
        )
        .await
}

pub struct PgRuns {
    connection: Shared,
}

impl PgRuns {
    pub(super) fn new(connection: Shared) -> Self {
        PgRuns { connection }
    }
}

fn run_from(row: &Row) -> RunRecord {
    let trigger: String = row.get(2);
    let outcome: Option<String> = row.get(5);
    RunRecord {
        id: row.get(0),
        connection: row.get(1),
        trigger: Trigger::parse(&trigger).unwrap_or(Trigger::Cli),
        started_us: row.get(3),
        ended_us: row.get(4),
        outcome: outcome.map(|o| if o == "success" { Outcome::Success } else { Outcome::Failure }),
        summary: row.get(6),
        error: row.get(7),
        worker: row.get(8),
    }
}

impl RunHistory for PgRuns {
    fn begin(&mut self, run: &RunRecord) -> Result<Option<i64>, StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            let abandoned_since: Option<i64> = tx
                .query_one(
                    "SELECT min(started_at) FROM runs WHERE connection = $1 AND outcome IS NULL",
                    &[&run.connection],
                )
                .await?
                .get(0);
            tx.execute(
                "UPDATE runs SET ended_at = $2, outcome = 'failure', error = $3 WHERE connection = $1 AND outcome IS NULL",
                &[&run.connection, &run.started_us, &crate::store::history::ABANDONED],
            )
            .await?;
            tx.execute(
                "INSERT INTO runs (id, connection, trigger, started_at, worker) VALUES ($1, $2, $3, $4, $5)",
                &[&run.id, &run.connection, &run.trigger.as_str(), &run.started_us, &run.worker],
            )
            .await?;
            let running = ConnectionUpdate { status: Some(ConnectionStatus::Running), ..Default::default() };
            update_connection(&tx, &run.connection, &running).await?;
            tx.execute(
                "UPDATE connections SET notified_at = NULL WHERE id = $1 AND notified_at <= $2",
                &[&run.connection, &run.started_us],
            )
            .await?;
            tx.commit().await?;
            Ok(abandoned_since)
        })
    }

    fn end(&mut self, end: &RunEnd<'_>, update: &ConnectionUpdate) -> Result<(), StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            tx.execute(
                "UPDATE runs SET ended_at = $2, outcome = $3, summary = $4, error = $5 WHERE id = $1",
                &[&end.id, &end.ended_us, &end.outcome.as_str(), &end.summary, &end.error],
            )
            .await?;
            update_connection(&tx, end.connection, update).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn list(
        &mut self,
        connection: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<(Vec<RunRecord>, bool), StoreError> {
        let client = self.connection.lock();
        let (before_us, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let rows = wait(client.query(
            "SELECT id, connection, trigger, started_at, ended_at, outcome, summary, error, worker FROM runs
             WHERE connection = $1 AND (started_at < $2 OR (started_at = $2 AND id < $3))
             ORDER BY started_at DESC, id DESC LIMIT $4",
            &[&connection, &before_us, &before_id, &(i64::from(limit) + 1)],
        ))?;
        let mut runs: Vec<RunRecord> = rows.iter().map(run_from).collect();
        let more = runs.len() > limit as usize;
        runs.truncate(limit as usize);
        Ok((runs, more))
    }
}

pub struct PgWebhooks {
    connection: Shared,
}

impl PgWebhooks {
    pub(super) fn new(connection: Shared) -> Self {
        PgWebhooks { connection }
    }
}

const DELIVERY_COLUMNS: &str =
    "id, connection, run, url, body, status, attempts, next_attempt_at, last_error, created_at, delivered_at";

fn delivery_from(row: &Row) -> Delivery {
    let status: String = row.get(5);
    Delivery {
        id: row.get(0),
        connection: row.get(1),
        run: row.get(2),
        url: row.get(3),
        body: row.get(4),
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts: row.get::<_, i32>(6) as u32,
        next_attempt_us: row.get(7),
        last_error: row.get(8),
        created_us: row.get(9),
        delivered_us: row.get(10),
    }
}

impl WebhookStore for PgWebhooks {
    fn enqueue(&mut self, connection: &str, run: Option<&str>, url: &str, body: &str) -> Result<i64, StoreError> {
        let client = self.connection.lock();
        let now = now_us();
        Ok(wait(client.query_one(
            "INSERT INTO webhook_deliveries (connection, run, url, body, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            &[&connection, &run, &url, &body, &now],
        ))?
        .get(0))
    }

    fn claim_due(&mut self, now_us: i64, lease_us: i64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let client = self.connection.lock();
        // SKIP LOCKED: two workers claiming at once take different deliveries.
        let rows = wait(client.query(
            &format!(
                "UPDATE webhook_deliveries SET next_attempt_at = $1 + $2
                 WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
                              ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING {DELIVERY_COLUMNS}"
            ),
            &[&now_us, &lease_us, &i64::from(limit)],
        ))?;
        Ok(rows.iter().map(delivery_from).collect())
    }

    fn delivered(&mut self, id: i64, attempts: u32, at_us: i64) -> Result<(), StoreError> {
        let client = self.connection.lock();
        wait(client.execute(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = $2, delivered_at = $3, last_error = NULL WHERE id = $1",
            &[&id, &(attempts as i32), &at_us],
        ))?;
        Ok(())
    }

    fn failed(&mut self, id: i64, attempts: u32, error: &str, next_attempt_us: Option<i64>) -> Result<(), StoreError> {
        let client = self.connection.lock();
        match next_attempt_us {
            Some(next) => wait(client.execute(
                "UPDATE webhook_deliveries SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1",
                &[&id, &(attempts as i32), &error, &next],
            ))?,
            None => wait(client.execute(
                "UPDATE webhook_deliveries SET status = 'given_up', attempts = $2, last_error = $3 WHERE id = $1",
                &[&id, &(attempts as i32), &error],
            ))?,
        };
        Ok(())
    }

    fn list(&mut self, connection: &str, before: Option<i64>, limit: u32) -> Result<(Vec<Delivery>, bool), StoreError> {
        let client = self.connection.lock();
        let rows = wait(client.query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE connection = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            ),
            &[&connection, &before.unwrap_or(i64::MAX), &(i64::from(limit) + 1)],
        ))?;
        let mut deliveries: Vec<Delivery> = rows.iter().map(delivery_from).collect();
        let more = deliveries.len() > limit as usize;
        deliveries.truncate(limit as usize);
        Ok((deliveries, more))
    }
}
