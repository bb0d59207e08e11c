//! The SQL both backends run, written once (docs/store.md, "One layout, two
//! dialects"). Statements are written with PostgreSQL's numbered
//! placeholders (`$1`); the SQLite backend reads them as SQLite's (`?1`).
//! Where the dialects differ (a JSON column, `FOR UPDATE SKIP LOCKED`), the
//! statement takes its fragment from [`Dialect`]. Parameters and rows pass
//! through [`Value`] and [`Row`], so a store is written once over [`Sql`]
//! and each backend only says how to run a statement.
//!
//! What a run writes (records, listings, checkpoints) is not here: its hot
//! path is shaped per backend (prepared statements per record on SQLite,
//! arrays per batch on PostgreSQL) and lives in each backend's `records.rs`.

pub mod checkpoints;
pub mod connections;
pub mod history;
pub mod records;
pub mod webhooks;

use std::borrow::Cow;

use super::StoreError;

/// Which SQL a backend speaks, for the few fragments that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A statement in this dialect's placeholders.
    pub fn statement(self, sql: &str) -> Cow<'_, str> {
        match self {
            Dialect::Postgres => Cow::Borrowed(sql),
            Dialect::Sqlite => Cow::Owned(sqlite_placeholders(sql)),
        }
    }

    /// The `connections.config` column as JSON text (PostgreSQL keeps it as `jsonb`).
    pub fn config_text(self) -> &'static str {
        match self {
            Dialect::Sqlite => "config",
            Dialect::Postgres => "config::text",
        }
    }

    /// A parameter holding JSON text, stored into a JSON column.
    pub fn json_parameter(self, placeholder: &str) -> String {
        match self {
            Dialect::Sqlite => placeholder.to_owned(),
            Dialect::Postgres => format!("{placeholder}::text::jsonb"),
        }
    }

    /// The text of `config`'s key named by the parameter `key`; see
    /// [`Dialect::config_key`] for what to bind to it.
    pub fn config_value(self, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract(config, {key})"),
            Dialect::Postgres => format!("config ->> {key}"),
        }
    }

    /// What to bind to [`Dialect::config_value`]'s parameter for `key`: a
    /// JSON path with the key quoted on SQLite (whatever characters it
    /// has), the key itself on PostgreSQL.
    pub fn config_key(self, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("$.{}", serde_json::Value::String(key.to_owned())),
            Dialect::Postgres => key.to_owned(),
        }
    }

    /// Appended to a `SELECT` that claims rows for this transaction: other
    /// PostgreSQL transactions skip them. (SQLite runs one writer at a time.)
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// `$1` → `?1`, outside quoted text. SQLite reads `$1` as a named parameter
/// numbered by first appearance, so a statement that used `$2` before `$1`
/// would bind the wrong values; `?1` is by number.
fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '$' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('?');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A statement's parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `values![a, b, c]`: the parameters of a statement, each through `Value::from`.
#[macro_export]
macro_rules! values {
    ($($value:expr),* $(,)?) => {
        [$($crate::store::sql::Value::from($value)),*]
    };
}
pub use crate::values;

/// A column's value as a backend read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

/// A row as a backend read it; the accessors name the column in their errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, index: usize) -> Result<&Cell, StoreError> {
        self.0.get(index).ok_or_else(|| StoreError::Corrupt(format!("a row has no column {index}")))
    }

    fn mismatch(&self, index: usize, wanted: &str) -> StoreError {
        StoreError::Corrupt(format!("column {index} holds {:?}, not {wanted}", self.0.get(index)))
    }

    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        self.opt_text(index)?.ok_or_else(|| self.mismatch(index, "text"))
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            Cell::Text(text) => Ok(Some(text.clone())),
            _ => Err(self.mismatch(index, "text")),
        }
    }

    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.opt_int(index)?.ok_or_else(|| self.mismatch(index, "an integer"))
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            Cell::Int(value) => Ok(Some(*value)),
            _ => Err(self.mismatch(index, "an integer")),
        }
    }

    /// A count that fits a `u32` (failures, attempts).
    pub fn count(&self, index: usize) -> Result<u32, StoreError> {
        u32::try_from(self.int(index)?).map_err(|_| self.mismatch(index, "a count"))
    }

    /// A boolean: SQLite keeps it as 0 or 1.
    pub fn flag(&self, index: usize) -> Result<bool, StoreError> {
        match self.cell(index)? {
            Cell::Bool(value) => Ok(*value),
            Cell::Int(value) => Ok(*value != 0),
            _ => Err(self.mismatch(index, "a boolean")),
        }
    }

    pub fn bytes(&self, index: usize) -> Result<Vec<u8>, StoreError> {
        match self.cell(index)? {
            Cell::Bytes(bytes) => Ok(bytes.clone()),
            _ => Err(self.mismatch(index, "bytes")),
        }
    }

    /// Moves column `index`'s text out (for large values such as a record's JSON).
    pub fn take_text(&mut self, index: usize) -> Result<String, StoreError> {
        match self.0.get_mut(index) {
            Some(Cell::Text(text)) => Ok(std::mem::take(text)),
            _ => Err(self.mismatch(index, "text")),
        }
    }
}

/// One connection of a backend, or one transaction on it: what a store
/// written once needs of it.
pub trait Sql {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError>;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, StoreError>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row, which must exist.
    fn query_one(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?.ok_or_else(|| StoreError::Backend(format!("no row from: {sql}")))
    }
}

/// A backend as the stores written once over [`Sql`] use it: a pool of
/// connections, each call on one of them.
pub trait Backend: Send + Sync + 'static {
    /// Runs `work` on a pooled connection, outside a transaction (reads, and
    /// single statements, which are a transaction each).
    fn read<T>(&self, work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>) -> Result<T, StoreError>;
    /// Runs `work` in one write transaction, committed if it returns `Ok`,
    /// rolled back otherwise.
    fn write<T>(&self, work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>) -> Result<T, StoreError>;
}

/// A page of `limit` items from rows fetched with `LIMIT limit + 1`: the
/// extra row, dropped, says whether more follow.
pub fn page<T>(mut items: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    (items, more)
}

/// What to fetch for a page of `limit`: one more, to learn whether more follow ([`page`]).
pub fn fetch_for_page(limit: u32) -> i64 {
    i64::from(limit) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_reads_numbered_placeholders_by_number() {
        assert_eq!(sqlite_placeholders("a = $2 AND b = $10 OR c = $1"), "a = ?2 AND b = ?10 OR c = ?1");
        assert_eq!(sqlite_placeholders("x = '$1' AND y = $1"), "x = '$1' AND y = ?1", "quoted text is kept");
        assert_eq!(sqlite_placeholders("price$ = $x"), "price$ = $x", "only a dollar before a digit");
    }

    #[test]
    fn a_page_drops_the_extra_row_and_says_more_follow() {
        assert_eq!(page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(page(vec![1, 2], 2), (vec![1, 2], false));
        assert_eq!(fetch_for_page(2), 3);
    }

    #[test]
    fn config_keys_are_quoted_for_sqlite_paths() {
        assert_eq!(Dialect::Sqlite.config_key("realmId"), r#"$."realmId""#);
        assert_eq!(Dialect::Sqlite.config_key(r#"a."b"#), r#"$."a.\"b""#);
        assert_eq!(Dialect::Postgres.config_key("realmId"), "realmId");
    }
}
