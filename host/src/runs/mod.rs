//! One run of a connection, as the command line, the demo, the scheduler,
//! the benchmarks and the tests start it: take the connection's run lock,
//! build the capabilities from the connection and the database, run the
//! component, report. For a stored connection, also its run history and its
//! status and next run (docs/connections.md), and, when the store refuses
//! them, what it would not hold (`unrecorded`, docs/store.md).

pub mod unrecorded;

use secrecy::ExposeSecret;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::capabilities::checkpoint::CheckpointCtx;
use crate::capabilities::config::ConfigCtx;
use crate::capabilities::logging::LoggingCtx;
use crate::capabilities::proxy::{ProxyCtx, ProxyLimits};
use crate::capabilities::records::{Progress, RecordLimits, RecordsCtx, Tally};
use crate::capabilities::StopSignal;
use crate::provider::{Credentials, OAuthCredentials, Pacers, ProviderClient, Quota, RetryPolicy, StaticToken};
use crate::runtime::{Capabilities, InstanceLimits, RunFailure, RunReport, SyncRuntime};
use crate::schedule;
use crate::store::{
    BatchOutcome, Connection, ConnectionStatus, ConnectionUpdate, Outcome, RunEnd, RunRecord, Store, StoreError,
    StoredCredentials, Trigger, WebhookFormat,
};
use crate::time::now_us;
use unrecorded::UnqueuedWebhook;
pub use unrecorded::{Unrecorded, UnwrittenStatus};

/// Every limit of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    pub instance: InstanceLimits,
    pub records: RecordLimits,
    pub proxy: ProxyLimits,
}

/// A connection to run a component for.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    pub connection: String,
    pub base_url: String,
    /// The connection's configuration, as the component reads it (`realmId`, …).
    pub config: BTreeMap<String, String>,
    /// Handed to the provider client only; never logged or shown.
    pub credentials: Arc<dyn Credentials>,
    pub retry: RetryPolicy,
    pub limits: RunLimits,
    /// Overrides the quota the component declares (a local fake has none).
    pub quota: Option<Quota>,
}

impl ConnectionSpec {
    /// A connection with `config` and a fixed access token (or none).
    pub fn new(connection: &str, base_url: &str, config: BTreeMap<String, String>, token: Option<String>) -> Self {
        ConnectionSpec {
            connection: connection.to_owned(),
            base_url: base_url.to_owned(),
            config,
            credentials: Arc::new(StaticToken::new(token)),
            retry: RetryPolicy::default(),
            limits: RunLimits::default(),
            quota: None,
        }
    }
}

/// How the host runs stored connections: retries, limits, a quota override,
/// and how long a failing connection waits before its next try.
#[derive(Debug, Clone, Copy)]
pub struct RunDefaults {
    pub retry: RetryPolicy,
    pub limits: RunLimits,
    pub quota: Option<Quota>,
    /// The wait after the first failure; it doubles with each failure in a
    /// row, up to an hour.
    pub failure_backoff: Duration,
}

impl Default for RunDefaults {
    fn default() -> Self {
        RunDefaults {
            retry: RetryPolicy::default(),
            limits: RunLimits::default(),
            quota: None,
            failure_backoff: Duration::from_secs(30),
        }
    }
}

/// Runs a component for connections stored in one database.
pub struct Runner {
    runtime: Arc<SyncRuntime>,
    db: Store,
    pacers: Pacers,
    stop: StopSignal,
    /// Where webhooks go for connections without their own URL.
    default_webhook_url: Option<String>,
    /// The format of the webhooks of connections that name none.
    default_webhook_format: WebhookFormat,
    /// What the store refused to hold of failed runs, until it takes it.
    unrecorded: Arc<Unrecorded>,
    /// The HTTP clients runs send through, by request timeout: shared, so
    /// that runs reuse open connections (and TLS sessions) to a provider.
    agents: Arc<Mutex<HashMap<Duration, ureq::Agent>>>,
}

fn store_failure(error: StoreError) -> RunFailure {
    RunFailure::Host(anyhow::anyhow!(error))
}

impl Runner {
    pub fn new(runtime: Arc<SyncRuntime>, db: Store) -> Self {
        Runner {
            runtime,
            db,
            pacers: Pacers::default(),
            stop: StopSignal::default(),
            default_webhook_url: None,
            default_webhook_format: WebhookFormat::default(),
            unrecorded: Arc::default(),
            agents: Arc::default(),
        }
    }

    fn agent(&self, timeout: Duration) -> ureq::Agent {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.entry(timeout).or_insert_with(|| crate::provider::client::http_agent(timeout)).clone()
    }

    /// What the store refused to hold of this runner's failed runs (the API
    /// shows it in place of the stored status; the scheduler waits out its
    /// backoff).
    pub fn unrecorded(&self) -> Arc<Unrecorded> {
        self.unrecorded.clone()
    }

    /// Writes what failed runs left unwritten, for each connection whose run
    /// lock is free; what the store still refuses stays kept.
    pub fn write_unrecorded(&self) {
        for id in self.unrecorded.connections() {
            let Ok(Some(_lease)) = self.db.locks.try_lock_run(&id) else { continue };
            match self.unrecorded.write(&id, &self.db) {
                Ok(()) => {
                    tracing::info!(target: "runs", connection = %id, "wrote the failed runs the store had refused")
                }
                Err(e) => tracing::debug!(target: "runs", connection = %id, "the store still refuses: {e}"),
            }
        }
    }

    /// Sends webhooks after runs to `url` for connections without their own.
    /// Webhooks of connections that name no format are sent in `format`.
    pub fn with_webhook_format(mut self, format: WebhookFormat) -> Self {
        self.default_webhook_format = format;
        self
    }

    pub fn with_webhook_url(mut self, url: Option<String>) -> Self {
        self.default_webhook_url = url.filter(|u| !u.is_empty());
        self
    }

    /// Stops every run of this runner at its next provider request (shutdown).
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// How often `connection` runs: its own interval, else the component's
    /// declared frequency, else hourly.
    pub fn interval(&self, connection: &Connection) -> Duration {
        schedule::interval_in_force(connection.every, self.runtime.metadata().interval())
    }

    /// Brings forward the next runs a clock stepped back would postpone by
    /// more than their interval ([`schedule::cap_after_clock_step`]).
    /// Returns how many it moved.
    pub fn cap_schedule_after_clock_step(&self, now_us: i64) -> Result<usize, StoreError> {
        let mut moved = 0;
        for connection in self.db.connections.list()? {
            let failing = connection.status == ConnectionStatus::Failing;
            let interval = self.interval(&connection);
            if let Some(next) = schedule::cap_after_clock_step(connection.next_run_at_us, now_us, interval, failing) {
                let update = ConnectionUpdate { next_run_at_us: Some(Some(next)), ..Default::default() };
                self.db.connections.update(&connection.id, &update)?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// The run of a stored connection: its provider, configuration and credentials.
    pub fn spec_for(&self, connection: &Connection, defaults: &RunDefaults) -> Result<ConnectionSpec, RunFailure> {
        self.stored_spec(connection, defaults).map_err(store_failure)
    }

    fn stored_spec(&self, connection: &Connection, defaults: &RunDefaults) -> Result<ConnectionSpec, StoreError> {
        let stored = self.db.connections.credentials(&connection.id)?;
        let credentials: Arc<dyn Credentials> = match stored {
            Some(StoredCredentials::OAuth { .. }) => Arc::new(OAuthCredentials::new(&connection.id, self.db.clone())),
            Some(StoredCredentials::AccessToken(token)) => {
                Arc::new(StaticToken::new(Some(token.expose_secret().to_owned())))
            }
            None => Arc::new(StaticToken::new(None)),
        };
        Ok(ConnectionSpec {
            connection: connection.id.clone(),
            base_url: connection.base_url.clone(),
            config: connection.config.clone(),
            credentials,
            retry: defaults.retry,
            limits: defaults.limits,
            quota: defaults.quota,
        })
    }

    /// One run of the stored connection `id`, recorded in its history, which
    /// then sets its status and next run.
    pub fn run_connection(
        &self,
        id: &str,
        trigger: Trigger,
        defaults: &RunDefaults,
        progress: Option<Progress>,
    ) -> Result<RunReport, RunFailure> {
        self.run_stored(id, trigger, defaults, progress, None)
    }

    /// Like [`Runner::run_connection`], for the scheduler: once the run lock
    /// is taken, runs only if the connection is still due at `now` (another
    /// worker may have run it since the scheduler read it as due), else
    /// refuses with [`RunFailure::NotDue`].
    pub fn run_if_due(
        &self,
        id: &str,
        trigger: Trigger,
        defaults: &RunDefaults,
        quiet: Duration,
    ) -> Result<RunReport, RunFailure> {
        self.run_stored(id, trigger, defaults, None, Some(quiet))
    }

    fn run_stored(
        &self,
        id: &str,
        trigger: Trigger,
        defaults: &RunDefaults,
        progress: Option<Progress>,
        only_if_due: Option<Duration>,
    ) -> Result<RunReport, RunFailure> {
        let started_us = now_us();
        let lease = match self.db.locks.try_lock_run(id) {
            Ok(Some(lease)) => lease,
            Ok(None) => return Err(RunFailure::Busy(id.to_owned())),
            Err(error) => return Err(self.unbegun(id, trigger, started_us, None, error, defaults)),
        };
        // What an earlier failure left unwritten goes first: its end before
        // this run's start, which would otherwise close it as abandoned.
        if let Err(error) = self.unrecorded.write(id, &self.db) {
            return Err(self.unbegun(id, trigger, started_us, None, error, defaults));
        }
        // Read under the lock: the run before this one may have ended since
        // the caller looked.
        let connection = match self.db.connections.get(id) {
            Ok(Some(connection)) => connection,
            Ok(None) => {
                return Err(RunFailure::Host(anyhow::anyhow!("no connection `{id}` in {}", self.db.describe())));
            }
            Err(error) => return Err(self.unbegun(id, trigger, started_us, None, error, defaults)),
        };
        if let Some(quiet) = only_if_due {
            if schedule::due(&connection.timing(), now_us(), quiet).is_none() {
                return Err(RunFailure::NotDue(id.to_owned()));
            }
        }
        let begun = self.begin(&connection, trigger, only_if_due.is_some(), defaults);
        let (run, abandoned_since, spec) = match begun {
            Ok(begun) => begun,
            Err(error) => return Err(self.unbegun(id, trigger, started_us, Some(&connection), error, defaults)),
        };
        // Nango's webhooks say whether a run started from nothing (a first
        // run, or one after a reset): no checkpoint yet.
        let initial = self.webhook_format(&connection) == WebhookFormat::Nango
            && self
                .db
                .run_writes()
                .and_then(|mut w| w.checkpoints.get(id, &self.runtime.metadata().name))
                .ok()
                .flatten()
                .is_none();

        let tally = Tally::default();
        let result = self.execute(&spec, &run.id, progress, tally.clone());
        // Recorded before the lock goes, so no worker sees it due again.
        let result = self.record_end(&connection, &run, result, defaults);
        drop(lease);
        self.tell(&connection, &run, Told { abandoned_since, initial }, &result, &tally);
        result
    }

    /// The run's record, begun in the history, with when the oldest run
    /// that died untold started, and what it runs.
    fn begin(
        &self,
        connection: &Connection,
        trigger: Trigger,
        scheduled: bool,
        defaults: &RunDefaults,
    ) -> Result<(RunRecord, Option<i64>, ConnectionSpec), StoreError> {
        let trigger = if scheduled && trigger == Trigger::Schedule && connection.next_run_at_us.is_none() {
            // No time set: never run since it was added (a connection removed
            // and added again keeps its history), or asked for by `POST
            // /sync` (which clears the time so the scheduler takes it at once).
            // Only then is the history read.
            let (newest, _) = self.db.runs.list(&connection.id, None, 1)?;
            let never_ran = newest.first().is_none_or(|run| run.started_us < connection.created_us);
            if never_ran {
                Trigger::Schedule
            } else {
                Trigger::Api
            }
        } else {
            trigger
        };
        let spec = self.stored_spec(connection, defaults)?;
        let run = RunRecord {
            id: new_run_id(),
            connection: connection.id.clone(),
            trigger,
            started_us: now_us(),
            ended_us: None,
            outcome: None,
            summary: None,
            error: None,
            worker: Some(worker()),
        };
        // The lock was free: a run of this connection without an end died,
        // and what it stored was never told; this run's webhook covers it.
        let abandoned_since = self.db.runs.begin(&run)?;
        Ok((run, abandoned_since, spec))
    }

    /// A run the store would not let begin: a failed run all the same
    /// (counted, backed off, told when a webhook can be queued), kept here
    /// until the store takes it.
    fn unbegun(
        &self,
        id: &str,
        trigger: Trigger,
        started_us: i64,
        connection: Option<&Connection>,
        error: StoreError,
        defaults: &RunDefaults,
    ) -> RunFailure {
        crate::metrics::store_error(&error);
        crate::metrics::run_ended("failure", 0.0, &BatchOutcome::default());
        let ended = now_us();
        let run = RunRecord {
            id: new_run_id(),
            connection: id.to_owned(),
            trigger,
            started_us,
            ended_us: Some(ended),
            outcome: Some(Outcome::Failure),
            summary: None,
            error: Some(error.to_string()),
            worker: Some(worker()),
        };
        let stored_failures = connection.map_or(0, |c| c.failures);
        let base = defaults.failure_backoff;
        self.unrecorded.keep_run(id, run.clone(), false, stored_failures, |failures| {
            schedule::next_after_failure(ended, failures, base)
        });
        let failure = store_failure(error);
        if let Some(connection) = connection {
            let told = Told { abandoned_since: None, initial: false };
            self.tell(connection, &run, told, &Err(RunFailure::Host(anyhow::anyhow!("{failure}"))), &Tally::default());
        }
        failure
    }

    /// Queues the webhooks of a run that changed something, or failed
    /// (docs/webhooks.md): one per model, delivered later by `serve`.
    /// `modified_after` is where a client reads from to see every change no
    /// webhook told yet: this run's start, or that of an earlier run whose
    /// worker died before it could tell its own.
    fn tell(
        &self,
        connection: &Connection,
        run: &RunRecord,
        told: Told,
        result: &Result<RunReport, RunFailure>,
        tally: &Tally,
    ) {
        let Told { abandoned_since, initial } = told;
        let format = self.webhook_format(connection);
        let Some(url) = connection.webhook_url.clone().or_else(|| self.default_webhook_url.clone()) else { return };
        let (success, error) = match result {
            Ok(_) => (true, None),
            Err(RunFailure::Busy(_) | RunFailure::NotDue(_)) => return,
            Err(failure) => (false, Some(failure.to_string())),
        };
        // A run stopped for a shutdown is no failure (the next run resumes
        // it), but what it stored is told now, like any other change.
        let interrupted = matches!(result, Err(RunFailure::Interrupted(_)));
        let tally = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let metadata = self.runtime.metadata();
        for model in metadata.model_names() {
            let counts = tally.get(&model).copied().unwrap_or_default();
            if (success || interrupted) && !counts.changed() && abandoned_since.is_none() {
                continue;
            }
            let body = WebhookBody {
                connection_id: connection.id.clone(),
                sync: metadata.name.clone(),
                model,
                added: counts.added,
                updated: counts.updated,
                deleted: counts.deleted,
                modified_after: crate::time::format_us(
                    abandoned_since.map_or(run.started_us, |at| at.min(run.started_us)),
                ),
                success,
                error: error.clone(),
            };
            let body = match format {
                WebhookFormat::SyncHost => serde_json::to_string(&body).expect("a webhook body serializes"),
                WebhookFormat::Nango => {
                    let failure = result.as_ref().err().map(|f| (failure_type(f), crate::time::format_us(now_us())));
                    nango_webhook(&body, &connection.integration_key(), initial, run, failure)
                }
            };
            if let Err(e) = self.db.deliveries.enqueue(&connection.id, Some(&run.id), &url, &body, format) {
                // Kept, and queued as soon as the store takes writes again.
                tracing::error!(target: "webhooks", connection = %connection.id, "cannot queue a webhook, kept to queue later: {e}");
                let webhook = UnqueuedWebhook { run: run.id.clone(), url: url.clone(), body, format };
                self.unrecorded.keep_webhook(&connection.id, webhook);
            }
        }
    }

    /// Writes how a run ended to the history and the connection's schedule.
    /// When the store refuses, the run is a failed run (a successful one
    /// fails with the store's error; a failed one keeps its own), and its
    /// end is kept until the store takes it.
    fn record_end(
        &self,
        connection: &Connection,
        run: &RunRecord,
        result: Result<RunReport, RunFailure>,
        defaults: &RunDefaults,
    ) -> Result<RunReport, RunFailure> {
        let ended = now_us();
        // The connection as it is now: its interval may have changed during
        // the run (`PATCH`), and the next run follows the new one.
        let current = self.db.connections.get(&connection.id).ok().flatten();
        let interval = self.interval(current.as_ref().unwrap_or(connection));
        let (outcome, summary, error) = match &result {
            Ok(report) => (Outcome::Success, Some(report.to_json()), None),
            Err(failure) => (Outcome::Failure, None, Some(failure.to_string())),
        };
        let update = match &result {
            Ok(_) => ConnectionUpdate {
                status: Some(ConnectionStatus::Idle),
                status_message: Some(None),
                failures: Some(0),
                next_run_at_us: Some(Some(schedule::next_after_success(run.started_us, interval))),
                ..Default::default()
            },
            // Shutting down is no failure: resume as soon as the host is back.
            Err(RunFailure::Interrupted(_)) => ConnectionUpdate {
                status: Some(ConnectionStatus::Idle),
                next_run_at_us: Some(Some(ended)),
                ..Default::default()
            },
            Err(failure) => {
                if current.as_ref().is_some_and(|c| c.status == ConnectionStatus::NeedsReauth) {
                    // The credentials marked it; keep their message, run no more.
                    ConnectionUpdate::default()
                } else {
                    let failures = connection.failures + 1;
                    ConnectionUpdate {
                        status: Some(ConnectionStatus::Failing),
                        status_message: Some(Some(failure.to_string())),
                        failures: Some(failures),
                        next_run_at_us: Some(Some(schedule::next_after_failure(
                            ended,
                            failures,
                            defaults.failure_backoff,
                        ))),
                        ..Default::default()
                    }
                }
            }
        };
        let end = RunEnd {
            id: &run.id,
            connection: &connection.id,
            ended_us: ended,
            outcome,
            summary: summary.as_deref(),
            error: error.as_deref(),
        };
        let Err(refused) = self.db.runs.end(&end, &update) else { return result };
        tracing::error!(target: "runs", connection = %connection.id, run = %run.id, "cannot record the run's end, kept to record later: {refused}");
        crate::metrics::store_error(&refused);
        let result = match result {
            // Stopped for a shutdown: the next start closes it as abandoned.
            Err(RunFailure::Interrupted(_)) => return result,
            Ok(_) => Err(store_failure(refused)),
            failed => failed,
        };
        let error = result.as_ref().err().map(ToString::to_string);
        let ended_run =
            RunRecord { ended_us: Some(ended), outcome: Some(Outcome::Failure), summary, error, ..run.clone() };
        let base = defaults.failure_backoff;
        self.unrecorded.keep_run(&connection.id, ended_run, true, connection.failures, |failures| {
            schedule::next_after_failure(ended, failures, base)
        });
        result
    }

    pub fn runtime(&self) -> &SyncRuntime {
        &self.runtime
    }

    pub fn database(&self) -> &Store {
        &self.db
    }

    /// One run of `spec`'s connection, not recorded in any history. Refuses
    /// with [`RunFailure::Busy`] when another run holds the connection, in this
    /// process or another.
    pub fn run(&self, spec: &ConnectionSpec, progress: Option<Progress>) -> Result<RunReport, RunFailure> {
        let Some(_lease) = self.db.locks.try_lock_run(&spec.connection).map_err(store_failure)? else {
            return Err(RunFailure::Busy(spec.connection.clone()));
        };
        self.execute(spec, &new_run_id(), progress, Tally::default())
    }

    /// The run itself, the run lock held, counted in the metrics.
    fn execute(
        &self,
        spec: &ConnectionSpec,
        run_id: &str,
        progress: Option<Progress>,
        tally: Tally,
    ) -> Result<RunReport, RunFailure> {
        let started = std::time::Instant::now();
        let result = self.run_component(spec, run_id, progress, tally.clone());
        let changed =
            tally.lock().unwrap_or_else(|p| p.into_inner()).values().fold(Default::default(), |mut all, o| {
                all += *o;
                all
            });
        let outcome = match &result {
            Ok(_) => "success",
            Err(RunFailure::Interrupted(_)) => "interrupted",
            Err(_) => "failure",
        };
        crate::metrics::run_ended(outcome, started.elapsed().as_secs_f64(), &changed);
        result
    }

    /// The component's run with its capabilities; [`Runner::execute`] counts it.
    fn run_component(
        &self,
        spec: &ConnectionSpec,
        run_id: &str,
        progress: Option<Progress>,
        tally: Tally,
    ) -> Result<RunReport, RunFailure> {
        let store_error = store_failure;
        let span = tracing::info_span!("run", connection = %spec.connection, run = %run_id);
        let _entered = span.enter();
        let run_id = run_id.to_owned();
        let metadata = self.runtime.metadata();
        let quota = spec.quota.unwrap_or_else(|| metadata.limits.quota());
        let client = ProviderClient::with_agent(
            self.agent(spec.retry.timeout),
            &spec.base_url,
            spec.credentials.clone(),
            spec.retry,
            self.pacers.get(&spec.connection, quota),
            metadata.limits.throttle_wait(),
        )?;
        let stores = self.db.run_writes().map_err(store_error)?;
        let capabilities = Capabilities {
            proxy: ProxyCtx::new(
                client,
                spec.limits.proxy,
                self.stop.clone(),
                Some(std::time::Instant::now() + spec.limits.instance.deadline),
            ),
            records: RecordsCtx::new(
                stores.records,
                &spec.connection,
                metadata.model_names(),
                spec.limits.records,
                progress,
            )
            .with_tally(tally),
            checkpoint: CheckpointCtx::new(stores.checkpoints, &spec.connection, &metadata.name),
            config: ConfigCtx::new(spec.config.clone()),
            logging: LoggingCtx::new(&spec.connection, &run_id),
        };
        self.runtime.run(&run_id, capabilities, spec.limits.instance)
    }
}

/// What a run's webhooks say besides its result.
#[derive(Debug, Clone, Copy)]
struct Told {
    /// When the oldest run that died untold started.
    abandoned_since: Option<i64>,
    /// The run started without a checkpoint (a first run, or after a reset).
    initial: bool,
}

impl Runner {
    fn webhook_format(&self, connection: &Connection) -> WebhookFormat {
        connection.webhook_format.unwrap_or(self.default_webhook_format)
    }
}

/// Nango's name for the kind of a failure (`error.type` of its sync webhook).
fn failure_type(failure: &RunFailure) -> &'static str {
    match failure {
        RunFailure::Component(_) => "script_error",
        RunFailure::Limit(_) | RunFailure::Trapped(_) => "script_internal_error",
        RunFailure::Interrupted(_) => "sync_interrupted",
        RunFailure::Busy(_) | RunFailure::NotDue(_) | RunFailure::Host(_) => "internal_error",
    }
}

/// The body of Nango's sync webhook (docs/nango.md, "Webhooks") for what
/// `body` says: keys sorted, compact, as Nango serialises it. `failure`:
/// the error's type and when the run failed.
fn nango_webhook(
    body: &WebhookBody,
    integration: &str,
    initial: bool,
    run: &RunRecord,
    failure: Option<(&'static str, String)>,
) -> String {
    let mut value = serde_json::json!({
        "from": "nango",
        "type": "sync",
        "connectionId": body.connection_id,
        "providerConfigKey": integration,
        "syncName": body.sync,
        "syncVariant": "base",
        "model": body.model,
        "syncType": if initial { "INITIAL" } else { "INCREMENTAL" },
        "success": body.success,
        "modifiedAfter": body.modified_after,
        "queryTimeStamp": body.modified_after,
    });
    let fields = value.as_object_mut().expect("an object");
    match failure {
        None => {
            fields.insert(
                "responseResults".into(),
                serde_json::json!({"added": body.added, "updated": body.updated, "deleted": body.deleted}),
            );
        }
        Some((kind, failed_at)) => {
            let description = body.error.clone().unwrap_or_default();
            fields.insert("error".into(), serde_json::json!({"type": kind, "description": description}));
            fields.insert("startedAt".into(), crate::time::format_us(run.started_us).into());
            fields.insert("failedAt".into(), failed_at.into());
        }
    }
    // serde_json's map is ordered by key: the text has its keys sorted.
    serde_json::to_string(&value).expect("a webhook body serializes")
}

/// The body of the webhook a run queues (its shape is in docs/webhooks.md;
/// `serve`'s deliverer sends it as stored).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WebhookBody {
    pub connection_id: String,
    pub sync: String,
    pub model: String,
    pub added: u32,
    pub updated: u32,
    pub deleted: u32,
    /// Read `GET /<endpoint>?modified_after=` this to get every change of the run.
    pub modified_after: String,
    pub success: bool,
    pub error: Option<String>,
}

/// This process, as the run history names it: `host:pid`.
fn worker() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{}:{}", if host.is_empty() { "localhost" } else { &host }, std::process::id())
}

fn new_run_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}
