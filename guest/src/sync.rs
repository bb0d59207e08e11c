//! One run of the customers sync (SPEC §3.2): full when there is no
//! checkpoint, incremental otherwise; pages keyset-wise, stores each page and
//! then checkpoints, so a run that dies resumes where the store is.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::customer::{parse_timestamp, QboCustomer, MODEL};
use crate::paging::{PagingError, Position, RecordKey, Step};
use crate::platform::{HttpResponse, Level, Platform};
use crate::qbo::{self, ApiError, ApiRequest, Fault, MAX_PAGE_SIZE};

/// Retries the host may make for each request (429, 5xx, connection errors).
pub const MAX_RETRIES: u32 = 5;
/// Group re-reads allowed in one run before giving up on a group that keeps changing.
const MAX_REREADS: u32 = 20;
/// QuickBooks' CDC covers 30 days; keep a day of margin.
const CDC_WINDOW_DAYS: i64 = 29;

/// The checkpoint, stored as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version, so later versions can read old checkpoints.
    pub version: u32,
    /// Where paging stands.
    pub position: Position,
    /// Whether the pass reached the last page. A pass that did not is resumed.
    pub complete: bool,
    /// QuickBooks' clock when the pass began: deletions after it are fetched
    /// through CDC by the next pass.
    pub pass_started: Option<String>,
}

const CHECKPOINT_VERSION: u32 = 1;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub pages: u32,
    pub requests: u32,
    pub retries: u32,
    pub saved: u32,
    pub deleted: u32,
}

/// Why a run failed. Whatever was stored before stays, and so does the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Provider(Fault),
    #[error("invalid response from QuickBooks: {0}")]
    InvalidResponse(String),
    #[error("connection configuration has no `{0}`")]
    MissingConfig(String),
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("store: {0}")]
    Store(String),
}

impl From<ApiError> for SyncError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Fault(fault) => SyncError::Provider(fault),
            ApiError::InvalidResponse(message) => SyncError::InvalidResponse(message),
        }
    }
}

/// Runs the sync once with pages of [`MAX_PAGE_SIZE`].
pub fn run(platform: &mut impl Platform) -> Result<Summary, SyncError> {
    run_with_page_size(platform, MAX_PAGE_SIZE)
}

/// Runs the sync once; smaller pages are for tests.
pub fn run_with_page_size(platform: &mut impl Platform, page_size: u32) -> Result<Summary, SyncError> {
    let realm_id = platform
        .config("realmId")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| SyncError::MissingConfig("realmId".into()))?;
    let checkpoint = match platform.load_checkpoint().map_err(SyncError::Store)? {
        None => None,
        Some(text) => Some(serde_json::from_str::<Checkpoint>(&text).map_err(|e| {
            SyncError::Store(format!("checkpoint is not one this version can read ({e}); clear it to resync"))
        })?),
    };
    let mut run = Run { platform, realm_id, summary: Summary::default() };
    // Set on a new incremental pass: deletions since the previous pass began
    // are read through CDC once the first page has told us QuickBooks' clock.
    let mut cdc_since: Option<String> = None;

    let (mut position, pass_started) = match checkpoint {
        None => {
            run.platform.log(Level::Info, "no checkpoint: full sync of all customers, active and archived");
            (Position::default(), None)
        }
        Some(Checkpoint { position, complete: false, pass_started, .. }) => {
            run.platform.log(Level::Info, &format!("resuming an unfinished pass at {}", describe(&position)));
            (position, pass_started)
        }
        Some(Checkpoint { position, complete: true, pass_started, .. }) => {
            run.platform.log(Level::Info, &format!("incremental sync from {}", describe(&position)));
            // Without QuickBooks' clock (a server that omits `time`), the newest
            // LastUpdatedTime seen is the best lower bound left.
            cdc_since = pass_started.or_else(|| position.since.clone());
            (position.restart_group(), None)
        }
    };
    let mut pass_started = pass_started;
    let mut rereads = 0;

    loop {
        let query = position.query();
        let request = qbo::customer_query(&run.realm_id, query.since.as_deref(), query.start_position, page_size);
        let response = run.send(&request)?;
        let page = qbo::parse_query_page(&response.body)
            .map_err(|e| with_context(e, &format!("page at {}", describe(&position))))?;
        run.summary.pages += 1;
        if pass_started.is_none() {
            pass_started = page.time.clone();
        }
        let keys = page
            .customers
            .iter()
            .map(|c| {
                Ok(RecordKey {
                    id: c.id.clone(),
                    last_updated: c
                        .last_updated_text()
                        .ok_or_else(|| SyncError::InvalidResponse(format!("customer {} has no MetaData.LastUpdatedTime", c.id)))?
                        .to_owned(),
                })
            })
            .collect::<Result<Vec<_>, SyncError>>()?;
        let step = position.after_page(&keys, page_size).map_err(|e: PagingError| {
            SyncError::InvalidResponse(format!("page at {}: {e}", describe(&position)))
        })?;
        let (fresh_from, next, done) = match step {
            Step::Continue { fresh_from, next } => (fresh_from, next, false),
            Step::Done { fresh_from, next } => (fresh_from, next, true),
            Step::Reread { next } => {
                rereads += 1;
                run.platform.log(
                    Level::Info,
                    &format!("customers sharing {} changed while paging; reading that group again", describe(&position)),
                );
                if rereads > MAX_REREADS {
                    return Err(SyncError::InvalidResponse(format!(
                        "customers sharing {} kept changing over {MAX_REREADS} re-reads",
                        describe(&position)
                    )));
                }
                (0, next, false)
            }
        };
        run.store(&page.customers[fresh_from..])?;
        if let Some(since) = cdc_since.take() {
            run.delete_merged_away(&since, page.time.as_deref())?;
        }
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            position: next.clone(),
            complete: done,
            pass_started: pass_started.clone(),
        };
        let text = serde_json::to_string(&checkpoint).expect("checkpoint serializes");
        run.platform.save_checkpoint(&text).map_err(SyncError::Store)?;
        position = next;
        if done {
            break;
        }
    }
    let summary = run.summary;
    run.platform.log(
        Level::Info,
        &format!(
            "done: {} pages, {} requests ({} retries), {} saved, {} deleted",
            summary.pages, summary.requests, summary.retries, summary.saved, summary.deleted
        ),
    );
    Ok(summary)
}

fn describe(position: &Position) -> String {
    match &position.since {
        None => "the beginning".into(),
        Some(since) if position.read_in_group == 0 => format!("LastUpdatedTime {since}"),
        Some(since) => format!("LastUpdatedTime {since} (+{} read)", position.read_in_group),
    }
}

fn with_context(error: ApiError, context: &str) -> SyncError {
    match error {
        ApiError::InvalidResponse(message) => SyncError::InvalidResponse(format!("{context}: {message}")),
        other => other.into(),
    }
}

struct Run<'p, P: Platform> {
    platform: &'p mut P,
    realm_id: String,
    summary: Summary,
}

impl<P: Platform> Run<'_, P> {
    fn send(&mut self, request: &ApiRequest) -> Result<HttpResponse, SyncError> {
        let response = self.platform.get(request, MAX_RETRIES).map_err(SyncError::Proxy)?;
        self.summary.requests += 1;
        self.summary.retries += response.attempts.saturating_sub(1);
        if !(200..300).contains(&response.status) {
            return Err(SyncError::Provider(qbo::fault_from_response(response.status, &response.body)));
        }
        Ok(response)
    }

    /// Saves the active customers of a page and deletes the archived ones.
    /// On a full pass the deletes are no-ops, unless a customer saved earlier
    /// in the same pass was archived since.
    fn store(&mut self, customers: &[QboCustomer]) -> Result<(), SyncError> {
        // A BTreeSet, not a HashSet: std's hasher seed would import wasi:random.
        let mut seen = BTreeSet::new();
        let mut records = Vec::new();
        let mut archived = Vec::new();
        // Later entries win if QuickBooks repeats an id within a page.
        for customer in customers.iter().rev() {
            if !seen.insert(customer.id.as_str()) {
                continue;
            }
            if customer.is_active() {
                let mapped = customer.to_customer().map_err(|e| SyncError::InvalidResponse(e.to_string()))?;
                records.push(serde_json::to_string(&mapped).expect("customer serializes"));
            } else {
                archived.push(customer.id.clone());
            }
        }
        if !records.is_empty() {
            self.summary.saved += records.len() as u32;
            self.platform.save(MODEL, records).map_err(SyncError::Store)?;
        }
        if !archived.is_empty() {
            self.summary.deleted += archived.len() as u32;
            self.platform.delete(MODEL, archived).map_err(SyncError::Store)?;
        }
        Ok(())
    }

    /// Deletes customers deleted outright (merged away) since `since`, the
    /// start of the previous pass, through CDC. QuickBooks refuses CDC beyond
    /// 30 days, so an older `since` is skipped with a warning.
    fn delete_merged_away(&mut self, since: &str, now: Option<&str>) -> Result<(), SyncError> {
        if let (Some(since_instant), Some(now_instant)) = (parse_timestamp(since), now.and_then(parse_timestamp)) {
            if now_instant - since_instant > Duration::days(CDC_WINDOW_DAYS) {
                self.platform.log(
                    Level::Warn,
                    &format!("the last pass began at {since}, beyond CDC's 30 days: customers deleted outright since then are not detected"),
                );
                return Ok(());
            }
        }
        let request = qbo::customer_changes(&self.realm_id, since);
        let response = self.send(&request)?;
        let changes = qbo::parse_change_page(&response.body).map_err(|e| with_context(e, "CDC"))?;
        if changes.changes >= 1000 {
            self.platform.log(Level::Warn, "CDC returned its maximum of 1000 changes; some deletions may be missed");
        }
        let deleted = changes.deleted_ids;
        if !deleted.is_empty() {
            self.platform.log(Level::Info, &format!("{} customers deleted outright upstream", deleted.len()));
            self.summary.deleted += deleted.len() as u32;
            self.platform.delete(MODEL, deleted).map_err(SyncError::Store)?;
        }
        Ok(())
    }
}
