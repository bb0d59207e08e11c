//! What the store refused to hold of failed runs (docs/store.md, "When the
//! store fails"): a run that could not begin, or whose end could not be
//! written, is still a failed run. Until the store takes writes again this
//! process keeps, per connection, the runs to write into the history, the
//! status and next run to set, the webhooks to queue, and the backoff the
//! scheduler waits out, so a store that refuses writes makes a slow retry,
//! not a tight loop, and the history ends up with each run's real error.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{ConnectionStatus, ConnectionUpdate, RunEnd, RunRecord, Store, StoreError, WebhookFormat};

/// A webhook a run could not queue.
#[derive(Debug, Clone)]
pub struct UnqueuedWebhook {
    pub run: String,
    pub url: String,
    pub body: String,
    pub format: WebhookFormat,
}

/// One failed run the history does not hold yet.
#[derive(Debug, Clone)]
struct UnwrittenRun {
    /// Ended, with its outcome and error.
    record: RunRecord,
    /// Its beginning is in the history (only its end is missing).
    begun: bool,
}

/// What one connection's failed runs left unwritten.
#[derive(Debug, Clone)]
struct Unwritten {
    /// In order: at most one begun run (the one whose end failed), then the
    /// latest run that could not begin (earlier ones are only counted).
    runs: Vec<UnwrittenRun>,
    /// Failed runs in a row, stored ones included.
    failures: u32,
    /// Not before then: the backoff after the latest failure.
    retry_at_us: i64,
    /// The error of the latest failure.
    error: String,
    webhooks: Vec<UnqueuedWebhook>,
}

/// How a connection looks while its failures are not written: what the
/// API shows in place of the stored status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnwrittenStatus {
    pub failures: u32,
    pub retry_at_us: i64,
    pub error: String,
}

/// The failed runs of this process that the store has not taken yet.
#[derive(Debug, Default)]
pub struct Unrecorded {
    by_connection: Mutex<HashMap<String, Unwritten>>,
}

impl Unrecorded {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Unwritten>> {
        self.by_connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `run` (ended, failed) for `connection`: `begun` if its start is
    /// in the history. `stored_failures`: the failures in a row the store
    /// knows of. Returns the failures in a row, this one included.
    pub fn keep_run(
        &self,
        connection: &str,
        run: RunRecord,
        begun: bool,
        stored_failures: u32,
        retry_at: impl FnOnce(u32) -> i64,
    ) -> u32 {
        let mut all = self.lock();
        let error = run.error.clone().unwrap_or_default();
        let entry = all.entry(connection.to_owned()).or_insert_with(|| Unwritten {
            runs: Vec::new(),
            failures: stored_failures,
            retry_at_us: 0,
            error: String::new(),
            webhooks: Vec::new(),
        });
        if !begun {
            // Only the latest of the runs that never began is written.
            entry.runs.retain(|r| r.begun);
        }
        entry.runs.push(UnwrittenRun { record: run, begun });
        entry.failures = entry.failures.max(stored_failures) + 1;
        entry.retry_at_us = retry_at(entry.failures);
        entry.error = error;
        entry.failures
    }

    /// Keeps a webhook the store would not queue.
    pub fn keep_webhook(&self, connection: &str, webhook: UnqueuedWebhook) {
        // For a run whose end was written, the webhook is all there is to
        // write: no run, no backoff.
        let mut all = self.lock();
        let entry = all.entry(connection.to_owned()).or_insert_with(|| Unwritten {
            runs: Vec::new(),
            failures: 0,
            retry_at_us: 0,
            error: String::new(),
            webhooks: Vec::new(),
        });
        entry.webhooks.push(webhook);
    }

    /// Whether `connection` waits out an unwritten failure's backoff at `now_us`.
    pub fn held_back(&self, connection: &str, now_us: i64) -> bool {
        self.lock().get(connection).is_some_and(|u| !u.runs.is_empty() && u.retry_at_us > now_us)
    }

    /// The unwritten failure of `connection`, if any.
    pub fn status(&self, connection: &str) -> Option<UnwrittenStatus> {
        let all = self.lock();
        let entry = all.get(connection).filter(|u| !u.runs.is_empty())?;
        Some(UnwrittenStatus { failures: entry.failures, retry_at_us: entry.retry_at_us, error: entry.error.clone() })
    }

    /// The connections with something unwritten.
    pub fn connections(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Writes what `connection` left unwritten, in order; what the store
    /// refuses stays kept, and stays shown while it is written. The caller
    /// holds the connection's run lock, so no run of it begins in between
    /// (a run's start closes unended runs).
    pub fn write(&self, connection: &str, store: &Store) -> Result<(), StoreError> {
        let Some(mut left) = self.lock().get(connection).cloned() else { return Ok(()) };
        let kept = left.clone();
        let result = write_entry(connection, &mut left, store);
        let written_runs: Vec<&str> = kept
            .runs
            .iter()
            .filter(|r| !left.runs.iter().any(|l| l.record.id == r.record.id))
            .map(|r| r.record.id.as_str())
            .collect();
        let written_webhooks = kept.webhooks.len() - left.webhooks.len();
        // What was kept meanwhile (a webhook queued after this began, say) stays.
        let mut all = self.lock();
        if let Some(entry) = all.get_mut(connection) {
            entry.runs.retain(|r| !written_runs.contains(&r.record.id.as_str()));
            entry.webhooks.drain(..written_webhooks.min(entry.webhooks.len()));
            if entry.runs.is_empty() && entry.webhooks.is_empty() {
                all.remove(connection);
            }
        }
        result
    }
}

fn write_entry(connection: &str, entry: &mut Unwritten, store: &Store) -> Result<(), StoreError> {
    while let Some(run) = entry.runs.first() {
        let record = &run.record;
        if !run.begun {
            store.runs.begin(&RunRecord { ended_us: None, outcome: None, error: None, ..record.clone() })?;
        }
        let end = RunEnd {
            id: &record.id,
            connection,
            ended_us: record.ended_us.unwrap_or(record.started_us),
            outcome: record.outcome.unwrap_or(crate::store::Outcome::Failure),
            summary: record.summary.as_deref(),
            error: record.error.as_deref(),
        };
        // The last run sets the status and the next run; earlier ones only
        // close their own record.
        let update = if entry.runs.len() == 1 {
            ConnectionUpdate {
                status: Some(ConnectionStatus::Failing),
                status_message: Some(Some(entry.error.clone())),
                failures: Some(entry.failures),
                next_run_at_us: Some(Some(entry.retry_at_us)),
                ..Default::default()
            }
        } else {
            ConnectionUpdate::default()
        };
        store.runs.end(&end, &update)?;
        entry.runs.remove(0);
    }
    while let Some(webhook) = entry.webhooks.first() {
        store.deliveries.enqueue(connection, Some(&webhook.run), &webhook.url, &webhook.body, webhook.format)?;
        entry.webhooks.remove(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Outcome, Trigger};

    fn failed(id: &str, at: i64, error: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            connection: "c".into(),
            trigger: Trigger::Schedule,
            started_us: at,
            ended_us: Some(at + 1),
            outcome: Some(Outcome::Failure),
            summary: None,
            error: Some(error.into()),
            worker: None,
        }
    }

    #[test]
    fn what_is_kept_is_written_in_order_with_each_run_s_own_error_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::open(dir.path().join("s.sqlite").to_str().unwrap(), crate::store::OpenMode::Create).unwrap();
        let connection = crate::store::suite::connection("c", "1");
        let token = crate::store::StoredCredentials::AccessToken("token".into());
        store.connections.insert(&connection, &token, &Default::default()).unwrap();
        // Begun, its end refused; then one that could not begin at all.
        let begun = RunRecord { ended_us: None, outcome: None, error: None, ..failed("a", 10, "") };
        store.runs.begin(&begun).unwrap();
        let unrecorded = Unrecorded::default();
        unrecorded.keep_run("c", failed("a", 10, "store error: store full: x"), true, connection.failures, |_| 500);
        unrecorded.keep_run("c", failed("b", 20, "store full: y"), false, 0, |_| 700);
        let webhook = UnqueuedWebhook {
            run: "b".into(),
            url: "http://h/".into(),
            body: "{}".into(),
            format: WebhookFormat::SyncHost,
        };
        unrecorded.keep_webhook("c", webhook);

        unrecorded.write("c", &store).unwrap();
        assert!(unrecorded.status("c").is_none() && unrecorded.connections().is_empty(), "all written, nothing kept");
        let (runs, _) = store.runs.list("c", None, 10).unwrap();
        let errors: Vec<_> = runs.iter().map(|r| (r.id.as_str(), r.error.as_deref().unwrap_or(""))).collect();
        assert_eq!(errors, vec![("b", "store full: y"), ("a", "store error: store full: x")], "not `abandoned`");
        let stored = store.connections.get("c").unwrap().unwrap();
        assert_eq!(stored.status, ConnectionStatus::Failing);
        assert_eq!(stored.status_message.as_deref(), Some("store full: y"));
        assert_eq!((stored.failures, stored.next_run_at_us), (2, Some(700)));
        assert_eq!(store.deliveries.list("c", None, 10).unwrap().0.len(), 1, "the webhook is queued");
    }

    #[test]
    fn failures_count_on_from_the_stored_ones_and_hold_the_connection_back() {
        let unrecorded = Unrecorded::default();
        let failures = unrecorded.keep_run("c", failed("a", 10, "store full: x"), true, 2, |n| 100 * i64::from(n));
        assert_eq!(failures, 3);
        assert!(unrecorded.held_back("c", 299));
        assert!(!unrecorded.held_back("c", 300), "its backoff ends");
        assert!(!unrecorded.held_back("other", 0));
        let failures = unrecorded.keep_run("c", failed("b", 20, "store full: y"), false, 0, |n| 100 * i64::from(n));
        assert_eq!(failures, 4);
        let status = unrecorded.status("c").unwrap();
        assert_eq!((status.failures, status.retry_at_us, status.error.as_str()), (4, 400, "store full: y"));
        // A third that never began replaces the second; the begun one stays.
        unrecorded.keep_run("c", failed("d", 30, "store full: z"), false, 0, |_| 0);
        let entry = unrecorded.lock().get("c").cloned().unwrap();
        let kept: Vec<_> = entry.runs.iter().map(|r| (r.record.id.as_str(), r.begun)).collect();
        assert_eq!(kept, vec![("a", true), ("d", false)]);
    }
}
