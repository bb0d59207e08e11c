//! The fake company's data: customers indexed as a database would index them,
//! tombstones, and the fake clock.
//!
//! Customers are kept as the JSON text the API returns, plus what queries and
//! paging need without parsing it: the Id, `Active`, the instant of
//! `MetaData.LastUpdatedTime` and a sequence number. The sequence number is
//! QBO's *internal* order (a heap: an updated row is rewritten at the end),
//! which is what ties and queries without ORDERBY come back in. Indexes by Id,
//! by sequence and by (LastUpdatedTime, sequence) make seeding linear and each
//! page of the sync's queries logarithmic plus the page.
//!
//! Everything here is plain data guarded by one mutex in [`crate::FakeQbo`];
//! nothing in this module knows about HTTP.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::America::Los_Angeles;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Formats an instant in the company's time zone, US Pacific **with daylight
/// saving** (`-07:00` in summer, `-08:00` in winter), as QBO does.
fn in_company_zone(t: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let local = t.with_timezone(&Los_Angeles);
    local.fixed_offset()
}

/// The default fake "now": 2026-05-05T05:00:00-07:00, a little after the recorded
/// fixture was taken.
pub fn default_now() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-05-05T05:00:00-07:00").expect("constant parses")
}

/// Formats an entity timestamp the way QBO does: one-second resolution, the
/// company's offset at that instant.
pub(crate) fn entity_timestamp(t: DateTime<FixedOffset>) -> String {
    let t = in_company_zone(t);
    let t = t.with_nanosecond(0).unwrap_or(t);
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Formats the `time` field of a response: milliseconds, the company's offset.
pub(crate) fn response_time(t: DateTime<FixedOffset>) -> String {
    in_company_zone(t).to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Parses a timestamp the way QBO accepts it in queries and `changedSince`:
/// RFC 3339 with an offset or `Z`, a date-time without offset (taken in the
/// company's zone; in the hour the fall-back repeats, the earlier one), or a
/// plain date (midnight in the company's zone).
pub fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t);
    }
    let local =
        |naive: chrono::NaiveDateTime| Los_Angeles.from_local_datetime(&naive).earliest().map(|t| t.fixed_offset());
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return local(naive);
        }
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    local(date.and_hms_opt(0, 0, 0)?)
}

/// Seconds since the epoch: the key the LastUpdatedTime index sorts by (an
/// instant, never the text: `01:30-08:00` is after `01:59-07:00`).
fn instant(t: DateTime<FixedOffset>) -> i64 {
    t.with_timezone(&Utc).timestamp()
}

/// One stored customer.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: String,
    /// Position in the internal order.
    pub seq: u64,
    pub active: bool,
    /// `MetaData.LastUpdatedTime` as an instant (seconds).
    pub updated: i64,
    /// The object exactly as the API returns it.
    pub json: String,
}

impl Stored {
    pub fn body(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.json) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
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
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub now: DateTime<FixedOffset>,
    by_id: HashMap<String, Stored>,
    /// Internal order: sequence → Id.
    by_seq: BTreeMap<u64, String>,
    /// (LastUpdatedTime instant, sequence) → Id: ties in internal order.
    by_updated: BTreeMap<(i64, u64), String>,
    pub tombstones: Vec<Tombstone>,
    pub next_id: u64,
    next_seq: u64,
}

impl Store {
    pub fn new() -> Self {
        Store {
            now: default_now(),
            by_id: HashMap::new(),
            by_seq: BTreeMap::new(),
            by_updated: BTreeMap::new(),
            tombstones: Vec::new(),
            next_id: 1,
            next_seq: 0,
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.checked_add_signed(by).unwrap_or(self.now);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn get(&self, id: &str) -> Option<&Stored> {
        self.by_id.get(id)
    }

    /// Customers in internal order.
    pub fn in_internal_order(&self) -> impl Iterator<Item = &Stored> + '_ {
        self.by_seq.values().map(move |id| &self.by_id[id])
    }

    /// Customers with LastUpdatedTime at or after `from` (all if `None`), in
    /// LastUpdatedTime order, ties in internal order.
    pub fn updated_since(&self, from: Option<DateTime<FixedOffset>>) -> impl Iterator<Item = &Stored> + '_ {
        let lower = from.map(instant).unwrap_or(i64::MIN);
        self.by_updated.range((lower, 0)..).map(move |(_, id)| &self.by_id[id])
    }

    fn remove(&mut self, id: &str) -> Option<Stored> {
        let stored = self.by_id.remove(id)?;
        self.by_seq.remove(&stored.seq);
        self.by_updated.remove(&(stored.updated, stored.seq));
        Some(stored)
    }

    /// Writes a customer at the end of the internal order.
    fn put(&mut self, id: String, body: Map<String, Value>) {
        let updated = body
            .get("MetaData")
            .and_then(|m| m.get("LastUpdatedTime"))
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
            .map(instant)
            .unwrap_or(i64::MIN);
        let active = body.get("Active").and_then(Value::as_bool).unwrap_or(true);
        self.put_parts(id, Value::Object(body).to_string(), updated, active);
    }

    fn put_parts(&mut self, id: String, json: String, updated: i64, active: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_seq.insert(seq, id.clone());
        self.by_updated.insert((updated, seq), id.clone());
        self.by_id.insert(id.clone(), Stored { id, seq, active, updated, json });
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
                while self.by_id.contains_key(&self.next_id.to_string()) {
                    self.next_id += 1;
                }
                self.next_id.to_string()
            }
        };
        if let Ok(n) = id.parse::<u64>() {
            self.next_id = self.next_id.max(n.saturating_add(1));
        }
        body.insert("Id".into(), Value::String(id.clone()));

        let given =
            |key: &str| body.get("MetaData").and_then(|m| m.get(key)).and_then(Value::as_str).and_then(parse_timestamp);
        let created = timestamp.or_else(|| given("CreateTime")).unwrap_or(self.now);
        let updated = timestamp.or_else(|| given("LastUpdatedTime")).unwrap_or(created);
        let mut meta = match body.remove("MetaData") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        meta.insert("CreateTime".into(), entity_timestamp(created).into());
        meta.insert("LastUpdatedTime".into(), entity_timestamp(updated).into());
        body.insert("MetaData".into(), Value::Object(meta));

        body.entry("Active").or_insert(Value::Bool(true));
        body.entry("SyncToken").or_insert_with(|| Value::String("0".into()));
        body.entry("domain").or_insert_with(|| Value::String("QBO".into()));
        body.entry("sparse").or_insert(Value::Bool(false));
        if let Some(Value::Number(n)) = body.get("SyncToken") {
            let token = n.to_string();
            body.insert("SyncToken".into(), Value::String(token));
        }

        self.remove(&id);
        self.tombstones.retain(|t| t.id != id);
        self.put(id.clone(), body);
        id
    }

    /// Inserts a new customer with a fresh Id and these times, as seeding does:
    /// what [`Store::insert`] does, without reading back what it just wrote.
    pub fn insert_new(
        &mut self,
        mut body: Map<String, Value>,
        created: DateTime<FixedOffset>,
        updated: DateTime<FixedOffset>,
    ) -> String {
        let mut id = self.next_id.to_string();
        while self.by_id.contains_key(&id) {
            self.next_id += 1;
            id = self.next_id.to_string();
        }
        self.next_id += 1;
        body.insert("Id".into(), Value::String(id.clone()));
        let mut meta = Map::new();
        meta.insert("CreateTime".into(), entity_timestamp(created).into());
        meta.insert("LastUpdatedTime".into(), entity_timestamp(updated).into());
        body.insert("MetaData".into(), Value::Object(meta));
        body.entry("Active").or_insert(Value::Bool(true));
        body.insert("SyncToken".into(), Value::String("0".into()));
        body.insert("domain".into(), Value::String("QBO".into()));
        body.insert("sparse".into(), Value::Bool(false));
        let active = body.get("Active").and_then(Value::as_bool).unwrap_or(true);
        self.put_parts(id.clone(), Value::Object(body).to_string(), instant(updated), active);
        id
    }

    /// Applies `edit`, then does what QBO does on every change: keeps the Id, bumps
    /// SyncToken, stamps LastUpdatedTime with now (to the second) and rewrites the row
    /// at the end of the internal order.
    pub fn update(&mut self, id: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> Option<Value> {
        // Edit a copy: if the caller's closure panics, the table is left untouched.
        let mut body = self.by_id.get(id)?.body();
        let create_time = body.get("MetaData").and_then(|m| m.get("CreateTime")).cloned();
        let token = body
            .get("SyncToken")
            .and_then(|t| match t {
                Value::String(s) => s.parse::<u64>().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            })
            .unwrap_or(0);
        edit(&mut body);

        body.insert("Id".into(), Value::String(id.to_owned()));
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
        let snapshot = Value::Object(body.clone());
        self.remove(id);
        self.put(id.to_owned(), body);
        Some(snapshot)
    }

    pub fn delete_outright(&mut self, id: &str) -> bool {
        let Some(stored) = self.remove(id) else {
            return false;
        };
        self.tombstones.push(Tombstone { id: stored.id, deleted_at: self.now });
        true
    }

    pub fn all_sorted(&self) -> Vec<Value> {
        let mut all: Vec<&Stored> = self.by_id.values().collect();
        all.sort_by_key(|c| id_sort_key(&c.id));
        all.into_iter().map(|c| Value::Object(c.body())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_pacific_daylight_saving() {
        // 2026-11-01 09:30 UTC is 01:30 PST (after the fall-back); an hour
        // earlier, 01:30 PDT.
        let after = DateTime::parse_from_rfc3339("2026-11-01T09:30:00Z").unwrap();
        assert_eq!(entity_timestamp(after), "2026-11-01T01:30:00-08:00");
        assert_eq!(entity_timestamp(after - Duration::hours(1)), "2026-11-01T01:30:00-07:00");
        assert_eq!(
            entity_timestamp(DateTime::parse_from_rfc3339("2026-07-01T12:00:00Z").unwrap()),
            "2026-07-01T05:00:00-07:00"
        );
        assert_eq!(
            entity_timestamp(DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap()),
            "2026-12-01T04:00:00-08:00"
        );
        // A local time without offset in the repeated hour is the earlier one.
        assert_eq!(parse_timestamp("2026-11-01T01:30:00").unwrap(), after - Duration::hours(1));
    }

    #[test]
    fn the_updated_index_orders_instants_not_texts() {
        let mut store = Store::new();
        let pdt = DateTime::parse_from_rfc3339("2026-11-01T01:59:00-07:00").unwrap();
        let pst = DateTime::parse_from_rfc3339("2026-11-01T01:10:00-08:00").unwrap();
        store.insert(serde_json::json!({"Id": "later"}), Some(pst));
        store.insert(serde_json::json!({"Id": "earlier"}), Some(pdt));
        let order: Vec<&str> = store.updated_since(None).map(|c| c.id.as_str()).collect();
        assert_eq!(order, vec!["earlier", "later"]);
        let since_pst: Vec<&str> = store.updated_since(Some(pst)).map(|c| c.id.as_str()).collect();
        assert_eq!(since_pst, vec!["later"]);
    }
}
