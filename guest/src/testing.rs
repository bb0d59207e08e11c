//! A test [`Platform`] for the sync algorithm, compiled natively: a fake
//! QuickBooks company behind the proxy and an in-memory store behind the
//! records, listing and checkpoint calls.
//!
//! The company answers the subset of QuickBooks the sync uses
//! (docs/quickbooks.md): the query endpoint with `Active IN (true, false)`
//! (without it, only active customers), `MetaData.LastUpdatedTime >= '…'`,
//! `ORDERBY MetaData.LastUpdatedTime`, a 1-based `STARTPOSITION` and a
//! `MAXRESULTS` of at most 1000, ties in table order, where an edited customer
//! moves to the end; and CDC, live objects first and tombstones last, cut at
//! 1000 objects, refusing a `changedSince` more than 30 days back. Its clock
//! is QuickBooks' `time`, and moves on a second with every request.
//!
//! The store keeps records, soft deletes and listings as docs/contract.md
//! says, records every call of a run as an [`Event`], and refuses (panics on)
//! a checkpoint that is ahead of what is stored: one before whose position
//! QuickBooks has a customer that the store does not have as it is now.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

use crate::customer::{parse_timestamp, Customer};
use crate::platform::{HttpResponse, Level, ListingError, Platform};
use crate::qbo::ApiRequest;
use crate::sync::{self, Checkpoint, Summary, SyncError};

pub const REALM_ID: &str = "9341453050804937";

/// What a test hook may answer instead of the company: `Ok` a response
/// (a fault, say), `Err` no response at all (the proxy's message).
pub type Answer = Option<Result<HttpResponse, String>>;

/// Called before each request of a run with its number (from 1) and the
/// company, which it may change: that is how edits happen between pages.
type Hook = Box<dyn FnMut(u32, &mut Company) -> Answer>;

/// A QuickBooks JSON `Fault` answer.
pub fn fault(status: u16, code: &str, message: &str, detail: &str) -> HttpResponse {
    let kind = if status >= 500 { "SystemFault" } else { "ValidationFault" };
    let body = json!({
        "Fault": {"Error": [{"Message": message, "Detail": detail, "code": code}], "type": kind},
    });
    HttpResponse { status, body: body.to_string().into_bytes(), attempts: 1 }
}

/// A customer as QuickBooks keeps it.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    /// Bumped by every edit, and part of `DisplayName`, so a stale copy in
    /// the store shows.
    version: u32,
    active: bool,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
}

impl Row {
    fn display_name(&self) -> String {
        format!("Customer {} v{}", self.id, self.version)
    }

    fn to_json(&self) -> Value {
        json!({
            "Id": self.id,
            "DisplayName": self.display_name(),
            "Active": self.active,
            "MetaData": {
                "CreateTime": qbo_text(self.created, SecondsFormat::Secs),
                "LastUpdatedTime": qbo_text(self.updated, SecondsFormat::Secs),
            },
        })
    }
}

/// An instant as QuickBooks writes it: in the company's time zone (US
/// Pacific in summer, as sandboxes answer), timestamps to the second and its
/// clock (`time`) to the millisecond.
fn qbo_text(instant: DateTime<Utc>, precision: SecondsFormat) -> String {
    let pacific = FixedOffset::west_opt(7 * 3600).expect("a valid offset");
    instant.with_timezone(&pacific).to_rfc3339_opts(precision, false)
}

/// The fake QuickBooks company.
pub struct Company {
    /// In table order: ties in `LastUpdatedTime` come back in this order,
    /// and an edit moves a row to the end.
    rows: Vec<Row>,
    /// Customers deleted outright (merged away), and when: only CDC tells.
    tombstones: Vec<(String, DateTime<Utc>)>,
    /// QuickBooks' clock, in whole seconds.
    now: DateTime<Utc>,
    next_id: u32,
}

impl Company {
    fn new() -> Self {
        Company {
            rows: Vec::new(),
            tombstones: Vec::new(),
            now: Utc.with_ymd_and_hms(2026, 5, 5, 12, 0, 0).unwrap(),
            next_id: 1,
        }
    }

    /// Adds `count` customers now, all sharing this second's
    /// `LastUpdatedTime` (a bulk import); returns their ids.
    pub fn add(&mut self, count: u32) -> Vec<String> {
        (0..count)
            .map(|_| {
                let id = self.next_id.to_string();
                self.next_id += 1;
                self.rows.push(Row { id: id.clone(), version: 1, active: true, created: self.now, updated: self.now });
                id
            })
            .collect()
    }

    /// Adds `count` customers a second apart; returns their ids.
    pub fn add_one_per_second(&mut self, count: u32) -> Vec<String> {
        (0..count)
            .flat_map(|_| {
                let id = self.add(1);
                self.advance(Duration::seconds(1));
                id
            })
            .collect()
    }

    /// Moves QuickBooks' clock on.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Edits a customer now: its `LastUpdatedTime` becomes now and it moves
    /// to the end of the table.
    pub fn edit(&mut self, id: &str) {
        let at = self.position_of(id);
        let mut row = self.rows.remove(at);
        row.version += 1;
        row.updated = self.now;
        self.rows.push(row);
    }

    /// Archives a customer ("delete" in QuickBooks' UI): an edit to `Active: false`.
    pub fn archive(&mut self, id: &str) {
        self.edit(id);
        self.rows.last_mut().expect("just edited").active = false;
    }

    /// Deletes a customer outright (merges it into another): the query no
    /// longer shows it, CDC shows a tombstone.
    pub fn merge_away(&mut self, id: &str) {
        let at = self.position_of(id);
        self.rows.remove(at);
        self.tombstones.push((id.to_owned(), self.now));
    }

    /// A customer's `LastUpdatedTime` as QuickBooks writes it.
    pub fn last_updated(&self, id: &str) -> String {
        qbo_text(self.rows[self.position_of(id)].updated, SecondsFormat::Secs)
    }

    fn position_of(&self, id: &str) -> usize {
        self.rows.iter().position(|r| r.id == id).unwrap_or_else(|| panic!("no customer {id} in the company"))
    }

    /// Answers a request as QuickBooks would, then moves the clock on.
    fn answer(&mut self, request: &ApiRequest) -> HttpResponse {
        // Without these, QuickBooks answers XML, or as an older API version.
        let header = (String::from("Accept"), String::from("application/json"));
        assert!(request.headers.contains(&header), "{request:?}");
        assert_eq!(param(request, "minorversion"), Some("75"), "{request:?}");

        let prefix = format!("/v3/company/{REALM_ID}/");
        let answer = match request.path.strip_prefix(&prefix) {
            Some("query") => self.query(param(request, "query").unwrap_or("")),
            Some("cdc") => self.cdc(param(request, "changedSince").unwrap_or("")),
            _ => Err(format!("no such endpoint: {}", request.path)),
        };
        let time = qbo_text(self.now, SecondsFormat::Millis);
        self.now += Duration::seconds(1);
        match answer {
            Ok(mut body) => {
                body["time"] = json!(time);
                HttpResponse { status: 200, body: body.to_string().into_bytes(), attempts: 1 }
            }
            Err(detail) => fault(400, "4001", "Invalid query", &detail),
        }
    }

    /// `SELECT * FROM Customer [WHERE <conditions>] ORDERBY
    /// MetaData.LastUpdatedTime STARTPOSITION n MAXRESULTS m`, the form the
    /// sync sends; anything else is refused.
    fn query(&self, sql: &str) -> Result<Value, String> {
        let refuse = || format!("not a query this fake understands: {sql}");
        let rest = sql.strip_prefix("SELECT * FROM Customer ").ok_or_else(refuse)?;
        let (conditions, order) = match rest.strip_prefix("WHERE ") {
            Some(rest) => rest.split_once(" ORDERBY ").ok_or_else(refuse)?,
            None => ("", rest.strip_prefix("ORDERBY ").ok_or_else(refuse)?),
        };
        // Without a condition on `Active`, only active customers.
        let mut archived_too = false;
        let mut since = None;
        for condition in conditions.split(" AND ").filter(|c| !c.is_empty()) {
            if condition == "Active IN (true, false)" {
                archived_too = true;
            } else if let Some(literal) = condition.strip_prefix("MetaData.LastUpdatedTime >= ") {
                let text = literal.strip_prefix('\'').and_then(|l| l.strip_suffix('\''));
                since = Some(text.and_then(parse_timestamp).ok_or_else(refuse)?);
            } else {
                return Err(refuse());
            }
        }
        let words: Vec<&str> = order.split(' ').collect();
        let ["MetaData.LastUpdatedTime", "STARTPOSITION", start, "MAXRESULTS", max] = words[..] else {
            return Err(refuse());
        };
        let start: usize = start.parse().map_err(|_| refuse())?;
        let max: usize = max.parse().map_err(|_| refuse())?;
        if start == 0 || max > 1000 {
            return Err(refuse());
        }

        let mut matching: Vec<&Row> =
            self.rows.iter().filter(|r| (archived_too || r.active) && since.is_none_or(|s| r.updated >= s)).collect();
        // A stable sort: ties stay in table order.
        matching.sort_by_key(|r| r.updated);
        let page: Vec<Value> = matching.into_iter().skip(start - 1).take(max).map(Row::to_json).collect();
        Ok(if page.is_empty() {
            json!({"QueryResponse": {}})
        } else {
            json!({"QueryResponse": {"Customer": page, "startPosition": start, "maxResults": page.len()}})
        })
    }

    /// Customers changed since `changed_since`, oldest first, then the
    /// tombstones, all cut at 1000 objects: the deletions are what gets cut.
    fn cdc(&self, changed_since: &str) -> Result<Value, String> {
        let since = parse_timestamp(changed_since)
            .ok_or_else(|| format!("changedSince `{changed_since}` is not a timestamp"))?;
        if self.now - since > Duration::days(30) {
            return Err(format!("changedSince `{changed_since}` is more than 30 days in the past"));
        }
        let mut changed: Vec<&Row> = self.rows.iter().filter(|r| r.updated >= since).collect();
        changed.sort_by_key(|r| r.updated);
        let tombstones = self.tombstones.iter().filter(|(_, at)| *at >= since);
        let objects: Vec<Value> = changed
            .into_iter()
            .map(Row::to_json)
            .chain(tombstones.map(|(id, at)| {
                let updated = qbo_text(*at, SecondsFormat::Secs);
                json!({"Id": id, "status": "Deleted", "MetaData": {"LastUpdatedTime": updated}})
            }))
            .take(1000)
            .collect();
        Ok(json!({"CDCResponse": [{"QueryResponse": [{"Customer": objects}]}]}))
    }
}

fn param<'r>(request: &'r ApiRequest, name: &str) -> Option<&'r str> {
    request.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// One call the sync made, in order.
#[derive(Debug, Clone)]
pub enum Event {
    Request(ApiRequest),
    Saved(Vec<String>),
    Deleted(Vec<String>),
    ListingBegun(u64),
    ListingEnded { listing: u64, deleted: u32 },
    Checkpoint(Checkpoint),
    Log(String),
}

/// A stored record: the last payload saved, and whether it is deleted.
#[derive(Debug, Clone)]
struct Stored {
    customer: Customer,
    deleted: bool,
}

/// The platform: the company, the store, and what the sync did.
pub struct TestPlatform {
    pub company: Company,
    records: BTreeMap<String, Stored>,
    /// The open listing and the ids it saw.
    listing: Option<(u64, BTreeSet<String>)>,
    last_listing: u64,
    checkpoint: Option<String>,
    config: BTreeMap<String, String>,
    hook: Option<Hook>,
    requests: u32,
    events: Vec<Event>,
}

/// What one run did: its result and every call it made.
pub struct Outcome {
    pub result: Result<Summary, SyncError>,
    pub events: Vec<Event>,
}

impl TestPlatform {
    pub fn new() -> Self {
        TestPlatform {
            company: Company::new(),
            records: BTreeMap::new(),
            listing: None,
            last_listing: 0,
            checkpoint: None,
            config: BTreeMap::from([("realmId".to_owned(), REALM_ID.to_owned())]),
            hook: None,
            requests: 0,
            events: Vec::new(),
        }
    }

    pub fn set_config(&mut self, key: &str, value: &str) {
        self.config.insert(key.to_owned(), value.to_owned());
    }

    /// Calls `hook` before every request of the next run (that run only).
    pub fn before_each_request(&mut self, hook: impl FnMut(u32, &mut Company) -> Answer + 'static) {
        self.hook = Some(Box::new(hook));
    }

    /// Runs the sync once with pages of `page_size`.
    pub fn run(&mut self, page_size: u32) -> Outcome {
        self.requests = 0;
        self.events.clear();
        let result = sync::run_with_page_size(self, page_size);
        self.hook = None;
        Outcome { result, events: std::mem::take(&mut self.events) }
    }

    /// The stored checkpoint.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let text = self.checkpoint.as_ref()?;
        Some(serde_json::from_str(text).expect("the stored checkpoint reads"))
    }

    /// Another writer begins a listing, which abandons the open one.
    pub fn another_writer_begins_a_listing(&mut self) {
        self.open_listing();
    }

    /// Opens a new listing, abandoning the open one: what it saw no longer counts.
    fn open_listing(&mut self) -> u64 {
        self.last_listing += 1;
        self.listing = Some((self.last_listing, BTreeSet::new()));
        self.last_listing
    }

    /// Whether a record is stored and soft-deleted (its payload kept).
    pub fn is_soft_deleted(&self, id: &str) -> bool {
        self.records.get(id).is_some_and(|r| r.deleted)
    }

    /// How the store differs from the company; empty when the sync is caught up.
    pub fn store_differences(&self) -> Vec<String> {
        let mut differences = self.not_current(|_| true);
        let active: BTreeSet<&str> = self.company.rows.iter().filter(|r| r.active).map(|r| r.id.as_str()).collect();
        for (id, stored) in &self.records {
            if !stored.deleted && !active.contains(id.as_str()) {
                differences.push(format!("customer {id} is live in the store, not in QuickBooks"));
            }
        }
        differences
    }

    /// Customers QuickBooks has before the checkpoint's position that the
    /// store does not have as they are now. The next run starts at that
    /// position, so it would never read them again.
    pub fn not_current_before(&self, checkpoint: &Checkpoint) -> Vec<String> {
        match checkpoint.position.since.as_deref() {
            None => Vec::new(),
            Some(since) => {
                let since = parse_timestamp(since).expect("the checkpoint's since reads");
                self.not_current(|row| row.updated < since)
            }
        }
    }

    /// The customers chosen by `which` whose stored record is not current:
    /// active ones must be live with their last edit, archived ones not live.
    fn not_current(&self, which: impl Fn(&Row) -> bool) -> Vec<String> {
        let mut differences = Vec::new();
        for row in self.company.rows.iter().filter(|r| which(r)) {
            let live = self.records.get(&row.id).filter(|r| !r.deleted);
            match (row.active, live) {
                (true, None) => differences.push(format!("customer {} is not stored", row.id)),
                (true, Some(stored)) if stored.customer.display_name != Some(row.display_name()) => {
                    differences.push(format!(
                        "customer {} is stored as {:?}, QuickBooks has {}",
                        row.id,
                        stored.customer.display_name,
                        row.display_name()
                    ))
                }
                (false, Some(_)) => differences.push(format!("customer {} is archived but live", row.id)),
                _ => {}
            }
        }
        differences
    }
}

impl Outcome {
    pub fn summary(&self) -> &Summary {
        match &self.result {
            Ok(summary) => summary,
            Err(error) => panic!("the run failed: {error}"),
        }
    }

    pub fn error(&self) -> &SyncError {
        match &self.result {
            Ok(summary) => panic!("the run succeeded: {summary:?}"),
            Err(error) => error,
        }
    }

    /// The SQL text of each query request, in order.
    pub fn queries(&self) -> Vec<&str> {
        self.requests().filter_map(|r| param(r, "query")).collect()
    }

    pub fn cdc_requests(&self) -> usize {
        self.requests().filter(|r| r.path.ends_with("/cdc")).count()
    }

    /// Every id handed to `save`.
    pub fn saved_ids(&self) -> BTreeSet<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Saved(ids) => Some(ids),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Every id handed to `delete`.
    pub fn deleted_ids(&self) -> BTreeSet<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Deleted(ids) => Some(ids),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
            .collect()
    }

    pub fn listings_begun(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ListingBegun(listing) => Some(*listing),
                _ => None,
            })
            .collect()
    }

    /// `(listing, records it deleted)` for each listing ended.
    pub fn listings_ended(&self) -> Vec<(u64, u32)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ListingEnded { listing, deleted } => Some((*listing, *deleted)),
                _ => None,
            })
            .collect()
    }

    pub fn checkpoints(&self) -> Vec<&Checkpoint> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Checkpoint(checkpoint) => Some(checkpoint),
                _ => None,
            })
            .collect()
    }

    /// The messages logged, in order.
    pub fn logs(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log(message) => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether a message containing `text` was logged.
    pub fn logged(&self, text: &str) -> bool {
        self.logs().iter().any(|message| message.contains(text))
    }

    fn requests(&self) -> impl Iterator<Item = &ApiRequest> {
        self.events.iter().filter_map(|e| match e {
            Event::Request(request) => Some(request),
            _ => None,
        })
    }
}

impl Platform for TestPlatform {
    fn get(&mut self, request: &ApiRequest) -> Result<HttpResponse, String> {
        self.events.push(Event::Request(request.clone()));
        self.requests += 1;
        if let Some(hook) = self.hook.as_mut() {
            if let Some(answer) = hook(self.requests, &mut self.company) {
                return answer;
            }
        }
        Ok(self.company.answer(request))
    }

    fn save(&mut self, model: &str, records: Vec<String>) -> Result<(), String> {
        assert_eq!(model, "Customer");
        let mut ids = Vec::new();
        for text in records {
            let customer: Customer = serde_json::from_str(&text).expect("a saved record is a Customer");
            if let Some((_, seen)) = self.listing.as_mut() {
                seen.insert(customer.id.clone());
            }
            ids.push(customer.id.clone());
            let id = customer.id.clone();
            let stored = Stored { customer, deleted: false };
            self.records.insert(id, stored);
        }
        self.events.push(Event::Saved(ids));
        Ok(())
    }

    fn delete(&mut self, model: &str, ids: Vec<String>) -> Result<(), String> {
        assert_eq!(model, "Customer");
        for id in &ids {
            if let Some(stored) = self.records.get_mut(id) {
                stored.deleted = true;
            }
        }
        self.events.push(Event::Deleted(ids));
        Ok(())
    }

    fn begin_listing(&mut self, model: &str) -> Result<u64, String> {
        assert_eq!(model, "Customer");
        let listing = self.open_listing();
        self.events.push(Event::ListingBegun(listing));
        Ok(listing)
    }

    fn current_listing(&mut self, _model: &str) -> Result<Option<u64>, String> {
        Ok(self.listing.as_ref().map(|(listing, _)| *listing))
    }

    fn end_listing(&mut self, _model: &str, listing: u64) -> Result<u32, ListingError> {
        let seen = match self.listing.take() {
            Some((open, seen)) if open == listing => seen,
            other => {
                self.listing = other;
                return Err(ListingError::NotOpen(format!("listing {listing} is not open")));
            }
        };
        let mut deleted = 0;
        for (id, stored) in &mut self.records {
            if !stored.deleted && !seen.contains(id) {
                stored.deleted = true;
                deleted += 1;
            }
        }
        self.events.push(Event::ListingEnded { listing, deleted });
        Ok(deleted)
    }

    fn load_checkpoint(&mut self) -> Result<Option<String>, String> {
        Ok(self.checkpoint.clone())
    }

    fn save_checkpoint(&mut self, value: &str) -> Result<(), String> {
        let checkpoint: Checkpoint = serde_json::from_str(value).expect("a checkpoint reads");
        // Never ahead of the store (docs/sync.md, "Checkpoints"): whatever a
        // run does, a crash right after this call must lose nothing.
        let behind = self.not_current_before(&checkpoint);
        assert!(behind.is_empty(), "checkpoint {value} is ahead of the store: {behind:?}");
        self.checkpoint = Some(value.to_owned());
        self.events.push(Event::Checkpoint(checkpoint));
        Ok(())
    }

    fn config(&mut self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    fn log(&mut self, _level: Level, message: &str) {
        self.events.push(Event::Log(message.to_owned()));
    }
}
