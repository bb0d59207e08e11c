//! What the API reads of the records, in the SQL both backends speak. (What
//! a run writes is shaped per backend: each backend's `records.rs`.)

use super::{fetch_for_page, page, values, Backend};
use crate::store::{LastAction, ListPage, ListQuery, RecordReads, Scope, StoreError, StoredRecord};

/// Parameters: connection, model. One row: the scope's id, clock and open listing.
pub const SCOPE: &str = "SELECT id, clock_us, open_listing FROM scopes WHERE connection = $1 AND model = $2";

/// Parameters: connection, model. Creates the scope's row if missing.
pub const CREATE_SCOPE: &str =
    "INSERT INTO scopes (connection, model) VALUES ($1, $2) ON CONFLICT (connection, model) DO NOTHING";

/// Parameters: scope id. Opens the next listing; one row: its id.
pub const BEGIN_LISTING: &str =
    "UPDATE scopes SET last_listing = last_listing + 1, open_listing = last_listing + 1 WHERE id = $1
     RETURNING open_listing";

/// Parameters: connection, model, listing. Closes the listing if it is the open one.
pub const ABANDON_LISTING: &str =
    "UPDATE scopes SET open_listing = NULL WHERE connection = $1 AND model = $2 AND open_listing = $3";

/// Parameters: scope id. Closes the scope's open listing.
pub const CLOSE_LISTING: &str = "UPDATE scopes SET open_listing = NULL WHERE id = $1";

/// Parameters: clock (µs), scope id.
pub const SAVE_CLOCK: &str = "UPDATE scopes SET clock_us = $1 WHERE id = $2";

/// Parameters: scope id, listing. Rows: the live records the listing did not see.
pub const UNSEEN: &str =
    "SELECT id FROM records WHERE scope = $1 AND deleted_at IS NULL AND (listing IS NULL OR listing <> $2) ORDER BY id";

/// [`RecordReads`] over any [`Backend`].
pub struct SqlRecordReads<B>(pub B);

impl<B: Backend> RecordReads for SqlRecordReads<B> {
    fn list(&self, scope: &Scope, query: &ListQuery) -> Result<ListPage, StoreError> {
        let (after_us, after_id) = match &query.after {
            Some(p) => (p.last_modified_us, p.id.as_str()),
            None => (i64::MIN, ""),
        };
        // The actions are the store's own constants, never the caller's text.
        let actions = if query.actions.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = query.actions.iter().map(|a| format!("'{}'", a.as_str())).collect();
            format!(" AND last_action IN ({})", list.join(", "))
        };
        // The ids are parameters, after the five of the page.
        let ids = if query.ids.is_empty() {
            String::new()
        } else {
            let placeholders: Vec<String> = (0..query.ids.len()).map(|i| format!("${}", i + 6)).collect();
            format!(" AND id IN ({})", placeholders.join(", "))
        };
        let statement = format!(
            "SELECT id, json, first_seen_at, last_modified_at, last_action, deleted_at FROM records
             WHERE scope = $1 AND (last_modified_at, id) > ($2, $3) AND last_modified_at >= $4{actions}{ids}
             ORDER BY last_modified_at, id LIMIT $5"
        );
        let rows = self.0.read(|sql| {
            let d = sql.dialect();
            // The scope first: the records' index is (scope, last_modified_at, id).
            let Some(scope) = sql.query_opt(&d.statement(SCOPE), &values![&scope.connection, &scope.model])? else {
                return Ok(Vec::new());
            };
            let mut params = values![
                scope.int(0)?,
                after_us,
                after_id,
                query.modified_after_us.unwrap_or(i64::MIN),
                fetch_for_page(query.limit),
            ]
            .to_vec();
            params.extend(query.ids.iter().map(super::Value::from));
            sql.query(&d.statement(&statement), &params)
        })?;
        let mut records = Vec::with_capacity(rows.len());
        for mut row in rows {
            let id = row.text(0)?;
            let action = row.text(4)?;
            let last_action = LastAction::parse(&action)
                .ok_or_else(|| StoreError::Corrupt(format!("record {id} has last_action {action}")))?;
            records.push(StoredRecord {
                json: row.take_text(1)?,
                first_seen_us: row.int(2)?,
                last_modified_us: row.int(3)?,
                last_action,
                deleted_us: row.opt_int(5)?,
                id,
            });
        }
        let (records, has_more) = page(records, query.limit);
        Ok(ListPage { records, has_more })
    }

    fn count(&self, scope: &Scope) -> Result<u64, StoreError> {
        self.0.read(|sql| {
            let count = sql
                .query_one(
                    &sql.dialect().statement(
                        "SELECT count(*) FROM scopes s JOIN records r ON r.scope = s.id
                         WHERE s.connection = $1 AND s.model = $2 AND r.deleted_at IS NULL",
                    ),
                    &values![&scope.connection, &scope.model],
                )?
                .int(0)?;
            Ok(count.max(0) as u64)
        })
    }

    fn connection_exists(&self, connection: &str) -> Result<bool, StoreError> {
        self.0.read(|sql| {
            sql.query_one(
                &sql.dialect().statement(
                    "SELECT EXISTS (SELECT 1 FROM scopes WHERE connection = $1)
                         OR EXISTS (SELECT 1 FROM checkpoints WHERE connection = $1)",
                ),
                &values![connection],
            )?
            .flag(0)
        })
    }
}
