//! Connections and their credentials, in the SQL both backends speak.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{values, Backend, Dialect, Row, Sql};
use crate::store::{
    Connection, ConnectionSecrets, ConnectionStatus, ConnectionUpdate, Connections, NotificationRoute, Removal,
    StoreError, StoredCredentials, Tokens, WebhookFormat,
};
use crate::time::now_us;

/// [`Connections`] over any [`Backend`].
pub struct SqlConnections<B>(pub B);

/// The columns [`connection_from`] reads, in order.
fn columns(dialect: Dialect) -> String {
    format!(
        "id, base_url, {}, every_secs, paused, status, status_message, failures, next_run_at, \
         created_at, updated_at, webhook_url, notified_at, provider, integration, webhook_format",
        dialect.config_text()
    )
}

fn connection_from(row: &Row) -> Result<Connection, StoreError> {
    let id = row.text(0)?;
    let config = row.text(2)?;
    let status = row.text(5)?;
    let config = serde_json::from_str::<BTreeMap<String, String>>(&config)
        .map_err(|_| StoreError::Corrupt(format!("connection `{id}`: config is not a JSON object of strings")))?;
    let status = ConnectionStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("connection `{id}`: unknown status {status}")))?;
    Ok(Connection {
        base_url: row.text(1)?,
        config,
        every: row.opt_int(3)?.map(|s| Duration::from_secs(s.max(1) as u64)),
        paused: row.flag(4)?,
        status,
        status_message: row.opt_text(6)?,
        failures: row.count(7)?,
        next_run_at_us: row.opt_int(8)?,
        created_us: row.int(9)?,
        updated_us: row.int(10)?,
        webhook_url: row.opt_text(11)?,
        notified_at_us: row.opt_int(12)?,
        provider: row.text(13)?,
        integration: row.opt_text(14)?,
        webhook_format: match row.opt_text(15)? {
            None => None,
            Some(format) => {
                Some(WebhookFormat::parse(&format).ok_or_else(|| {
                    StoreError::Corrupt(format!("connection `{id}`: unknown webhook format {format}"))
                })?)
            }
        },
        id,
    })
}

fn credentials_from(row: &Row) -> Result<Option<StoredCredentials>, StoreError> {
    Ok(match row.text(0)?.as_str() {
        "oauth" => Some(StoredCredentials::OAuth {
            token_url: row.opt_text(1)?.unwrap_or_default(),
            client_id: row.opt_text(2)?.unwrap_or_default(),
            client_secret: row.opt_text(3)?.unwrap_or_default().into(),
            refresh_token: row.opt_text(4)?.unwrap_or_default().into(),
            access_token: row.opt_text(5)?.map(SecretString::from),
            access_expires_us: row.opt_int(6)?,
            access_issued_us: row.opt_int(7)?,
        }),
        "access_token" => Some(StoredCredentials::AccessToken(row.opt_text(5)?.unwrap_or_default().into())),
        _ => None,
    })
}

fn select(sql: &mut dyn Sql, from: &str, params: &[super::Value<'_>]) -> Result<Vec<Connection>, StoreError> {
    let statement = format!("SELECT {} {from}", columns(sql.dialect()));
    sql.query(&sql.dialect().statement(&statement), params)?.iter().map(connection_from).collect()
}

/// Applies `update` to the connection `id` (on a connection or in a
/// transaction); the connection after it, if it exists.
pub fn update_connection(
    sql: &mut dyn Sql,
    id: &str,
    update: &ConnectionUpdate,
) -> Result<Option<Connection>, StoreError> {
    let statement = format!(
        "UPDATE connections SET
            paused = CASE WHEN $2 THEN $3 ELSE paused END,
            every_secs = CASE WHEN $4 THEN $5 ELSE every_secs END,
            status = coalesce($6, status),
            status_message = CASE WHEN $7 THEN $8 ELSE status_message END,
            failures = coalesce($9, failures),
            next_run_at = CASE WHEN $10 THEN $11 ELSE next_run_at END,
            updated_at = $12
         WHERE id = $1 RETURNING {}",
        columns(sql.dialect())
    );
    let row = sql.query_opt(
        &sql.dialect().statement(&statement),
        &values![
            id,
            update.paused.is_some(),
            update.paused.unwrap_or(false),
            update.every.is_some(),
            update.every.flatten().map(|e| e.as_secs() as i64),
            update.status.map(|s| s.as_str()),
            update.status_message.is_some(),
            update.status_message.as_ref().and_then(|m| m.as_deref()),
            update.failures,
            update.next_run_at_us.is_some(),
            update.next_run_at_us.flatten(),
            now_us(),
        ],
    )?;
    row.as_ref().map(connection_from).transpose()
}

/// Clears the notification of `id` that a run starting at `start_us` covers.
pub fn clear_notification(sql: &mut dyn Sql, id: &str, start_us: i64) -> Result<(), StoreError> {
    sql.execute(
        &sql.dialect().statement("UPDATE connections SET notified_at = NULL WHERE id = $1 AND notified_at <= $2"),
        &values![id, start_us],
    )?;
    Ok(())
}

impl<B: Backend> Connections for SqlConnections<B> {
    fn insert(
        &self,
        connection: &Connection,
        credentials: &StoredCredentials,
        secrets: &ConnectionSecrets,
    ) -> Result<(), StoreError> {
        let config = serde_json::to_string(&connection.config).expect("a map of strings serializes");
        self.0.write(|sql| {
            let now = now_us();
            let d = sql.dialect();
            let insert = format!(
                "INSERT INTO connections (id, base_url, config, every_secs, paused, status, status_message, failures,
                                          next_run_at, created_at, updated_at, webhook_url, provider, integration,
                                          webhook_format)
                 VALUES ($1, $2, {}, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING",
                d.json_parameter("$3")
            );
            let inserted = sql.execute(
                &d.statement(&insert),
                &values![
                    &connection.id,
                    &connection.base_url,
                    config.as_str(),
                    connection.every.map(|e| e.as_secs() as i64),
                    connection.paused,
                    connection.status.as_str(),
                    connection.status_message.as_deref(),
                    connection.failures,
                    connection.next_run_at_us,
                    now,
                    connection.webhook_url.as_deref(),
                    &connection.provider,
                    connection.integration.as_deref(),
                    connection.webhook_format.map(|f| f.as_str()),
                ],
            )?;
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
                    Some(client_secret.expose_secret()),
                    Some(refresh_token.expose_secret()),
                    access_token.as_ref().map(|t| t.expose_secret()),
                    *access_expires_us,
                ),
                StoredCredentials::AccessToken(token) => {
                    ("access_token", None, None, None, None, Some(token.expose_secret()), None)
                }
            };
            sql.execute(
                &d.statement(
                    "INSERT INTO credentials (connection, kind, token_url, client_id, client_secret, refresh_token,
                                              access_token, access_expires_at, webhook_secret, verifier_token, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                ),
                &values![
                    &connection.id,
                    kind,
                    token_url,
                    client_id,
                    client_secret,
                    refresh_token,
                    access_token,
                    expires,
                    secrets.webhook_secret.as_ref().map(|s| s.expose_secret()),
                    secrets.verifier_token.as_ref().map(|s| s.expose_secret()),
                    now,
                ],
            )?;
            Ok(())
        })
    }

    fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.0.read(|sql| Ok(select(sql, "FROM connections WHERE id = $1", &values![id])?.into_iter().next()))
    }

    fn list(&self) -> Result<Vec<Connection>, StoreError> {
        self.0.read(|sql| select(sql, "FROM connections ORDER BY id", &[]))
    }

    fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.0.read(|sql| {
            let rows = sql.query(
                &sql.dialect().statement(
                    "SELECT CASE WHEN paused THEN 'paused' ELSE status END AS shown, count(*)
                     FROM connections GROUP BY shown ORDER BY shown",
                ),
                &[],
            )?;
            rows.iter().map(|row| Ok((row.text(0)?, row.int(1)?))).collect()
        })
    }

    fn update(&self, id: &str, update: &ConnectionUpdate) -> Result<Option<Connection>, StoreError> {
        self.0.write(|sql| update_connection(sql, id, update))
    }

    fn remove(&self, id: &str, purge: bool) -> Result<Removal, StoreError> {
        self.0.write(|sql| {
            let d = sql.dialect();
            sql.execute(&d.statement("DELETE FROM credentials WHERE connection = $1"), &values![id])?;
            let connection = sql.execute(&d.statement("DELETE FROM connections WHERE id = $1"), &values![id])? > 0;
            let mut removal = Removal { connection, ..Default::default() };
            // Its secret is gone with it: what it had not yet delivered cannot be signed.
            sql.execute(
                &d.statement(
                    "UPDATE webhook_deliveries SET status = 'given_up', last_error = 'the connection was removed'
                     WHERE connection = $1 AND status = 'pending'",
                ),
                &values![id],
            )?;
            if purge {
                removal.records = sql.execute(
                    &d.statement("DELETE FROM records WHERE scope IN (SELECT id FROM scopes WHERE connection = $1)"),
                    &values![id],
                )?;
                let mut rows = removal.records;
                for table in ["scopes", "checkpoints", "runs", "webhook_deliveries"] {
                    rows +=
                        sql.execute(&d.statement(&format!("DELETE FROM {table} WHERE connection = $1")), &values![id])?;
                }
                removal.purged = rows > 0;
            }
            Ok(removal)
        })
    }

    fn due(&self, now_us: i64, quiet: Duration, limit: usize) -> Result<Vec<Connection>, StoreError> {
        let quiet_since = now_us.saturating_sub(i64::try_from(quiet.as_micros()).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Reads only what it returns: the connections due by time through
        // `connections_due_order`, in the order taken, stopping at `limit`
        // (even when all of them are due, as at their first sync), and the
        // notified ones through `connections_notified`. With ten thousand
        // connections the scheduler looks after every run, and a look that
        // read them all (or all the due ones, to sort them) each time was its
        // largest cost (BENCHMARKS.md, "Many connections"). The condition is
        // `schedule::due`'s rule, which filters again below and stays the
        // authority.
        let candidates = self.0.read(|sql| {
            select(
                sql,
                "FROM (
                   SELECT * FROM (
                     SELECT * FROM connections
                      WHERE coalesce(next_run_at, 0) <= $1 AND NOT paused AND status <> 'needs_reauth'
                      ORDER BY coalesce(next_run_at, 0), id LIMIT $3) AS by_time
                   UNION ALL
                   SELECT * FROM (
                     SELECT * FROM connections
                      WHERE notified_at <= $2 AND status <> 'failing' AND coalesce(next_run_at, 0) > $1
                        AND NOT paused AND status <> 'needs_reauth'
                      ORDER BY notified_at, id LIMIT $3) AS by_notice
                 ) AS connections
                 ORDER BY coalesce(next_run_at, 0), id LIMIT $3",
                &values![now_us, quiet_since, limit],
            )
        })?;
        Ok(candidates.into_iter().filter(|c| crate::schedule::due(&c.timing(), now_us, quiet).is_some()).collect())
    }

    fn credentials(&self, id: &str) -> Result<Option<StoredCredentials>, StoreError> {
        self.0.read(|sql| {
            let row = sql.query_opt(
                &sql.dialect().statement(
                    "SELECT kind, token_url, client_id, client_secret, refresh_token, access_token, access_expires_at,
                            updated_at
                     FROM credentials WHERE connection = $1",
                ),
                &values![id],
            )?;
            Ok(row.as_ref().map(credentials_from).transpose()?.flatten())
        })
    }

    fn secrets(&self, id: &str) -> Result<Option<ConnectionSecrets>, StoreError> {
        self.0.read(|sql| {
            let row = sql.query_opt(
                &sql.dialect()
                    .statement("SELECT webhook_secret, verifier_token FROM credentials WHERE connection = $1"),
                &values![id],
            )?;
            row.map(|r| {
                Ok(ConnectionSecrets {
                    webhook_secret: r.opt_text(0)?.map(SecretString::from),
                    verifier_token: r.opt_text(1)?.map(SecretString::from),
                })
            })
            .transpose()
        })
    }

    fn verifier_tokens(&self) -> Result<Vec<SecretString>, StoreError> {
        self.0.read(|sql| {
            let rows = sql.query(
                "SELECT DISTINCT verifier_token FROM credentials WHERE verifier_token IS NOT NULL ORDER BY verifier_token",
                &[],
            )?;
            rows.iter().map(|r| Ok(r.text(0)?.into())).collect()
        })
    }

    fn notify(
        &self,
        route: &NotificationRoute<'_>,
        now_us: i64,
        verifier: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        self.0.write(|sql| {
            let d = sql.dialect();
            let statement = format!(
                "UPDATE connections SET notified_at = $2
                 WHERE provider = $4 AND {} = $1
                   AND (SELECT verifier_token FROM credentials WHERE connection = connections.id) IS NOT DISTINCT FROM $3
                 RETURNING id",
                d.config_value("$5")
            );
            let key = d.config_key(route.account_key);
            let rows = sql.query(
                &d.statement(&statement),
                &values![route.account, now_us, verifier, route.provider, key.as_str()],
            )?;
            rows.iter().map(|r| r.text(0)).collect()
        })
    }

    fn clear_notification(&self, id: &str, start_us: i64) -> Result<(), StoreError> {
        self.0.read(|sql| clear_notification(sql, id, start_us))
    }

    fn save_tokens(&self, id: &str, tokens: &Tokens) -> Result<(), StoreError> {
        self.0.write(|sql| {
            sql.execute(
                &sql.dialect().statement(
                    "UPDATE credentials SET access_token = $2, access_expires_at = $3,
                            refresh_token = coalesce($4, refresh_token), updated_at = $5
                     WHERE connection = $1",
                ),
                &values![
                    id,
                    tokens.access_token.expose_secret(),
                    tokens.access_expires_us,
                    tokens.refresh_token.as_ref().map(|t| t.expose_secret()),
                    now_us()
                ],
            )?;
            Ok(())
        })
    }

    fn reset(&self, id: &str, empty: bool) -> Result<(), StoreError> {
        self.0.write(|sql| {
            let d = sql.dialect();
            sql.execute(&d.statement("DELETE FROM checkpoints WHERE connection = $1"), &values![id])?;
            if empty {
                sql.execute(
                    &d.statement("DELETE FROM records WHERE scope IN (SELECT id FROM scopes WHERE connection = $1)"),
                    &values![id],
                )?;
                sql.execute(&d.statement("DELETE FROM scopes WHERE connection = $1"), &values![id])?;
            } else {
                // A listing begun before the reset is not the next run's.
                sql.execute(&d.statement("UPDATE scopes SET open_listing = NULL WHERE connection = $1"), &values![id])?;
            }
            Ok(())
        })
    }
}
