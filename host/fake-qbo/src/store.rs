//! The fake company's data: customers in "heap" order, tombstones and the fake clock.
//!
//! Everything here is plain data guarded by one mutex in [`crate::FakeQbo`]; nothing in
//! this module knows about HTTP.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Timelike};
use serde_json::{Map, Value};

/// QBO answers in the company's time zone; the sandbox this fake imitates is in
/// US Pacific time and the recorded fixtures all carry `-07:00`.
pub(crate) fn company_offset() -> FixedOffset {
    FixedOffset::west_opt(7 * 3600).expect("-07:00 is a valid offset")
}

/// The default fake "now": 2026-05-05T05:00:00-07:00, a little after the recorded
/// fixture was taken.
pub fn default_now() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-05-05T05:00:00-07:00").expect("constant parses")
}

/// Formats an entity timestamp the way QBO does: one-second resolution, `-07:00`.
pub(crate) fn entity_timestamp(t: DateTime<FixedOffset>) -> String {
    let t = t.with_timezone(&company_offset());
    let t = t.with_nanosecond(0).unwrap_or(t);
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Formats the `time` field of a response: milliseconds, `-07:00`.
pub(crate) fn response_time(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&company_offset())
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Parses a timestamp the way QBO accepts it in queries and `changedSince`:
/// RFC 3339 with an offset or `Z`, a date-time without offset (taken in the
/// company's zone), or a plain date (midnight in the company's zone).
pub fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t);
    }
    let zone = company_offset();
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return naive.and_local_timezone(zone).single();
        }
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    date.and_hms_opt(0, 0, 0)?.and_local_timezone(zone).single()
}

/// One stored customer. `body` is the JSON object exactly as the API returns it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: String,
    pub body: Map<String, Value>,
}

impl Stored {
    pub fn last_updated(&self) -> Option<DateTime<FixedOffset>> {
        self.body
            .get("MetaData")
            .and_then(|m| m.get("LastUpdatedTime"))
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
    }
}

/// A customer deleted outright (e.g. merged away): only CDC still reports it.
#[derive(Debug, Clone)]
pub(crate) struct Tombstone {
    pub id: String,
    pub deleted_at: DateTime<FixedOffset>,
}

impl Tombstone {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "Id": self.id,
            "domain": "QBO",
            "status": "Deleted",
            "MetaData": { "LastUpdatedTime": entity_timestamp(self.deleted_at) },
        })
    }
}

/// Sort key for Ids: numeric Ids by value, anything else after them by text.
pub(crate) fn id_sort_key(id: &str) -> (u64, u64, String) {
    match id.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, id.to_owned()),
    }
}

/// The company's customers plus the clock.
///
/// `customers` is kept in QBO's *internal* order, which is what ties (and queries
/// without ORDERBY) come back in. Like a database heap, an updated row is rewritten
/// at the end, so an update reshuffles a group of equal timestamps.
#[derive(Debug)]
pub(crate) struct Store {
    pub now: DateTime<FixedOffset>,
    pub customers: Vec<Stored>,
    pub tombstones: Vec<Tombstone>,
    pub next_id: u64,
}

impl Store {
    pub fn new() -> Self {
        Store {
            now: default_now(),
            customers: Vec::new(),
            tombstones: Vec::new(),
            next_id: 1,
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.checked_add_signed(by).unwrap_or(self.now);
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.customers.iter().position(|c| c.id == id)
    }

    pub fn get(&self, id: &str) -> Option<&Stored> {
        self.customers.iter().find(|c| c.id == id)
    }

    /// Inserts (or replaces, if the Id exists) a customer, filling in what QBO would.
    /// `timestamp` overrides both MetaData times; otherwise given times are kept
    /// (normalized to QBO's format) and missing ones are "now".
    pub fn insert(&mut self, customer: Value, timestamp: Option<DateTime<FixedOffset>>) -> String {
        let mut body = match customer {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let id = match body.get("Id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                // Skip Ids that were given explicitly to other customers.
                while self.position(&self.next_id.to_string()).is_some() {
                    self.next_id += 1;
                }
                self.next_id.to_string()
            }
        };
        if let Ok(n) = id.parse::<u64>() {
            self.next_id = self.next_id.max(n.saturating_add(1));
        }
        body.insert("Id".into(), Value::String(id.clone()));

        let given = |key: &str| {
            body.get("MetaData")
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .and_then(parse_timestamp)
        };
        let created = timestamp
            .or_else(|| given("CreateTime"))
            .unwrap_or(self.now);
        let updated = timestamp
            .or_else(|| given("LastUpdatedTime"))
            .unwrap_or(created);
        let mut meta = match body.remove("MetaData") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        meta.insert("CreateTime".into(), entity_timestamp(created).into());
        meta.insert("LastUpdatedTime".into(), entity_timestamp(updated).into());
        body.insert("MetaData".into(), Value::Object(meta));

        body.entry("Active").or_insert(Value::Bool(true));
        body.entry("SyncToken")
            .or_insert_with(|| Value::String("0".into()));
        body.entry("domain")
            .or_insert_with(|| Value::String("QBO".into()));
        body.entry("sparse").or_insert(Value::Bool(false));
        if let Some(Value::Number(n)) = body.get("SyncToken") {
            let token = n.to_string();
            body.insert("SyncToken".into(), Value::String(token));
        }

        if let Some(pos) = self.position(&id) {
            self.customers.remove(pos);
        }
        self.tombstones.retain(|t| t.id != id);
        self.customers.push(Stored {
            id: id.clone(),
            body,
        });
        id
    }

    /// Applies `edit`, then does what QBO does on every change: keeps the Id, bumps
    /// SyncToken, stamps LastUpdatedTime with now (to the second) and rewrites the row
    /// at the end of the internal order.
    pub fn update(
        &mut self,
        id: &str,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Option<Value> {
        let pos = self.position(id)?;
        // Edit a copy: if the caller's closure panics, the table is left untouched.
        let mut stored = self.customers[pos].clone();
        let create_time = stored
            .body
            .get("MetaData")
            .and_then(|m| m.get("CreateTime"))
            .cloned();
        let token = stored
            .body
            .get("SyncToken")
            .and_then(|t| match t {
                Value::String(s) => s.parse::<u64>().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            })
            .unwrap_or(0);
        edit(&mut stored.body);

        let body = &mut stored.body;
        body.insert("Id".into(), Value::String(stored.id.clone()));
        body.insert("SyncToken".into(), Value::String((token + 1).to_string()));
        let mut meta = match body.remove("MetaData") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if let Some(created) = create_time {
            meta.insert("CreateTime".into(), created);
        }
        meta.insert("LastUpdatedTime".into(), entity_timestamp(self.now).into());
        body.insert("MetaData".into(), Value::Object(meta));
        if !matches!(body.get("Active"), Some(Value::Bool(_))) {
            body.insert("Active".into(), Value::Bool(true));
        }

        let snapshot = Value::Object(stored.body.clone());
        self.customers.remove(pos);
        self.customers.push(stored);
        Some(snapshot)
    }

    pub fn delete_outright(&mut self, id: &str) -> bool {
        let Some(pos) = self.position(id) else {
            return false;
        };
        let stored = self.customers.remove(pos);
        self.tombstones.push(Tombstone {
            id: stored.id,
            deleted_at: self.now,
        });
        true
    }

    pub fn all_sorted(&self) -> Vec<Value> {
        let mut all: Vec<&Stored> = self.customers.iter().collect();
        all.sort_by_key(|c| id_sort_key(&c.id));
        all.into_iter()
            .map(|c| Value::Object(c.body.clone()))
            .collect()
    }
}
