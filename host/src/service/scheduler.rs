//! Runs each stored connection when it is due: a new connection at once,
//! then on its interval; a failing one after its backoff, without holding up
//! the others (each run has its own worker); never two runs of one
//! connection (the run lock, across processes too); on shutdown, the runs in
//! flight stop at their next provider request, their stored pages and
//! checkpoints committed. When the store refuses writes, a failed run's
//! backoff is kept in memory (`runs::unrecorded`), so the connection waits
//! it out instead of running again at once; when the wall clock steps
//! back, next runs it would postpone by more than their interval are
//! brought forward (docs/connections.md, "Scheduling").

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::runs::{RunDefaults, Runner};
use crate::runtime::RunFailure;
use crate::schedule::{self, Due};
use crate::store::Trigger;
use crate::time::now_us;

/// How often the scheduler looks for due connections when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);
/// The wall clock moved back by more than this since the last look: a step,
/// not the drift of a poll.
const CLOCK_STEP: Duration = Duration::from_secs(2);

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
    /// A pass writing what the store refused of failed runs is under way.
    writing_unrecorded: Arc<AtomicBool>,
    /// Connections another process was found running, until when they are
    /// not tried again: without it, a worker would take them up after every
    /// run of its own, find them busy, and look again at once.
    elsewhere: Mutex<HashMap<String, Instant>>,
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
            writing_unrecorded: Arc::default(),
            elsewhere: Mutex::default(),
        })
    }

    /// Wakes the scheduler now (a connection was added, triggered or resumed).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn elsewhere(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.elsewhere.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections are skipped as run elsewhere (forgetting those
    /// whose wait is over).
    fn elsewhere_count(&self) -> usize {
        let now = Instant::now();
        let mut elsewhere = self.elsewhere();
        elsewhere.retain(|_, until| *until > now);
        elsewhere.len()
    }

    /// Whether `id` was found run by another process within the last poll.
    fn run_elsewhere(&self, id: &str) -> bool {
        self.elsewhere().get(id).is_some_and(|until| *until > Instant::now())
    }

    /// Runs due connections until `shutdown` turns true; then stops the runs
    /// in flight and waits for them.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        // At start-up the clock may have stepped back while the host was down.
        let mut clock = ClockWatch::new();
        let mut clock_stepped = true;
        // The store's failure is logged when it starts and when it ends, not
        // on every poll.
        let mut store_failing = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            clock_stepped |= clock.stepped_back();
            let free = self.workers.saturating_sub(tasks.len());
            if free > 0 {
                let runner = self.runner.clone();
                let quiet = self.quiet;
                let cap_schedule = std::mem::take(&mut clock_stepped);
                // Enough to fill the free workers past those skipped below:
                // in flight here, held back, or just found run elsewhere.
                let skipped =
                    self.running().len() + self.runner.unrecorded().connections().len() + self.elsewhere_count();
                let limit = free + skipped;
                let due = tokio::task::spawn_blocking(move || {
                    let now = now_us();
                    if cap_schedule {
                        match runner.cap_schedule_after_clock_step(now) {
                            Ok(0) => {}
                            Ok(moved) => tracing::warn!(target: "scheduler", moved, "the clock stepped back: brought next runs forward to at most one interval from now"),
                            Err(e) => {
                                tracing::warn!(target: "scheduler", "cannot check the schedule against the clock: {e}");
                                return Err((e, true));
                            }
                        }
                    }
                    let due = runner.database().connections.due(now, quiet, limit).map_err(|e| (e, false))?;
                    Ok((now, due))
                })
                .await;
                match due {
                    Ok(Ok((now, due))) => {
                        if std::mem::take(&mut store_failing) {
                            tracing::info!(target: "scheduler", "the store answers again");
                        }
                        self.write_unrecorded();
                        let unrecorded = self.runner.unrecorded();
                        for connection in due {
                            if tasks.len() >= self.workers {
                                break;
                            }
                            // Its failure is not in the store: wait out its backoff here.
                            if unrecorded.held_back(&connection.id, now) {
                                continue;
                            }
                            if self.run_elsewhere(&connection.id) {
                                continue;
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
                    Ok(Err((e, retry_clock))) => {
                        clock_stepped |= retry_clock;
                        if !std::mem::replace(&mut store_failing, true) {
                            tracing::error!(target: "scheduler", "cannot read the due connections (retried every second, logged again when it answers): {e}");
                        }
                    }
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

    /// The store answers: writes what it refused of failed runs, on a
    /// thread of its own (a write may wait out the busy timeout), one pass
    /// at a time.
    fn write_unrecorded(&self) {
        if self.runner.unrecorded().connections().is_empty() || self.writing_unrecorded.swap(true, Ordering::SeqCst) {
            return;
        }
        let (runner, writing) = (self.runner.clone(), self.writing_unrecorded.clone());
        tokio::task::spawn_blocking(move || {
            runner.write_unrecorded();
            writing.store(false, Ordering::SeqCst);
        });
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
            Err(RunFailure::Busy(_)) => {
                tracing::debug!(target: "scheduler", connection = id, "run by another worker");
                // Not when this process's own pass writing what the store
                // refused may hold the lock (it takes the locks of the
                // connections it has kept something for, and is over in a
                // moment): the run is tried again at the next look.
                if !self.runner.unrecorded().connections().iter().any(|kept| kept == id) {
                    self.elsewhere().insert(id.to_owned(), Instant::now() + POLL);
                }
            }
            Err(RunFailure::NotDue(_)) => tracing::debug!(target: "scheduler", connection = id, "no longer due"),
            Err(failure) => tracing::warn!(target: "scheduler", connection = id, "run failed: {failure}"),
        }
        self.running().remove(id);
        self.wake.notify_one();
    }
}

/// Notices the wall clock stepping back, against the monotonic clock.
struct ClockWatch {
    at: std::time::Instant,
    wall_us: i64,
}

impl ClockWatch {
    fn new() -> Self {
        ClockWatch { at: std::time::Instant::now(), wall_us: now_us() }
    }

    /// Whether the wall clock fell behind the monotonic one by more than
    /// [`CLOCK_STEP`] since the last call.
    fn stepped_back(&mut self) -> bool {
        let now = ClockWatch::new();
        let elapsed_us = i64::try_from(now.at.duration_since(self.at).as_micros()).unwrap_or(i64::MAX);
        let behind_us = self.wall_us.saturating_add(elapsed_us).saturating_sub(now.wall_us);
        *self = now;
        behind_us > CLOCK_STEP.as_micros() as i64
    }
}
