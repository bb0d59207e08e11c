//! Webhook deliveries, in the SQL both backends speak.

use super::{fetch_for_page, page, values, Backend, Row};
use crate::store::{Deliveries, Delivery, DeliveryStatus, StoreError, WebhookFormat};
use crate::time::now_us;

/// [`Deliveries`] over any [`Backend`].
pub struct SqlDeliveries<B>(pub B);

const COLUMNS: &str =
    "id, connection, run, url, body, status, attempts, next_attempt_at, last_error, created_at, delivered_at, format";

fn delivery_from(row: &Row) -> Result<Delivery, StoreError> {
    let status = row.text(5)?;
    Ok(Delivery {
        id: row.int(0)?,
        connection: row.text(1)?,
        run: row.opt_text(2)?,
        url: row.text(3)?,
        body: row.text(4)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts: row.count(6)?,
        next_attempt_us: row.int(7)?,
        last_error: row.opt_text(8)?,
        created_us: row.int(9)?,
        delivered_us: row.opt_int(10)?,
        format: {
            let format = row.text(11)?;
            WebhookFormat::parse(&format)
                .ok_or_else(|| StoreError::Corrupt(format!("webhook delivery with the format {format}")))?
        },
    })
}

impl<B: Backend> Deliveries for SqlDeliveries<B> {
    fn enqueue(
        &self,
        connection: &str,
        run: Option<&str>,
        url: &str,
        body: &str,
        format: WebhookFormat,
    ) -> Result<i64, StoreError> {
        self.0.write(|sql| {
            sql.query_one(
                &sql.dialect().statement(
                    "INSERT INTO webhook_deliveries (connection, run, url, body, next_attempt_at, created_at, format)
                     VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
                ),
                &values![connection, run, url, body, now_us(), format.as_str()],
            )?
            .int(0)
        })
    }

    fn claim_due(&self, now_us: i64, lease_us: i64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        self.0.write(|sql| {
            let d = sql.dialect();
            // Skipping rows another PostgreSQL transaction claims: two workers
            // claiming at once take different deliveries.
            let select = format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT $2{}",
                d.skip_locked()
            );
            let due = sql
                .query(&d.statement(&select), &values![now_us, i64::from(limit)])?
                .iter()
                .map(delivery_from)
                .collect::<Result<Vec<_>, _>>()?;
            for delivery in &due {
                sql.execute(
                    &d.statement("UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE id = $1"),
                    &values![delivery.id, now_us + lease_us],
                )?;
            }
            Ok(due)
        })
    }

    fn delivered(&self, id: i64, attempts: u32, at_us: i64) -> Result<(), StoreError> {
        self.0.write(|sql| {
            sql.execute(
                &sql.dialect().statement(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = $2, delivered_at = $3,
                            last_error = NULL
                     WHERE id = $1",
                ),
                &values![id, attempts, at_us],
            )?;
            Ok(())
        })
    }

    fn failed(&self, id: i64, attempts: u32, error: &str, next_attempt_us: Option<i64>) -> Result<(), StoreError> {
        self.0.write(|sql| {
            let d = sql.dialect();
            match next_attempt_us {
                Some(next) => sql.execute(
                    &d.statement(
                        "UPDATE webhook_deliveries SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1",
                    ),
                    &values![id, attempts, error, next],
                )?,
                None => sql.execute(
                    &d.statement(
                        "UPDATE webhook_deliveries SET status = 'given_up', attempts = $2, last_error = $3 WHERE id = $1",
                    ),
                    &values![id, attempts, error],
                )?,
            };
            Ok(())
        })
    }

    fn list(&self, connection: &str, before: Option<i64>, limit: u32) -> Result<(Vec<Delivery>, bool), StoreError> {
        let rows = self.0.read(|sql| {
            let select = format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE connection = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            );
            sql.query(
                &sql.dialect().statement(&select),
                &values![connection, before.unwrap_or(i64::MAX), fetch_for_page(limit)],
            )
        })?;
        Ok(page(rows.iter().map(delivery_from).collect::<Result<_, _>>()?, limit))
    }
}
