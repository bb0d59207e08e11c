//! One run of a connection, as the command line, the demo, the scheduler,
//! the benchmarks and the tests start it: take the connection's run lock,
//! build the capabilities from the connection and the database, run the
//! component, report.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::capabilities::checkpoint::CheckpointCtx;
use crate::capabilities::config::ConfigCtx;
use crate::capabilities::logging::LoggingCtx;
use crate::capabilities::proxy::{ProxyCtx, ProxyLimits};
use crate::capabilities::records::{Progress, RecordLimits, RecordsCtx};
use crate::provider::{Credentials, Pacers, ProviderClient, Quota, RetryPolicy, StaticToken};
use crate::runtime::{Capabilities, InstanceLimits, RunFailure, RunReport, SyncRuntime};
use crate::store::Database;

/// Every limit of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    pub instance: InstanceLimits,
    pub records: RecordLimits,
    pub proxy: ProxyLimits,
}

/// A connection to run a component for.
#[derive(Clone)]
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
    /// A QuickBooks-style connection: `realmId` and a fixed access token.
    pub fn new(connection: &str, base_url: &str, realm_id: &str, token: Option<String>) -> Self {
        ConnectionSpec {
            connection: connection.to_owned(),
            base_url: base_url.to_owned(),
            config: BTreeMap::from([("realmId".to_owned(), realm_id.to_owned())]),
            credentials: Arc::new(StaticToken::new(token)),
            retry: RetryPolicy::default(),
            limits: RunLimits::default(),
            quota: None,
        }
    }
}

impl std::fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are deliberately not shown.
        f.debug_struct("ConnectionSpec")
            .field("connection", &self.connection)
            .field("base_url", &self.base_url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Runs a component for connections stored in one database.
pub struct Runner {
    runtime: Arc<SyncRuntime>,
    db: Arc<dyn Database>,
    pacers: Pacers,
}

impl Runner {
    pub fn new(runtime: Arc<SyncRuntime>, db: Arc<dyn Database>) -> Self {
        Runner { runtime, db, pacers: Pacers::default() }
    }

    pub fn runtime(&self) -> &SyncRuntime {
        &self.runtime
    }

    pub fn database(&self) -> &Arc<dyn Database> {
        &self.db
    }

    /// One run of `spec`'s connection. Refuses with [`RunFailure::Busy`] when
    /// another run holds the connection, in this process or another.
    pub fn run(&self, spec: &ConnectionSpec, progress: Option<Progress>) -> Result<RunReport, RunFailure> {
        let store_error = |e: crate::store::StoreError| RunFailure::Host(anyhow::anyhow!(e));
        let Some(_lease) = self.db.try_lock_run(&spec.connection).map_err(store_error)? else {
            return Err(RunFailure::Busy(spec.connection.clone()));
        };
        let run_id = new_run_id();
        let span = tracing::info_span!("run", connection = %spec.connection, run = %run_id);
        let _entered = span.enter();
        let metadata = self.runtime.metadata();
        let quota = spec.quota.unwrap_or_else(|| metadata.limits.quota());
        let client = ProviderClient::new(
            &spec.base_url,
            spec.credentials.clone(),
            spec.retry,
            self.pacers.get(&spec.connection, quota),
            metadata.limits.throttle_wait(),
        )?;
        let stores = self.db.run_stores().map_err(store_error)?;
        let capabilities = Capabilities {
            proxy: ProxyCtx::new(client, spec.limits.proxy),
            records: RecordsCtx::new(
                stores.records,
                &spec.connection,
                metadata.model_names(),
                spec.limits.records,
                progress,
            ),
            checkpoint: CheckpointCtx::new(stores.checkpoints, &spec.connection, &metadata.name),
            config: ConfigCtx::new(spec.config.clone()),
            logging: LoggingCtx::new(&spec.connection, &run_id),
        };
        self.runtime.run(&run_id, capabilities, spec.limits.instance)
    }
}

fn new_run_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}
