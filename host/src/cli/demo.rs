//! `sync-host demo` and `sync-host fake-qbo`: the product end to end with no
//! QuickBooks account, on the bundled fake QuickBooks (`testing/fake-quickbooks`).

use anyhow::Context as _;
use clap::Args;
use fake_qbo::{FakeQbo, GenerateOptions, NotificationFormat, Operation};
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{load_component, RunProgress};
use crate::api::{self, ApiState, Control};
use crate::provider::Quota;
use crate::runs::{RunDefaults, Runner};
use crate::service::{Deliverer, Scheduler};
use crate::store::{
    self, Connection, ConnectionSecrets, ConnectionStatus, OpenMode, RunRecord, Store, StoredCredentials, Trigger,
};

const DEMO_REALM: &str = "9341453050804937";
/// The demo connection's integration (Nango's provider config key).
const DEMO_INTEGRATION: &str = "quickbooks";
const DEMO_TOKEN: &str = "demo-access-token";

#[derive(Args)]
pub struct DemoArgs {
    /// The component (.wasm); defaults to the built guest.
    #[arg(long)]
    component: Option<PathBuf>,
    /// SQLite file to sync into; recreated on every demo (a file the demo
    /// did not make is refused).
    #[arg(long, default_value = "demo.sqlite")]
    db: PathBuf,
    /// Where to serve the API (GET /customers, the control API, webhooks in).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Generated customers besides the 33 recorded sandbox ones.
    #[arg(long, default_value_t = 5000)]
    customers: usize,
    /// Exit after the notified run instead of serving (for scripts, tests and benchmarks).
    #[arg(long)]
    no_serve: bool,
}

#[derive(Args)]
pub struct FakeArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The company's realm id.
    #[arg(long, default_value = DEMO_REALM)]
    realm_id: String,
    /// The bearer token the fake accepts.
    #[arg(long, env = "QBO_ACCESS_TOKEN", hide_env_values = true, default_value = DEMO_TOKEN)]
    token: String,
    /// Generated customers besides the 33 recorded sandbox ones.
    #[arg(long, default_value_t = 0)]
    customers: usize,
    /// Serve this many companies, each with `--customers` generated
    /// customers, its own quota, clock and token endpoint
    /// (`/{realm}/oauth2/v1/tokens/bearer`); `GET /_fake/companies` lists
    /// their realm ids. Without it: the one company `--realm-id`, with the
    /// 33 recorded sandbox customers besides the generated ones.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    companies: Option<u32>,
    /// With `--companies`: wait this long before answering each request, as
    /// the round trip to Intuit's servers would.
    #[arg(long, default_value_t = 0, requires = "companies")]
    latency_ms: u64,
    /// Fraction of generated customers that are archived.
    #[arg(long, default_value_t = 0.1)]
    archived_fraction: f64,
    /// Turn on the OAuth token endpoint (`/oauth2/v1/tokens/bearer`) for this
    /// client id; the first refresh token is printed.
    #[arg(long, requires = "client_secret")]
    client_id: Option<String>,
    /// The OAuth client secret the token endpoint accepts.
    #[arg(long, requires = "client_id")]
    client_secret: Option<String>,
    /// Lifetime of the access tokens the token endpoint issues, in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_secs: u64,
    /// The first refresh token the token endpoint accepts (random if not
    /// given); it rotates on first use, like Intuit's.
    #[arg(long, requires = "client_id", value_parser = super::connections::parse_secret)]
    refresh_token: Option<super::connections::Secret>,
}

impl FakeArgs {
    /// The first refresh token asked for, if any.
    #[cfg(test)]
    pub(super) fn refresh_token_given(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(|t| t.0.expose_secret())
    }
}

fn seeded(realm_id: &str, token: &str, customers: usize, archived_fraction: f64) -> FakeQbo {
    let fake = FakeQbo::new(realm_id, token);
    fake.seed_recorded();
    if customers > 0 {
        // A crowd sharing one timestamp (a bulk import): the case offset
        // paging gets wrong. Capped: QuickBooks (and the fake) skip through a
        // group one row at a time, so a crowd of N costs N²/2000 rows read.
        let crowd = (customers / 4).clamp(1, 10_000);
        let shared = fake.now() - chrono::Duration::days(3);
        fake.seed_generated(
            customers,
            &GenerateOptions { shared_timestamp: Some((crowd, shared)), archived_fraction, ..Default::default() },
        );
    }
    fake
}

/// Runs the fake until interrupted; prints its base URL first.
pub fn fake_qbo(args: FakeArgs) -> anyhow::Result<()> {
    if let Some(count) = args.companies {
        return fake_companies(args, count as usize);
    }
    let fake = seeded(&args.realm_id, &args.token, args.customers, args.archived_fraction);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let base = format!("http://{}", listener.local_addr()?);
        println!("fake QuickBooks on {base} (realm {})", args.realm_id);
        if let (Some(client_id), Some(client_secret)) = (&args.client_id, &args.client_secret) {
            let refresh_token = match &args.refresh_token {
                Some(given) => {
                    fake.enable_oauth_with_refresh_token(client_id, client_secret, given.0.expose_secret());
                    given.0.expose_secret().to_owned()
                }
                None => fake.enable_oauth(client_id, client_secret),
            };
            fake.set_access_token_lifetime(std::time::Duration::from_secs(args.access_token_secs));
            println!("token endpoint {base}/oauth2/v1/tokens/bearer");
            println!("refresh token {refresh_token}");
        }
        std::io::stdout().flush()?;
        tokio::select! {
            result = fake.serve(listener) => result,
            _ = super::shutdown_signal() => Ok(()),
        }
    })
}

/// `fake-qbo --companies N`: many companies on one address.
fn fake_companies(args: FakeArgs, count: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.client_id.is_none() || args.refresh_token.is_some(),
        "with --companies, give --refresh-token: every company's token endpoint accepts it once"
    );
    let started = std::time::Instant::now();
    let companies = fake_qbo::FakeCompanies::generate(count, args.customers, args.archived_fraction, &args.token)
        .with_latency(Duration::from_millis(args.latency_ms));
    if let (Some(client_id), Some(client_secret), Some(refresh)) =
        (&args.client_id, &args.client_secret, &args.refresh_token)
    {
        companies.enable_oauth(client_id, client_secret, refresh.0.expose_secret());
        for realm in companies.realm_ids() {
            let company = companies.company(realm).expect("a listed company");
            company.set_access_token_lifetime(std::time::Duration::from_secs(args.access_token_secs));
        }
    }
    let seeded_in = started.elapsed();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let base = format!("http://{}", listener.local_addr()?);
        let realms = companies.realm_ids();
        println!(
            "fake QuickBooks on {base} ({count} companies of {} customers, realms {} to {}, seeded in {seeded_in:.1?}; \
             GET {base}/_fake/companies lists them)",
            args.customers,
            realms.first().map_or("", String::as_str),
            realms.last().map_or("", String::as_str),
        );
        std::io::stdout().flush()?;
        tokio::select! {
            result = companies.serve(listener) => result,
            _ = super::shutdown_signal() => Ok(()),
        }
    })
}

/// Secrets of the demo's own fake company and receiver: not secrets at all.
const DEMO_CLIENT_ID: &str = "demo-client";
const DEMO_CLIENT_SECRET: &str = "demo-client-secret";
const DEMO_VERIFIER: &str = "demo-verifier-token";
const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret";

fn listen_early(address: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(address).with_context(|| format!("cannot listen on {address} (use --listen)"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The demo recreates its database on every run; it refuses to replace a file
/// that is not one it made: anything but a SQLite database whose only
/// connection is the demo's, with nothing stored under another. Read only, so
/// a refused file is left exactly as it was.
fn refuse_a_database_not_the_demos(path: &std::path::Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let refuse = |why: String| {
        anyhow::anyhow!("{} exists and {why}; the demo recreates its database, so give another --db", path.display())
    };
    let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| refuse(format!("is not a database the demo made ({e})")))?;
    let demo_realm = format!("%\"{DEMO_REALM}\"%");
    let others: rusqlite::Result<(i64, i64)> = db.query_row(
        "SELECT (SELECT count(*) FROM connections WHERE id <> ?1 OR config NOT LIKE ?2),
                (SELECT count(*) FROM scopes WHERE connection <> ?1)",
        rusqlite::params![api::DEFAULT_CONNECTION, demo_realm],
        |row| Ok((row.get(0)?, row.get(1)?)),
    );
    match others {
        Ok((0, 0)) => Ok(()),
        Ok(_) => Err(refuse("holds connections or records that are not the demo's".into())),
        Err(e) => Err(refuse(format!("is not a database the demo made ({e})"))),
    }
}

/// The main job on embedded defaults: a fake QuickBooks company, a stored
/// connection with OAuth, a full sync; then upstream changes, QuickBooks'
/// signed notification, the incremental run it triggers, and the webhook
/// your application would receive; then the API until Ctrl-C.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // Both checked before anything is built or written: a busy address, or a
    // file the demo did not make, would otherwise be found only after it.
    let listener = if args.no_serve { None } else { Some(listen_early(&args.listen)?) };
    refuse_a_database_not_the_demos(&args.db)?;
    let runtime = load_component(args.component)?;

    let fake = seeded(DEMO_REALM, DEMO_TOKEN, args.customers, 0.1);
    let refresh_token = fake.enable_oauth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
    let server = fake.start()?;
    println!("fake QuickBooks on {} with {} customers (realm {DEMO_REALM})", server.base_url(), fake.len());

    for suffix in ["", "-wal", "-shm"] {
        let mut path = args.db.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(path));
    }
    let db = store::open(&args.db.to_string_lossy(), OpenMode::Create)?;
    let tokio = tokio::runtime::Runtime::new()?;
    let receiver = tokio.block_on(receiver::start())?;
    let connection = Connection {
        id: api::DEFAULT_CONNECTION.into(),
        provider: crate::providers::Provider::name(&crate::providers::quickbooks::QuickBooks).into(),
        base_url: server.base_url(),
        config: BTreeMap::from([("realmId".to_owned(), DEMO_REALM.to_owned())]),
        every: None,
        paused: false,
        status: ConnectionStatus::Idle,
        status_message: None,
        failures: 0,
        next_run_at_us: None,
        webhook_url: Some(receiver.url.clone()),
        webhook_format: None,
        integration: Some(DEMO_INTEGRATION.into()),
        notified_at_us: None,
        created_us: 0,
        updated_us: 0,
    };
    let credentials = StoredCredentials::OAuth {
        token_url: format!("{}/oauth2/v1/tokens/bearer", server.base_url()),
        client_id: DEMO_CLIENT_ID.into(),
        client_secret: DEMO_CLIENT_SECRET.into(),
        refresh_token: refresh_token.into(),
        access_token: None,
        access_expires_us: None,
        access_issued_us: None,
    };
    let secrets = ConnectionSecrets { webhook_secret: Some(DEMO_WEBHOOK_SECRET.into()), verifier_token: None };
    db.connections.insert(&connection, &credentials, &secrets)?;
    println!("connection `{}`: OAuth with the fake's token endpoint; webhooks to {}", connection.id, receiver.url);

    // The fake runs on loopback and has no quota: QuickBooks' 500 a minute
    // would make a demo of a million customers last minutes.
    let defaults = RunDefaults { quota: Some(Quota::default()), ..Default::default() };
    let runner = Arc::new(Runner::new(runtime.clone(), db.clone()));
    let progress = RunProgress::new("full sync");
    let report = runner.run_connection(&connection.id, Trigger::Cli, &defaults, Some(progress.callback()));
    progress.finish();
    let report = report.context("full sync failed")?;
    println!("full sync: {} in {:.2?}", report.to_json(), report.elapsed);

    let unrecorded = runner.unrecorded();
    let scheduler = Scheduler::new(runner, defaults, 2, Duration::from_secs(1));
    let deliverer = Deliverer::new(db.clone(), None, Default::default());
    let control = Control {
        waker: Some(scheduler.waker()),
        component_interval: runtime.metadata().interval(),
        verifier_token: Some(DEMO_VERIFIER.into()),
        sync_name: runtime.metadata().name.clone(),
        unrecorded: Some(unrecorded),
    };
    let state = ApiState::new(db.clone(), None, runtime.metadata().endpoints.clone()).with_control(control);
    tokio.block_on(async move {
        let listener = match listener {
            Some(listener) => tokio::net::TcpListener::from_std(listener)?,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        };
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let scheduled = tokio::spawn(scheduler.run(stopped.clone()));
        let delivering = tokio::spawn(deliverer.run(stopped.clone()));
        let mut serving_stopped = stopped.clone();
        let serving = tokio::spawn(async move {
            axum::serve(listener, api::router(state))
                .with_graceful_shutdown(async move {
                    let _ = serving_stopped.changed().await;
                })
                .await
        });

        // Upstream changes, an hour later, and QuickBooks' notification of them.
        fake.advance(chrono::Duration::hours(1));
        let ids = fake.ids();
        let mut changed = Vec::new();
        for id in ids.iter().take(3) {
            fake.update(id, |c| {
                c.insert("DisplayName".into(), serde_json::Value::String(format!("Renamed customer {id}")));
            });
            changed.push((id.clone(), Operation::Update));
        }
        for id in ids.iter().skip(3).take(2) {
            fake.archive(id);
            changed.push((id.clone(), Operation::Update));
        }
        let added = fake
            .insert(serde_json::json!({"DisplayName": "Brand-new customer", "GivenName": "Ada", "Balance": 314.28}));
        changed.push((added, Operation::Create));
        println!("\nupstream: 3 customers renamed, 2 archived, 1 added");
        let notify_url = format!("{base}/webhooks/quickbooks");
        let notifier = fake.clone();
        let sent = changed.clone();
        let status = tokio::task::spawn_blocking(move || {
            let changes: Vec<(&str, Operation)> = sent.iter().map(|(id, op)| (id.as_str(), *op)).collect();
            notifier.notify(&notify_url, DEMO_VERIFIER, NotificationFormat::CloudEvents, &changes)
        })
        .await??;
        println!(
            "QuickBooks notified {base}/webhooks/quickbooks of {} changes (CloudEvents, signed): HTTP {status}",
            changed.len()
        );
        let run = wait_for_run(&db, Trigger::Webhook).await?;
        println!("the notification triggered an incremental run: {}", run.summary.unwrap_or_default());
        // One webhook for the full sync, one for the notified run.
        for _ in 0..2 {
            let delivery =
                tokio::time::timeout(Duration::from_secs(30), receiver.next()).await.context("no webhook arrived")?;
            println!("your application received a webhook (signature verified): {delivery}");
        }

        if args.no_serve {
            println!("records in {}", args.db.display());
        } else {
            println!("\nserving on {base} (Ctrl-C to stop); the scheduler runs the connection hourly.");
            println!("The dashboard (connections, runs, records; run it now from there): {base}/ui");
            println!("Or try:");
            println!("  curl -s '{base}/customers?limit=2'");
            println!("  curl -s '{base}/customers?filter=deleted'");
            println!("  curl -s '{base}/customers?filter=updated&limit=5'");
            println!("  curl -s '{base}/customers?modified_after=2020-01-01T00:00:00Z&limit=1'");
            println!("  curl -s '{base}/customers?limit=0'   # a clear 400");
            println!("  curl -s '{base}/connections/default'");
            println!("  curl -s '{base}/connections/default/runs'");
            println!("  curl -s -X POST '{base}/connections/default/sync'");
            println!("  curl -s '{base}/metrics'");
            println!("  curl -s '{base}/openapi.json'");
            super::shutdown_signal().await;
        }
        let _ = stop.send(true);
        serving.await??;
        scheduled.await?;
        delivering.await?;
        drop(server);
        anyhow::Ok(())
    })
}

/// Waits for the newest run with `trigger` to end.
async fn wait_for_run(db: &Store, trigger: Trigger) -> anyhow::Result<RunRecord> {
    let started = std::time::Instant::now();
    loop {
        let db = db.clone();
        let runs = tokio::task::spawn_blocking(move || db.runs.list(api::DEFAULT_CONNECTION, None, 10)).await??.0;
        if let Some(run) = runs.into_iter().find(|r| r.trigger == trigger && r.outcome.is_some()) {
            if let Some(error) = &run.error {
                anyhow::bail!("the {} run failed: {error}", trigger.as_str());
            }
            return Ok(run);
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "no {} run within 2 minutes", trigger.as_str());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stand-in for the user's application: receives the host's webhooks and
/// checks their signature.
mod receiver {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use tokio::sync::mpsc;

    pub struct Receiver {
        pub url: String,
        received: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    }

    impl Receiver {
        /// The next webhook, as a line to print.
        pub async fn next(&self) -> String {
            self.received.lock().await.recv().await.unwrap_or_default()
        }
    }

    async fn receive(
        State(sender): State<mpsc::UnboundedSender<String>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let signature = headers.get(crate::service::webhooks::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        if signature != Some(crate::service::webhooks::sign(super::DEMO_WEBHOOK_SECRET, &body).as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
        let _ = sender.send(String::from_utf8_lossy(&body).into_owned());
        StatusCode::NO_CONTENT
    }

    pub async fn start() -> anyhow::Result<Receiver> {
        let (sender, received) = mpsc::unbounded_channel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks/sync", listener.local_addr()?);
        let app = axum::Router::new().route("/hooks/sync", axum::routing::post(receive)).with_state(sender);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver { url, received: tokio::sync::Mutex::new(received) })
    }
}
