//! One run of the customers sync (docs/sync.md): a full pass when there is no
//! checkpoint or when deletions must be reconciled, an incremental pass
//! otherwise; pages keyset-wise, stores each page and then checkpoints, so a
//! run that dies resumes where the store is.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::customer::{parse_timestamp, QboCustomer, MODEL};
use crate::paging::{PagingError, Position, RecordKey, Step};
use crate::platform::{HttpResponse, Level, ListingError, Platform};
use crate::qbo::{self, ApiError, ApiRequest, Fault, QueryPage, MAX_PAGE_SIZE};
use crate::reconcile::{self, Every, Reason};

/// Group re-reads allowed in one run before giving up on a group that keeps changing.
const MAX_REREADS: u32 = 20;

/// The checkpoint, stored as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version, so later versions can read old checkpoints (1 had no
    /// `listing` nor `last_full_pass`).
    pub version: u32,
    /// Where paging stands.
    pub position: Position,
    /// Whether the pass reached the last page. A pass that did not is resumed.
    pub complete: bool,
    /// QuickBooks' clock when the pass began: deletions after it are fetched
    /// through CDC by the next pass.
    pub pass_started: Option<String>,
    /// On a full pass, the host listing it saves into; ended when the pass
    /// completes, which deletes what the pass did not see.
    #[serde(default)]
    pub listing: Option<u64>,
    /// QuickBooks' clock when the last completed full pass began.
    #[serde(default)]
    pub last_full_pass: Option<String>,
}

const CHECKPOINT_VERSION: u32 = 2;

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
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
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

/// The pass a run is in.
#[derive(Debug, Clone)]
struct Pass {
    position: Position,
    pass_started: Option<String>,
    /// `Some` on a full pass: the listing it saves into.
    listing: Option<u64>,
    last_full_pass: Option<String>,
    /// On a new incremental pass, until its first page: when the previous pass
    /// began, for CDC and for deciding whether to reconcile instead.
    pending_check: Option<Option<String>>,
}

impl Pass {
    fn checkpoint(&self, complete: bool) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            position: self.position.clone(),
            complete,
            pass_started: self.pass_started.clone(),
            listing: self.listing,
            last_full_pass: self.last_full_pass.clone(),
        }
    }
}

/// Runs the sync once; smaller pages are for tests.
pub fn run_with_page_size(platform: &mut impl Platform, page_size: u32) -> Result<Summary, SyncError> {
    let realm_id = platform
        .config("realmId")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| SyncError::MissingConfig("realmId".into()))?;
    let every =
        Every::from_config(platform.config(reconcile::EVERY_KEY).as_deref()).map_err(SyncError::InvalidConfig)?;
    let checkpoint = match platform.load_checkpoint().map_err(SyncError::Store)? {
        None => None,
        Some(text) => Some(serde_json::from_str::<Checkpoint>(&text).map_err(|e| {
            SyncError::Store(format!(
                "checkpoint is not one this version can read ({e}); reset the connection to resync"
            ))
        })?),
    };
    let mut run = Run { platform, realm_id, every, summary: Summary::default() };

    let mut pass = match checkpoint {
        None => run.begin_full_pass(Reason::FirstSync, None, None)?,
        Some(checkpoint) if !checkpoint.complete => run.resume(checkpoint)?,
        Some(Checkpoint { position, pass_started, last_full_pass, .. }) => {
            run.platform.log(Level::Info, &format!("incremental sync from {}", describe(&position)));
            // Without QuickBooks' clock (a server that omits `time`), the newest
            // LastUpdatedTime seen is the best lower bound left.
            let cdc_since = pass_started.or_else(|| position.since.clone());
            Pass {
                position: position.restart_group(),
                pass_started: None,
                listing: None,
                last_full_pass,
                pending_check: Some(cdc_since),
            }
        }
    };
    let mut rereads = 0;

    loop {
        let query = pass.position.query();
        let request = qbo::customer_query(&run.realm_id, query.since.as_deref(), query.start_position, page_size);
        let response = run.send(&request)?;
        let page = qbo::parse_query_page(&response.body)
            .map_err(|e| with_context(e, &format!("page at {}", describe(&pass.position))))?;
        run.summary.pages += 1;
        if pass.pass_started.is_none() {
            pass.pass_started = page.time.clone();
        }
        let cdc_since = pass.pending_check.take();
        if let Some(cdc_since) = &cdc_since {
            let now = page.time.as_deref().and_then(parse_timestamp);
            if let Some(reason) =
                reconcile::before_incremental(now, pass.last_full_pass.as_deref(), cdc_since.as_deref(), run.every)
            {
                // This page was read from the incremental position; the full
                // pass reads everything again from the start.
                pass = run.begin_full_pass(reason, page.time.clone(), pass.last_full_pass.clone())?;
                run.save_checkpoint(&pass.checkpoint(false))?;
                continue;
            }
        }

        let step = run.step(&pass.position, &page, page_size, &mut rereads)?;
        let (fresh_from, next, done) = step;
        run.store(&page.customers[fresh_from..])?;

        if let Some(Some(since)) = cdc_since {
            let objects = run.delete_merged_away(&since)?;
            if let Some(reason) = reconcile::after_cdc(objects) {
                pass = run.begin_full_pass(reason, pass.pass_started.clone(), pass.last_full_pass.clone())?;
                run.save_checkpoint(&pass.checkpoint(false))?;
                continue;
            }
        }
        pass.position = next;
        if done {
            if let Some(listing) = pass.listing.take() {
                run.end_listing(listing, &mut pass)?;
            }
        }
        run.save_checkpoint(&pass.checkpoint(done))?;
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
    every: Every,
    summary: Summary,
}

impl<P: Platform> Run<'_, P> {
    fn send(&mut self, request: &ApiRequest) -> Result<HttpResponse, SyncError> {
        let response = self.platform.get(request).map_err(SyncError::Proxy)?;
        self.summary.requests += 1;
        self.summary.retries += response.attempts.saturating_sub(1);
        if !(200..300).contains(&response.status) {
            return Err(SyncError::Provider(qbo::fault_from_response(response.status, &response.body)));
        }
        Ok(response)
    }

    fn save_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SyncError> {
        let text = serde_json::to_string(checkpoint).expect("a checkpoint serializes");
        self.platform.save_checkpoint(&text).map_err(SyncError::Store)
    }

    /// Starts a pass over every customer inside a new listing.
    fn begin_full_pass(
        &mut self,
        reason: Reason,
        pass_started: Option<String>,
        last_full_pass: Option<String>,
    ) -> Result<Pass, SyncError> {
        let listing = self.platform.begin_listing(MODEL).map_err(SyncError::Store)?;
        self.platform.log(
            Level::Info,
            &format!("full sync of all customers, active and archived, as listing {listing}: {reason}"),
        );
        Ok(Pass {
            position: Position::default(),
            pass_started,
            listing: Some(listing),
            last_full_pass,
            pending_check: None,
        })
    }

    /// Resumes an unfinished pass. A full pass whose listing is no longer open
    /// starts over: what it saw before would not count, and ending a new
    /// listing after a partial read would delete live customers.
    fn resume(&mut self, checkpoint: Checkpoint) -> Result<Pass, SyncError> {
        let Checkpoint { position, pass_started, listing, last_full_pass, .. } = checkpoint;
        if let Some(listing) = listing {
            let open = self.platform.current_listing(MODEL).map_err(SyncError::Store)?;
            if open != Some(listing) {
                return self.begin_full_pass(Reason::ListingLost { listing }, None, last_full_pass);
            }
        }
        let kind = if listing.is_some() { "full" } else { "incremental" };
        self.platform.log(Level::Info, &format!("resuming an unfinished {kind} pass at {}", describe(&position)));
        Ok(Pass { position, pass_started, listing, last_full_pass, pending_check: None })
    }

    /// Ends the listing of a completed full pass: the host deletes what it did not see.
    fn end_listing(&mut self, listing: u64, pass: &mut Pass) -> Result<(), SyncError> {
        match self.platform.end_listing(MODEL, listing) {
            Ok(deleted) => {
                self.summary.deleted += deleted;
                self.platform.log(
                    Level::Info,
                    &format!("listing {listing} complete: {deleted} customers no longer in QuickBooks deleted"),
                );
                // Without QuickBooks' clock, the newest LastUpdatedTime read
                // is the best bound left on when the listing began.
                pass.last_full_pass = pass.pass_started.clone().or_else(|| pass.position.since.clone());
            }
            // Someone else closed it: nothing was deleted, and the record of
            // the last completed full pass stays as it was, so the listing is
            // due again when that one is old enough.
            Err(ListingError::NotOpen(message)) => {
                self.platform.log(Level::Warn, &format!("listing {listing} was not ended: {message}"));
            }
            Err(ListingError::Store(message)) => return Err(SyncError::Store(message)),
        }
        Ok(())
    }

    /// What paging does after `page`: `(fresh_from, next, done)`.
    fn step(
        &mut self,
        position: &Position,
        page: &QueryPage,
        page_size: u32,
        rereads: &mut u32,
    ) -> Result<(usize, Position, bool), SyncError> {
        let keys = page
            .customers
            .iter()
            .map(|c| {
                Ok(RecordKey {
                    id: c.id.clone(),
                    last_updated: c
                        .last_updated_text()
                        .ok_or_else(|| {
                            SyncError::InvalidResponse(format!("customer {} has no MetaData.LastUpdatedTime", c.id))
                        })?
                        .to_owned(),
                })
            })
            .collect::<Result<Vec<_>, SyncError>>()?;
        let step = position
            .after_page(&keys, page_size)
            .map_err(|e: PagingError| SyncError::InvalidResponse(format!("page at {}: {e}", describe(position))))?;
        Ok(match step {
            Step::Continue { fresh_from, next } => (fresh_from, next, false),
            Step::Done { fresh_from, next } => (fresh_from, next, true),
            Step::Reread { next } => {
                *rereads += 1;
                self.platform.log(
                    Level::Info,
                    &format!("customers sharing {} changed while paging; reading that group again", describe(position)),
                );
                if *rereads > MAX_REREADS {
                    return Err(SyncError::InvalidResponse(format!(
                        "customers sharing {} kept changing over {MAX_REREADS} re-reads",
                        describe(position)
                    )));
                }
                (0, next, false)
            }
        })
    }

    /// Saves the active customers of a page and deletes the archived ones.
    /// On a full pass the deletes are no-ops, unless a customer saved earlier
    /// was archived since.
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
    /// start of the previous pass, through CDC. Returns how many objects CDC
    /// answered, so the caller can tell whether deletions may have been cut.
    fn delete_merged_away(&mut self, since: &str) -> Result<usize, SyncError> {
        let request = qbo::customer_changes(&self.realm_id, since);
        let response = self.send(&request)?;
        let changes = qbo::parse_change_page(&response.body).map_err(|e| with_context(e, "CDC"))?;
        let deleted = changes.deleted_ids;
        if !deleted.is_empty() {
            self.platform.log(Level::Info, &format!("{} customers deleted outright upstream", deleted.len()));
            self.summary.deleted += deleted.len() as u32;
            self.platform.delete(MODEL, deleted).map_err(SyncError::Store)?;
        }
        Ok(changes.changes)
    }
}

#[cfg(test)]
mod tests;
