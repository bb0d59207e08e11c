//! `sync-host demo` and `sync-host fake-qbo`: the product end to end with no
//! QuickBooks account, on the bundled fake QuickBooks.

use anyhow::Context as _;
use clap::Args;
use fake_qbo::{FakeQbo, GenerateOptions};
use std::io::Write as _;
use std::path::PathBuf;

use super::{load_component, RunProgress};
use crate::api::{self, ApiState};
use crate::provider::Quota;
use crate::runs::{ConnectionSpec, Runner};
use crate::store::{self, OpenMode};

const DEMO_REALM: &str = "9341453050804937";
const DEMO_TOKEN: &str = "demo-access-token";

#[derive(Args)]
pub struct DemoArgs {
    /// The component (.wasm); defaults to the built guest.
    #[arg(long)]
    component: Option<PathBuf>,
    /// SQLite file to sync into; recreated on every demo.
    #[arg(long, default_value = "demo.sqlite")]
    db: PathBuf,
    /// Where to serve GET /customers.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Generated customers besides the 33 recorded sandbox ones.
    #[arg(long, default_value_t = 5000)]
    customers: usize,
    /// Exit after syncing instead of serving (for scripts and tests).
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
    let fake = seeded(&args.realm_id, &args.token, args.customers, args.archived_fraction);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let base = format!("http://{}", listener.local_addr()?);
        println!("fake QuickBooks on {base} (realm {})", args.realm_id);
        if let (Some(client_id), Some(client_secret)) = (&args.client_id, &args.client_secret) {
            let refresh_token = fake.enable_oauth(client_id, client_secret);
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

/// The main job on embedded defaults.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = load_component(args.component)?;

    let fake = seeded(DEMO_REALM, DEMO_TOKEN, args.customers, 0.1);
    let server = fake.start()?;
    println!(
        "fake QuickBooks on {} with {} customers (realm {DEMO_REALM})",
        server.base_url(),
        fake.len()
    );

    for suffix in ["", "-wal", "-shm"] {
        let mut path = args.db.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(path));
    }
    let mut spec =
        ConnectionSpec::new(api::DEFAULT_CONNECTION, &server.base_url(), DEMO_REALM, Some(DEMO_TOKEN.into()));
    // The fake runs on loopback and has no quota: QuickBooks' 500 a minute
    // would make a demo of a million customers last minutes.
    spec.quota = Some(Quota::default());
    let db = store::open(&args.db.to_string_lossy(), OpenMode::Create)?;
    let runner = Runner::new(runtime.clone(), db.clone());
    let sync = |label: &str| -> anyhow::Result<()> {
        let progress = RunProgress::new(label);
        let report = runner.run(&spec, Some(progress.callback())).with_context(|| format!("{label} failed"));
        progress.finish();
        let report = report?;
        println!("{label}: {} in {:.2?}", report.to_json(), report.elapsed);
        Ok(())
    };

    sync("full sync")?;
    // Some upstream changes, an hour later, for the incremental run to pick up.
    fake.advance(chrono::Duration::hours(1));
    let ids = fake.ids();
    for id in ids.iter().take(3) {
        fake.update(id, |c| {
            c.insert("DisplayName".into(), serde_json::Value::String(format!("Renamed customer {id}")));
        });
    }
    for id in ids.iter().skip(3).take(2) {
        fake.archive(id);
    }
    fake.insert(serde_json::json!({"DisplayName": "Brand-new customer", "GivenName": "Ada", "Balance": 314.28}));
    println!("upstream: 3 customers renamed, 2 archived, 1 added");
    sync("incremental sync")?;

    if args.no_serve {
        println!("records in {}", args.db.display());
        return Ok(());
    }
    let state = ApiState::new(db, None, runtime.metadata().endpoints.clone());
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (use --listen)", args.listen))?;
        let base = format!("http://{}", listener.local_addr()?);
        println!("\nserving GET /customers on {base} (Ctrl-C to stop). Try:");
        println!("  curl -s '{base}/customers?limit=2'");
        println!("  curl -s '{base}/customers?filter=deleted'");
        println!("  curl -s '{base}/customers?filter=updated&limit=5'");
        println!("  curl -s '{base}/customers?modified_after=2020-01-01T00:00:00Z&limit=1'");
        println!("  curl -s '{base}/customers?limit=0'   # a clear 400");
        println!("  curl -s '{base}/openapi.json'");
        axum::serve(listener, api::router(state)).with_graceful_shutdown(super::shutdown_signal()).await?;
        drop(server);
        anyhow::Ok(())
    })
}
