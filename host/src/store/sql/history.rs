//! The history of runs, in the SQL both backends speak.

use super::connections::{clear_notification, update_connection};
use super::{fetch_for_page, page, values, Backend, Row};
use crate::store::history::ABANDONED;
use crate::store::{ConnectionStatus, ConnectionUpdate, Outcome, RunEnd, RunHistory, RunRecord, StoreError, Trigger};

/// [`RunHistory`] over any [`Backend`].
pub struct SqlRunHistory<B>(pub B);

fn run_from(row: &Row) -> Result<RunRecord, StoreError> {
    let trigger = row.text(2)?;
    Ok(RunRecord {
        id: row.text(0)?,
        connection: row.text(1)?,
        trigger: Trigger::parse(&trigger).unwrap_or(Trigger::Cli),
        started_us: row.int(3)?,
        ended_us: row.opt_int(4)?,
        outcome: row.opt_text(5)?.map(|o| if o == "success" { Outcome::Success } else { Outcome::Failure }),
        summary: row.opt_text(6)?,
        error: row.opt_text(7)?,
        worker: row.opt_text(8)?,
    })
}

impl<B: Backend> RunHistory for SqlRunHistory<B> {
    fn begin(&self, run: &RunRecord) -> Result<Option<i64>, StoreError> {
        self.0.write(|sql| {
            let d = sql.dialect();
            let abandoned_since = sql
                .query_one(
                    &d.statement("SELECT min(started_at) FROM runs WHERE connection = $1 AND outcome IS NULL"),
                    &values![&run.connection],
                )?
                .opt_int(0)?;
            sql.execute(
                &d.statement(
                    "UPDATE runs SET ended_at = $2, outcome = 'failure', error = $3
                     WHERE connection = $1 AND outcome IS NULL",
                ),
                &values![&run.connection, run.started_us, ABANDONED],
            )?;
            sql.execute(
                &d.statement(
                    "INSERT INTO runs (id, connection, trigger, started_at, worker) VALUES ($1, $2, $3, $4, $5)",
                ),
                &values![&run.id, &run.connection, run.trigger.as_str(), run.started_us, run.worker.as_deref()],
            )?;
            let running = ConnectionUpdate { status: Some(ConnectionStatus::Running), ..Default::default() };
            update_connection(sql, &run.connection, &running)?;
            clear_notification(sql, &run.connection, run.started_us)?;
            Ok(abandoned_since)
        })
    }

    fn end(&self, end: &RunEnd<'_>, update: &ConnectionUpdate) -> Result<(), StoreError> {
        self.0.write(|sql| {
            sql.execute(
                &sql.dialect()
                    .statement("UPDATE runs SET ended_at = $2, outcome = $3, summary = $4, error = $5 WHERE id = $1"),
                &values![end.id, end.ended_us, end.outcome.as_str(), end.summary, end.error],
            )?;
            update_connection(sql, end.connection, update)?;
            Ok(())
        })
    }

    fn list(
        &self,
        connection: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<(Vec<RunRecord>, bool), StoreError> {
        let (before_us, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let rows = self.0.read(|sql| {
            sql.query(
                &sql.dialect().statement(
                    "SELECT id, connection, trigger, started_at, ended_at, outcome, summary, error, worker FROM runs
                     WHERE connection = $1 AND (started_at < $2 OR (started_at = $2 AND id < $3))
                     ORDER BY started_at DESC, id DESC LIMIT $4",
                ),
                &values![connection, before_us, &before_id, fetch_for_page(limit)],
            )
        })?;
        Ok(page(rows.iter().map(run_from).collect::<Result<_, _>>()?, limit))
    }
}
