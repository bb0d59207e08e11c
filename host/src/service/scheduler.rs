//! Runs each stored connection when it is due: a new connection at once,
//! then on its interval; a failing one after its backoff, without holding up
//! the others (each run has its own worker); never two runs of one
//! connection (the run lock, across processes too); on shutdown, the runs in
//! flight stop at their next provider request, their stored pages and
//! checkpoints committed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::runs::{RunDefaults, Runner};
use crate::runtime::RunFailure;
use crate::schedule::{self, Due};
use crate::store::Trigger;
use crate::time::now_us;

/// How often the scheduler looks for due connections when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// The scheduler of one host process.
pub struct Scheduler {
    runner: Arc<Runner>,
    defaults: RunDefaults,
    workers: usize,
    /// A notified connection runs once its notifications have been quiet
    /// this long: a burst makes one run.
    quiet: Duration,
    wake: Arc<Notify>,
    /// Connections with a run in flight in this process.
    running: Mutex<HashSet<String>>,
}

impl Scheduler {
    /// `workers`: runs in flight at once in this process; `quiet`: how long
    /// after the last provider notification a notified connection runs.
    pub fn new(runner: Arc<Runner>, defaults: RunDefaults, workers: usize, quiet: Duration) -> Arc<Self> {
        Arc::new(Scheduler {
            runner,
            defaults,
            workers: workers.max(1),
            quiet,
            wake: Arc::new(Notify::new()),
            running: Mutex::new(HashSet::new()),
        })
    }

    /// Wakes the scheduler now (a connection was added, triggered or resumed).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs due connections until `shutdown` turns true; then stops the runs
    /// in flight and waits for them.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = self.workers.saturating_sub(tasks.len());
            if free > 0 {
                let runner = self.runner.clone();
                let quiet = self.quiet;
                let due = tokio::task::spawn_blocking(move || {
                    let now = now_us();
                    runner.database().connections.due(now, quiet).map(|due| (now, due))
                })
                .await;
                match due {
                    Ok(Ok((now, due))) => {
                        for connection in due {
                            if tasks.len() >= self.workers {
                                break;
                            }
                            if !self.running().insert(connection.id.clone()) {
                                continue;
                            }
                            let trigger = match schedule::due(&connection.timing(), now, self.quiet) {
                                // Due only because the provider said something changed.
                                Some(Due::Notified) => Trigger::Webhook,
                                _ => Trigger::Schedule,
                            };
                            let scheduler = self.clone();
                            tasks.spawn_blocking(move || scheduler.run_one(&connection.id, trigger));
                        }
                    }
                    Ok(Err(e)) => tracing::error!(target: "scheduler", "cannot read the due connections: {e}"),
                    Err(e) => tracing::error!(target: "scheduler", "{e}"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        if !tasks.is_empty() {
            tracing::info!(target: "scheduler", runs = tasks.len(), "shutting down: stopping the runs in flight at their next request");
        }
        self.runner.stop();
        while tasks.join_next().await.is_some() {}
    }

    fn run_one(&self, id: &str, trigger: Trigger) {
        let result = self.runner.run_if_due(id, trigger, &self.defaults, self.quiet);
        match &result {
            Ok(report) => tracing::info!(
                target: "scheduler",
                connection = id,
                trigger = trigger.as_str(),
                "run succeeded: {}",
                report.to_json()
            ),
            // Another process runs it, or just did: nothing to record, it is not ours.
            Err(RunFailure::Busy(_)) => tracing::debug!(target: "scheduler", connection = id, "run by another worker"),
            Err(RunFailure::NotDue(_)) => tracing::debug!(target: "scheduler", connection = id, "no longer due"),
            Err(failure) => tracing::warn!(target: "scheduler", connection = id, "run failed: {failure}"),
        }
        self.running().remove(id);
        self.wake.notify_one();
    }
}
