//! Webhook deliveries in SQLite.

use rusqlite::{params, Row, TransactionBehavior};

use super::{now_us, Shared};
use crate::store::{Delivery, DeliveryStatus, StoreError, WebhookStore};

pub struct SqliteWebhooks {
    connection: Shared,
}

impl SqliteWebhooks {
    pub(super) fn new(connection: Shared) -> Self {
        SqliteWebhooks { connection }
    }
}

const COLUMNS: &str =
    "id, connection, run, url, body, status, attempts, next_attempt_at, last_error, created_at, delivered_at";

fn delivery_from(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status: String = row.get(5)?;
    Ok(Delivery {
        id: row.get(0)?,
        connection: row.get(1)?,
        run: row.get(2)?,
        url: row.get(3)?,
        body: row.get(4)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts: row.get(6)?,
        next_attempt_us: row.get(7)?,
        last_error: row.get(8)?,
        created_us: row.get(9)?,
        delivered_us: row.get(10)?,
    })
}

impl WebhookStore for SqliteWebhooks {
    fn enqueue(&mut self, connection: &str, run: Option<&str>, url: &str, body: &str) -> Result<i64, StoreError> {
        let db = self.connection.lock();
        let now = now_us();
        db.execute(
            "INSERT INTO webhook_deliveries (connection, run, url, body, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![connection, run, url, body, now],
        )?;
        Ok(db.last_insert_rowid())
    }

    fn claim_due(&mut self, now_us: i64, lease_us: i64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let mut db = self.connection.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let due: Vec<Delivery> = {
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![now_us, limit], delivery_from)?;
            rows.collect::<Result<_, _>>()?
        };
        for delivery in &due {
            tx.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id = ?1",
                params![delivery.id, now_us + lease_us],
            )?;
        }
        tx.commit()?;
        Ok(due)
    }

    fn delivered(&mut self, id: i64, attempts: u32, at_us: i64) -> Result<(), StoreError> {
        self.connection.lock().execute(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?2, delivered_at = ?3, last_error = NULL WHERE id = ?1",
            params![id, attempts, at_us],
        )?;
        Ok(())
    }

    fn failed(&mut self, id: i64, attempts: u32, error: &str, next_attempt_us: Option<i64>) -> Result<(), StoreError> {
        let db = self.connection.lock();
        match next_attempt_us {
            Some(next) => db.execute(
                "UPDATE webhook_deliveries SET attempts = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1",
                params![id, attempts, error, next],
            )?,
            None => db.execute(
                "UPDATE webhook_deliveries SET status = 'given_up', attempts = ?2, last_error = ?3 WHERE id = ?1",
                params![id, attempts, error],
            )?,
        };
        Ok(())
    }

    fn list(&mut self, connection: &str, before: Option<i64>, limit: u32) -> Result<(Vec<Delivery>, bool), StoreError> {
        let db = self.connection.lock();
        let mut statement = db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM webhook_deliveries WHERE connection = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        ))?;
        let mut deliveries = statement
            .query_map(params![connection, before.unwrap_or(i64::MAX), i64::from(limit) + 1], delivery_from)?
            .collect::<Result<Vec<_>, _>>()?;
        let more = deliveries.len() > limit as usize;
        deliveries.truncate(limit as usize);
        Ok((deliveries, more))
    }
}
