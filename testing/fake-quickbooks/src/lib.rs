//! A faithful in-process fake of the QuickBooks Online (QBO) Customer API.
//!
//! It exists so the sync can be tested end to end against the *inconvenient* parts of
//! QBO, not an idealized API:
//!
//! * timestamps have one-second resolution, so many customers share a
//!   `MetaData.LastUpdatedTime`;
//! * rows with equal sort keys come back in the table's internal order, and an
//!   updated customer moves to the **end** of that order (like a heap), so an offset
//!   into a group of equal timestamps shifts when a member of the group is edited;
//! * `SELECT * FROM Customer` silently hides archived (inactive) customers;
//! * `MAXRESULTS` is capped at 1000, `STARTPOSITION` is 1-based, there is no `OR`;
//! * customers deleted outright (merged away) vanish from queries and only show up
//!   in change data capture (CDC) as tombstones, and CDC only looks back 30 days;
//! * without `Accept: application/json` the answer is XML.
//!
//! # Using it
//!
//! ```no_run
//! use fake_qbo::{FakeQbo, Injected, RequestKind};
//!
//! let fake = FakeQbo::new("9341456", "test-token");
//! fake.seed_recorded();
//! let running = fake.start().unwrap();
//! let _base = running.base_url(); // "http://127.0.0.1:PORT", no trailing slash
//! // Throttle the second query, and edit a customer right before the third.
//! fake.on_request(|req, fake| match (req.kind, req.n) {
//!     (RequestKind::Query, 2) => Some(Injected::throttle(1)),
//!     (RequestKind::Query, 3) => {
//!         fake.update("2", |c| { c.insert("Notes".into(), "edited".into()); });
//!         None
//!     }
//!     _ => None,
//! });
//! ```
//!
//! # HTTP surface
//!
//! * `GET /v3/company/{realm}/query?query=...` (also `POST` with the query as body)
//! * `GET /v3/company/{realm}/cdc?entities=Customer&changedSince=...`
//! * `GET /v3/company/{realm}/customer/{id}` (read one; archived ones too)
//! * `POST /oauth2/v1/tokens/bearer`: Intuit's token endpoint (see [`FakeQbo::enable_oauth`]):
//!   access tokens that expire, refresh tokens that rotate on every refresh,
//!   `invalid_grant` for revoked or superseded ones
//! * `/_fake/...`: the admin API for out-of-process users, see [`admin`].
//!
//! Every `/v3` request needs `Authorization: Bearer <token>` — the fixed token given to
//! [`FakeQbo::new`], or an unexpired access token from the token endpoint — (else 401) and the
//! realm given to [`FakeQbo::new`] (else **403** `AuthorizationFault`, code 3100,
//! as QBO answers for a company the token is not authorized for).
//!
//! # Fault codes
//!
//! | status | body | when |
//! |---|---|---|
//! | 400 | `ValidationFault`, code `4000` "Error parsing query" | syntax error, `OR`, missing query |
//! | 400 | `ValidationFault`, code `4001` "Invalid query" | unknown property or entity, `MAXRESULTS` > 1000, bad literal, bad/too old `changedSince` |
//! | 400 | `ValidationFault`, code `610` "Object Not Found" | read of an unknown / deleted customer |
//! | 401 | lower-case `fault`, type `AUTHENTICATION`, code `3200` | missing or wrong bearer token |
//! | 403 | `AuthorizationFault`, code `3100` | unknown realm id |
//! | 429 | lower-case `fault`, type `SERVICE`, code `3001` + `Retry-After` | injected ([`Injected::Throttle`]) |
//! | 429 | XML `Fault` type `SERVICE`, code `3001`, **no** `Retry-After`, whatever `Accept` says | as real QBO throttles: over the quota set by [`FakeQbo::set_quota`], or injected ([`Injected::ThrottleXml`], [`FakeQbo::throttle_for`]) |
//! | 500/503 | `SystemFault`, code `10000` | injected only |
//!
//! # Clock
//!
//! The fake clock starts at 2026-05-05T05:00:00-07:00 and is **frozen** unless a test
//! calls [`FakeQbo::advance`] (by seconds or by weeks) or [`FakeQbo::set_now`]. Every
//! change stamps `LastUpdatedTime` with the clock truncated to the second; the `time`
//! field of every response is the clock with milliseconds. Both are in the company's
//! time zone, US Pacific **with daylight saving**: `-07:00` in summer, `-08:00` in
//! winter, so around the November fall-back `01:30-07:00` is followed an hour later by
//! `01:30-08:00`.

pub mod admin;
pub mod companies;
mod notify;
mod oauth;
mod query;
mod seed;
mod server;
mod store;
mod xml;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, FixedOffset};
use serde::Serialize;
use serde_json::{Map, Value};

pub use companies::FakeCompanies;
pub use notify::{intuit_signature, NotificationFormat, Operation};
pub use query::{QueryError, DEFAULT_MAX_RESULTS, MAX_RESULTS_LIMIT};
pub use seed::{GenerateOptions, RECORDED_FIXTURE};
pub use server::RunningFake;
pub use store::{default_now, parse_timestamp};

use store::Store;

/// Locks a mutex, shrugging off poisoning: a panicking test hook must not turn every
/// later request into a second panic. The data is still consistent because every
/// mutation in this crate completes before anything that could panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a request to the fake was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Query,
    Cdc,
    Other,
}

/// What a hook sees about a request, before it is answered.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// 1-based number among `/v3` requests since the last [`FakeQbo::reset_requests`].
    pub n: usize,
    pub kind: RequestKind,
    pub method: String,
    pub path: String,
    /// The decoded query text (`query` parameter or POST body) for query requests.
    pub query: Option<String>,
    /// The decoded `changedSince` parameter for CDC requests.
    pub changed_since: Option<String>,
    /// The raw URL query string.
    pub raw_query: String,
}

/// One answered `/v3` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub n: usize,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub kind: RequestKind,
    /// HTTP status returned (0 while the request is still being answered).
    pub status: u16,
}

/// An answer a hook substitutes for the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// Any status, headers and body, verbatim.
    Status { status: u16, headers: Vec<(String, String)>, body: String },
    /// 429 with `Retry-After` and QBO's `ThrottleExceeded` fault.
    Throttle { retry_after_secs: u64 },
    /// 429 as real QuickBooks sends it: no `Retry-After`, an XML fault (code
    /// 3001, `ThrottleExceeded`) even when JSON was asked for.
    ThrottleXml,
    /// 503 `SystemFault`.
    Unavailable,
    /// 500 `SystemFault`.
    ServerError,
    /// 200 whose body is the first half of the real JSON answer.
    TruncatedJson,
    /// 400 `ValidationFault` with the given code, message and detail.
    Fault { code: String, message: String, detail: String },
}

impl Injected {
    pub fn throttle(retry_after_secs: u64) -> Self {
        Injected::Throttle { retry_after_secs }
    }
    pub fn throttle_xml() -> Self {
        Injected::ThrottleXml
    }
    pub fn unavailable() -> Self {
        Injected::Unavailable
    }
    pub fn server_error() -> Self {
        Injected::ServerError
    }
    pub fn truncated_json() -> Self {
        Injected::TruncatedJson
    }
    pub fn fault(code: &str, message: &str, detail: &str) -> Self {
        Injected::Fault { code: code.into(), message: message.into(), detail: detail.into() }
    }
}

type Hook = Box<dyn FnMut(&RequestInfo, &FakeQbo) -> Option<Injected> + Send + 'static>;

/// An injection scripted through the admin API (for users who cannot pass closures).
#[derive(Debug, Clone)]
pub(crate) struct Scripted {
    pub kind: Option<RequestKind>,
    pub at_request: Option<usize>,
    pub injected: Injected,
    pub remaining: u32,
}

#[derive(Default)]
struct RequestLog {
    records: Vec<RequestRecord>,
}

struct Inner {
    realm_id: String,
    token: String,
    store: Mutex<Store>,
    log: Mutex<RequestLog>,
    hooks: Mutex<Vec<Hook>>,
    /// Serializes hook runs so concurrent requests still see every hook.
    hook_turn: Mutex<()>,
    /// Bumped by `clear_hooks`, so hooks taken out for a run are not put back.
    hook_generation: AtomicU64,
    scripted: Mutex<Vec<Scripted>>,
    quota: Mutex<Option<Quota>>,
    oauth: Mutex<Option<oauth::OAuth>>,
    token_requests: std::sync::atomic::AtomicUsize,
}

/// A request quota, enforced on a sliding window of wall time.
struct Quota {
    requests: usize,
    window: std::time::Duration,
    recent: std::collections::VecDeque<std::time::Instant>,
}

/// Handle to one fake QBO company. Cloning is cheap and shares the state.
#[derive(Clone)]
pub struct FakeQbo {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeQbo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeQbo").field("realm_id", &self.inner.realm_id).finish_non_exhaustive()
    }
}

impl FakeQbo {
    /// An empty company `realm_id` that accepts `Authorization: Bearer <token>`.
    pub fn new(realm_id: &str, token: &str) -> Self {
        FakeQbo {
            inner: Arc::new(Inner {
                realm_id: realm_id.to_owned(),
                token: token.to_owned(),
                store: Mutex::new(Store::new()),
                log: Mutex::new(RequestLog::default()),
                hooks: Mutex::new(Vec::new()),
                hook_turn: Mutex::new(()),
                hook_generation: AtomicU64::new(0),
                scripted: Mutex::new(Vec::new()),
                quota: Mutex::new(None),
                oauth: Mutex::new(None),
                token_requests: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    pub fn realm_id(&self) -> &str {
        &self.inner.realm_id
    }

    pub fn token(&self) -> &str {
        &self.inner.token
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.inner.store)
    }

    /// Makes this company's customers and clock a copy of `other`'s.
    pub(crate) fn copy_customers_from(&self, other: &FakeQbo) {
        let copy = other.store().clone();
        *self.store() = copy;
    }

    // --- clock ---------------------------------------------------------------

    /// The fake clock's now (frozen unless advanced).
    pub fn now(&self) -> DateTime<FixedOffset> {
        self.store().now
    }

    pub fn set_now(&self, now: DateTime<FixedOffset>) {
        self.store().now = now;
    }

    pub fn advance(&self, by: Duration) {
        self.store().advance(by);
    }

    // --- data ------------------------------------------------------------------

    /// Inserts a customer as QBO would store it and returns its Id.
    ///
    /// Fills in what is missing: the next numeric `Id`, `MetaData.CreateTime` and
    /// `LastUpdatedTime` (now, or the given ones normalized to seconds in US Pacific time),
    /// `Active: true`, `SyncToken: "0"`, `domain`, `sparse`. Inserting an existing Id
    /// replaces that customer (and moves it to the end of the internal order).
    pub fn insert(&self, customer: Value) -> String {
        self.store().insert(customer, None)
    }

    /// Like [`insert`](Self::insert) but with both MetaData times set to `at`, for
    /// bulk seeding many customers that share one timestamp.
    pub fn insert_with_timestamp(&self, customer: Value, at: DateTime<FixedOffset>) -> String {
        self.store().insert(customer, Some(at))
    }

    /// Edits a customer as a QBO update: after `edit` runs, `Id` is restored,
    /// `SyncToken` incremented, `LastUpdatedTime` set to now and the customer moved to
    /// the end of the internal order. Returns the updated customer, `None` if unknown.
    pub fn update(&self, id: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> Option<Value> {
        self.store().update(id, edit)
    }

    /// Makes a customer inactive (QBO's "delete" of a name-list entity).
    pub fn archive(&self, id: &str) -> Option<Value> {
        self.update(id, |c| {
            c.insert("Active".into(), Value::Bool(false));
        })
    }

    pub fn reactivate(&self, id: &str) -> Option<Value> {
        self.update(id, |c| {
            c.insert("Active".into(), Value::Bool(true));
        })
    }

    /// Removes a customer for good (as a merge does): it never appears in a query
    /// again and CDC reports a `status: "Deleted"` tombstone stamped now.
    pub fn delete_outright(&self, id: &str) -> bool {
        self.store().delete_outright(id)
    }

    pub fn get(&self, id: &str) -> Option<Value> {
        self.store().get(id).map(|c| Value::Object(c.body()))
    }

    /// The Ids of every customer not deleted outright, sorted by numeric Id
    /// (cheap: nothing is parsed).
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.store().in_internal_order().map(|c| c.id.clone()).collect();
        ids.sort_by_key(|id| store::id_sort_key(id));
        ids
    }

    /// How many customers the company has (not counting ones deleted outright).
    pub fn len(&self) -> usize {
        self.store().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every customer not deleted outright, active or not, sorted by numeric Id.
    pub fn all_customers(&self) -> Vec<Value> {
        self.store().all_sorted()
    }

    /// Ids of customers deleted outright, in deletion order.
    pub fn deleted_ids(&self) -> Vec<String> {
        self.store().tombstones.iter().map(|t| t.id.clone()).collect()
    }

    /// Customers in the table's internal order (the order ties come back in).
    pub fn internal_order(&self) -> Vec<String> {
        self.store().in_internal_order().map(|c| c.id.clone()).collect()
    }

    // --- throttling --------------------------------------------------------------

    /// Enforces QuickBooks' quota: more than `per_minute` `/v3` requests in any
    /// 60 seconds of wall time are answered as QBO throttles (429, XML, no
    /// `Retry-After`). `None` lifts it.
    pub fn set_quota(&self, per_minute: Option<usize>) {
        match per_minute {
            Some(requests) => self.set_quota_per(requests, std::time::Duration::from_secs(60)),
            None => *lock(&self.inner.quota) = None,
        }
    }

    /// Like [`FakeQbo::set_quota`] with any window: at most `requests` in any
    /// `window` (tests scale a minute down to seconds).
    pub fn set_quota_per(&self, requests: usize, window: std::time::Duration) {
        *lock(&self.inner.quota) = Some(Quota { requests, window, recent: std::collections::VecDeque::new() });
    }

    /// Whether a request arriving now is over the quota (and counts it if not).
    pub(crate) fn over_quota(&self) -> bool {
        let mut quota = lock(&self.inner.quota);
        let Some(quota) = quota.as_mut() else { return false };
        let now = std::time::Instant::now();
        while quota.recent.front().is_some_and(|t| now.duration_since(*t) >= quota.window) {
            quota.recent.pop_front();
        }
        if quota.recent.len() >= quota.requests {
            return true;
        }
        quota.recent.push_back(now);
        false
    }

    /// From the `from_request`-th `/v3` request on, answers every request as
    /// QBO throttles (429, XML, no `Retry-After`) for `window` of wall time,
    /// counted from that request.
    pub fn throttle_for(&self, from_request: usize, window: std::time::Duration) {
        let started: Arc<Mutex<Option<std::time::Instant>>> = Arc::new(Mutex::new(None));
        self.on_request(move |request, _| {
            if request.n < from_request {
                return None;
            }
            let mut started = lock(&started);
            let began = *started.get_or_insert_with(std::time::Instant::now);
            (began.elapsed() < window).then_some(Injected::ThrottleXml)
        });
    }

    // --- hooks -------------------------------------------------------------------

    /// Registers a hook run for every `/v3` request before it is answered (admin
    /// requests are not hooked). Hooks run in registration order, all of them; the
    /// first `Some` answer replaces the real one. A hook may freely use the
    /// `FakeQbo` it is given (edit data, advance the clock, add or clear hooks), but
    /// must not make HTTP requests to the fake itself.
    pub fn on_request<F>(&self, hook: F)
    where
        F: FnMut(&RequestInfo, &FakeQbo) -> Option<Injected> + Send + 'static,
    {
        lock(&self.inner.hooks).push(Box::new(hook));
    }

    /// Removes every hook and every scripted injection.
    pub fn clear_hooks(&self) {
        let mut hooks = lock(&self.inner.hooks);
        hooks.clear();
        self.inner.hook_generation.fetch_add(1, Ordering::SeqCst);
        drop(hooks);
        lock(&self.inner.scripted).clear();
    }

    pub(crate) fn add_scripted(&self, scripted: Scripted) {
        lock(&self.inner.scripted).push(scripted);
    }

    /// Runs the hooks (without holding the data lock, so they can edit data), then
    /// scripted injections. A panicking hook answers 500 instead of killing the server.
    pub(crate) fn run_hooks(&self, info: &RequestInfo) -> Option<Injected> {
        let _turn = lock(&self.inner.hook_turn);
        let generation = self.inner.hook_generation.load(Ordering::SeqCst);
        let mut running = std::mem::take(&mut *lock(&self.inner.hooks));
        let mut injected = None;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for hook in running.iter_mut() {
                let answer = hook(info, self);
                if injected.is_none() {
                    injected = answer;
                }
            }
        }));
        {
            let mut hooks = lock(&self.inner.hooks);
            if self.inner.hook_generation.load(Ordering::SeqCst) == generation {
                running.append(&mut hooks);
                *hooks = running;
            }
        }
        if outcome.is_err() {
            return Some(Injected::ServerError);
        }
        if injected.is_some() {
            return injected;
        }
        let mut scripted = lock(&self.inner.scripted);
        let pos = scripted
            .iter()
            .position(|s| s.kind.is_none_or(|k| k == info.kind) && s.at_request.is_none_or(|n| n == info.n))?;
        let hit = &mut scripted[pos];
        let answer = hit.injected.clone();
        hit.remaining = hit.remaining.saturating_sub(1);
        if hit.remaining == 0 {
            scripted.remove(pos);
        }
        Some(answer)
    }

    // --- request log -------------------------------------------------------------

    pub(crate) fn begin_request(&self, mut info: RequestInfo) -> RequestInfo {
        let mut log = lock(&self.inner.log);
        info.n = log.records.len() + 1;
        log.records.push(RequestRecord {
            n: info.n,
            method: info.method.clone(),
            path: info.path.clone(),
            query: info.query.clone().or_else(|| info.changed_since.clone()),
            kind: info.kind,
            status: 0,
        });
        info
    }

    pub(crate) fn finish_request(&self, n: usize, status: u16) {
        let mut log = lock(&self.inner.log);
        if let Some(record) = log.records.iter_mut().find(|r| r.n == n) {
            record.status = status;
        }
    }

    /// Every `/v3` request since the last reset, in arrival order. For CDC requests
    /// `query` holds the `changedSince` text.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.log).records.clone()
    }

    /// Forgets the log; request numbering restarts at 1.
    pub fn reset_requests(&self) {
        lock(&self.inner.log).records.clear();
    }

    pub fn query_requests(&self) -> usize {
        self.count_kind(RequestKind::Query)
    }

    pub fn cdc_requests(&self) -> usize {
        self.count_kind(RequestKind::Cdc)
    }

    fn count_kind(&self, kind: RequestKind) -> usize {
        lock(&self.inner.log).records.iter().filter(|r| r.kind == kind).count()
    }

    // --- serving -------------------------------------------------------------------

    /// The axum router serving the QBO API and the `/_fake` admin API.
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// Serves on a background thread with its own runtime; stops when the returned
    /// guard is dropped.
    pub fn start(&self) -> anyhow::Result<RunningFake> {
        server::start(self.clone())
    }

    /// Serves on `listener` inside the caller's runtime until the future is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        axum::serve(listener, self.router()).await?;
        Ok(())
    }

    // --- seeding ---------------------------------------------------------------------

    /// Inserts the 33 customers recorded from the sandbox, keeping Ids and timestamps.
    /// Returns their Ids.
    pub fn seed_recorded(&self) -> Vec<String> {
        seed::recorded_customers().into_iter().map(|c| self.insert(c)).collect()
    }

    /// Inserts `n` generated customers with fresh Ids; see [`GenerateOptions`].
    /// Deterministic for given options and starting state. Returns their Ids.
    pub fn seed_generated(&self, n: usize, opts: &GenerateOptions) -> Vec<String> {
        let mut store = self.store();
        seed::generate(&mut store, n, opts)
    }
}

#[cfg(test)]
mod tests;
