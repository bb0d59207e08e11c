//! Shared harness of the end-to-end tests: builds the guest `.wasm` and the
//! host binary once, starts the fake QuickBooks and the records API on
//! loopback, runs syncs, and reads the store back through `GET /customers`.

use anyhow::Context as _;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use std::sync::Arc;
use sync_host::runs::{ConnectionSpec, RunLimits, Runner};
use sync_host::runtime::{RunFailure, RunReport, SyncRuntime};
use sync_host::store::{self, Database, OpenMode};

pub use fake_qbo::FakeQbo;
pub use sync_host::providers::quickbooks;

pub const REALM: &str = "9341453050804937";
pub const TOKEN: &str = "e2e-access-token";

/// A fake company: the 33 recorded sandbox customers plus `generated` ones,
/// `archived_fraction` of them archived and the first `crowd` sharing one
/// `LastUpdatedTime` two days before the fake clock's now.
pub fn company(generated: usize, crowd: usize, archived_fraction: f64) -> FakeQbo {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_recorded();
    let shared = fake.now() - chrono::Duration::days(2);
    fake.seed_generated(
        generated,
        &fake_qbo::GenerateOptions { shared_timestamp: Some((crowd, shared)), archived_fraction, ..Default::default() },
    );
    fake
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet"])
        .args(args)
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// The guest component, built with the same command a user runs.
pub fn guest_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo_build(&["--target", "wasm32-wasip2", "-p", "quickbooks-customers"]);
        workspace().join("target/wasm32-wasip2/release/quickbooks_customers.wasm")
    })
}

/// The conformance component (`testing/conformance`), built like the guest.
pub fn conformance_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo_build(&["--target", "wasm32-wasip2", "-p", "conformance-component"]);
        workspace().join("target/wasm32-wasip2/release/conformance_component.wasm")
    })
}

/// The hostile component (`testing/hostile`), built like the guest.
pub fn hostile_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo_build(&["--target", "wasm32-wasip2", "-p", "hostile-component"]);
        workspace().join("target/wasm32-wasip2/release/hostile_component.wasm")
    })
}

/// The Node host's folder.
pub fn node_dir() -> PathBuf {
    workspace().join("host/node")
}

/// Fails with a clear message when Node.js is missing, and installs the Node
/// host's locked dependencies on first use.
pub fn node_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let version = Command::new("node").arg("--version").output();
        match version {
            Ok(out) if out.status.success() => {}
            _ => panic!("the Node host's tests need Node.js >= 20 on PATH (`node --version` failed); install it and rerun"),
        }
        if !node_dir().join("node_modules").exists() {
            let status = Command::new("npm")
                .args(["ci", "--quiet", "--no-audit", "--no-fund"])
                .current_dir(node_dir())
                .status()
                .expect("npm runs (it comes with Node.js)");
            assert!(status.success(), "`npm ci` in host/node failed");
        }
    });
}

/// The `sync-host` binary, for tests of the command line itself.
pub fn host_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(&["-p", "sync-host", "--bin", "sync-host"]);
        workspace().join("target/release/sync-host")
    })
}

/// The compiled component, shared by every test of a binary (compiled once).
pub fn runtime() -> Arc<SyncRuntime> {
    static RUNTIME: OnceLock<Arc<SyncRuntime>> = OnceLock::new();
    RUNTIME.get_or_init(|| Arc::new(SyncRuntime::from_file(guest_wasm()).expect("the guest loads"))).clone()
}

/// Retries that keep outage and throttling tests quick: short backoffs, and at
/// most 1 s per wait, so QuickBooks' advice of 60 s after a 429 becomes 1 s.
/// `Retry-After` is still honoured up to that.
pub fn quick_retries() -> sync_host::provider::RetryPolicy {
    sync_host::provider::RetryPolicy {
        base: std::time::Duration::from_millis(20),
        max_wait: std::time::Duration::from_secs(1),
        budget: std::time::Duration::from_secs(60),
        ..Default::default()
    }
}

/// A test's own database and connection against one fake QuickBooks.
pub struct Harness {
    pub fake: FakeQbo,
    pub base_url: String,
    _server: Option<fake_qbo::RunningFake>,
    _dir: Option<tempfile::TempDir>,
    /// What `--db` says: a SQLite file, or a PostgreSQL URL.
    db_location: String,
    _postgres: Option<std::sync::Arc<PostgresDatabase>>,
    pub connection: String,
}

/// Where a test's host keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A server on which each test makes a database of its own.
    Postgres { admin_url: String },
}

impl Backend {
    /// PostgreSQL, when `SYNC_HOST_TEST_POSTGRES` names a server; otherwise
    /// `None`, after saying how to run these tests.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("SYNC_HOST_TEST_POSTGRES") {
            Ok(admin_url) if !admin_url.is_empty() => Some(Backend::Postgres { admin_url }),
            _ => {
                say_postgres_skipped();
                None
            }
        }
    }
}

/// Says once per test process that the PostgreSQL tests were skipped and how
/// to run them. Written to the process's stderr itself, not through
/// `eprintln!`, which the test harness captures and hides for a passing test.
fn say_postgres_skipped() {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the PostgreSQL end-to-end tests; set SYNC_HOST_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test to run them"
        );
    });
}

/// A database of its own on a PostgreSQL server, dropped with the value.
pub struct PostgresDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PostgresDatabase {
    pub fn create(admin_url: &str) -> Self {
        let name = format!("sync_host_e2e_{:016x}", rand_u64());
        postgres_admin(admin_url, &format!("CREATE DATABASE {name}"));
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url, String::new()),
        };
        let server = base.rsplit_once('/').map(|(server, _)| server).unwrap_or(base);
        PostgresDatabase { url: format!("{server}/{name}{query}"), admin_url: admin_url.to_owned(), name }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        postgres_admin(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    hasher.finish()
}

/// Runs one statement on the server's maintenance database.
fn postgres_admin(admin_url: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, driver) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("the PostgreSQL server of SYNC_HOST_TEST_POSTGRES answers: {e}"));
        tokio::spawn(driver);
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

impl Harness {
    /// Starts `fake` on loopback with a fresh database.
    pub fn new(fake: FakeQbo) -> Self {
        Self::on(fake, Backend::Sqlite)
    }

    /// Starts `fake` on loopback with a fresh database on `backend`.
    pub fn on(fake: FakeQbo, backend: Backend) -> Self {
        let server = fake.start().expect("fake QuickBooks starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let (db_location, postgres) = match backend {
            Backend::Sqlite => (dir.path().join("records.sqlite").to_str().unwrap().to_owned(), None),
            Backend::Postgres { admin_url } => {
                let database = PostgresDatabase::create(&admin_url);
                (database.url.clone(), Some(std::sync::Arc::new(database)))
            }
        };
        Harness {
            base_url: server.base_url(),
            fake,
            _server: Some(server),
            db_location,
            _postgres: postgres,
            _dir: Some(dir),
            connection: "default".into(),
        }
    }

    /// Starts another company's fake on loopback, sharing `other`'s database.
    pub fn sharing(fake: FakeQbo, other: &Harness, connection: &str) -> Self {
        let server = fake.start().expect("fake QuickBooks starts");
        Harness {
            base_url: server.base_url(),
            fake,
            _server: Some(server),
            db_location: other.db(),
            _postgres: None,
            _dir: None,
            connection: connection.to_owned(),
        }
    }

    /// The test's database, as `--db` names it: a SQLite file or a PostgreSQL URL.
    pub fn db(&self) -> String {
        self.db_location.clone()
    }

    /// The test's database, opened (and created) as the host opens it.
    pub fn database(&self) -> Arc<dyn Database> {
        store::open(&self.db(), OpenMode::Create).expect("the database opens")
    }

    /// The connection as the tests run it: the fake's realm and token, quick retries.
    pub fn spec(&self) -> ConnectionSpec {
        let mut spec = ConnectionSpec::new(&self.connection, &self.base_url, quickbooks::config(REALM), Some(TOKEN.to_string()));
        spec.retry = quick_retries();
        spec
    }

    /// One run of the real component in the real host.
    pub fn run(&self) -> Result<RunReport, RunFailure> {
        self.run_spec(&self.spec())
    }

    pub fn run_with_token(&self, token: Option<String>) -> Result<RunReport, RunFailure> {
        let mut spec = self.spec();
        spec.credentials = Arc::new(sync_host::provider::StaticToken::new(token));
        self.run_spec(&spec)
    }

    pub fn run_with(&self, token: Option<String>, limits: RunLimits) -> Result<RunReport, RunFailure> {
        let mut spec = self.spec();
        spec.credentials = Arc::new(sync_host::provider::StaticToken::new(token));
        spec.limits = limits;
        self.run_spec(&spec)
    }

    pub fn run_spec(&self, spec: &ConnectionSpec) -> Result<RunReport, RunFailure> {
        Runner::new(runtime(), self.database()).run(spec, None)
    }

    /// Runs and expects success.
    pub fn sync(&self) -> RunReport {
        self.run().unwrap_or_else(|e| panic!("run failed: {e}"))
    }

    /// Every record of the connection, through `GET /customers`, paging with `limit`.
    pub fn api_records(&self, query: &str) -> Vec<Value> {
        let api = Api::start(&self.db(), None);
        api.all(query, &self.connection)
    }

    /// The live (not deleted) customers in the store, by id.
    pub fn live_customers(&self) -> std::collections::BTreeMap<String, Value> {
        self.api_records("filter=added,updated&limit=1000")
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("_nango_metadata");
                (r["id"].as_str().unwrap().to_owned(), r)
            })
            .collect()
    }

    /// Asserts that the live records are exactly the upstream active customers, mapped.
    pub fn assert_store_matches_upstream(&self) {
        self.assert_store_matches_upstream_but(&[]);
    }

    /// Like [`Self::assert_store_matches_upstream`], tolerating `extra` ids
    /// still live (customers deleted outright, which only CDC reveals).
    pub fn assert_store_matches_upstream_but(&self, extra_allowed: &[String]) {
        let expected: std::collections::BTreeMap<String, Value> = self
            .fake
            .all_customers()
            .into_iter()
            .filter(|c| c["Active"].as_bool().unwrap_or(true))
            .map(|c| {
                let mapped = map_customer(&c);
                (mapped["id"].as_str().unwrap().to_owned(), mapped)
            })
            .collect();
        let live = self.live_customers();
        let missing: Vec<&String> = expected.keys().filter(|k| !live.contains_key(*k)).collect();
        let extra: Vec<&String> =
            live.keys().filter(|k| !expected.contains_key(*k) && !extra_allowed.contains(k)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "missing from store: {missing:?}; stale in store: {extra:?}");
        for (id, want) in &expected {
            assert_eq!(&live[id], want, "customer {id} is stale");
        }
    }

    /// The same company and database, seen as connection `id`.
    pub fn connection_as(&self, id: &str) -> HarnessView<'_> {
        HarnessView { harness: self, connection: id.to_owned() }
    }

    /// The checkpoint the component saved, parsed.
    pub fn checkpoint(&self) -> Option<Value> {
        let mut store = self.database().checkpoints().unwrap();
        store.get(&self.connection, "customers").unwrap().map(|t| serde_json::from_str(&t).unwrap())
    }
}

/// A [`Harness`] looked at through another connection id.
pub struct HarnessView<'a> {
    harness: &'a Harness,
    connection: String,
}

impl HarnessView<'_> {
    fn with<T>(&self, f: impl FnOnce(&Harness) -> T) -> T {
        let view = Harness {
            fake: self.harness.fake.clone(),
            base_url: self.harness.base_url.clone(),
            _server: None,
            _dir: None,
            db_location: self.harness.db(),
            _postgres: None,
            connection: self.connection.clone(),
        };
        f(&view)
    }

    pub fn assert_store_matches_upstream(&self) {
        self.with(|h| h.assert_store_matches_upstream())
    }

    pub fn api_records(&self, query: &str) -> Vec<Value> {
        self.with(|h| h.api_records(query))
    }

    pub fn live_customers(&self) -> std::collections::BTreeMap<String, Value> {
        self.with(|h| h.live_customers())
    }

    pub fn checkpoint(&self) -> Option<Value> {
        self.with(|h| h.checkpoint())
    }
}

/// Validates a response body against the OpenAPI document's `response`
/// (following a `$ref` to `components/responses`).
pub fn assert_openapi_response(document: &Value, response: &Value, body: &Value) {
    let response = match response.get("$ref") {
        Some(reference) => {
            let name = reference.as_str().unwrap().rsplit('/').next().unwrap();
            &document["components"]["responses"][name]
        }
        None => response,
    };
    assert!(response.is_object(), "the document describes no such response for {body}");
    let mut schema = response["content"]["application/json"]["schema"].clone();
    schema["components"] = document["components"].clone();
    let validator =
        jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema).expect("a valid schema");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "the answer does not match the document: {errors:?}\n{body}");
}

/// Ids in the order QuickBooks pages them: by LastUpdatedTime, ties in table order.
pub fn query_order(fake: &FakeQbo) -> Vec<(String, chrono::DateTime<chrono::FixedOffset>)> {
    let customers: std::collections::HashMap<String, Value> =
        fake.all_customers().into_iter().map(|c| (c["Id"].as_str().unwrap().to_owned(), c)).collect();
    let mut order: Vec<(String, chrono::DateTime<chrono::FixedOffset>)> = fake
        .internal_order()
        .into_iter()
        .filter_map(|id| {
            let c = customers.get(&id)?;
            let at = chrono::DateTime::parse_from_rfc3339(c["MetaData"]["LastUpdatedTime"].as_str()?).ok()?;
            Some((id, at))
        })
        .collect();
    order.sort_by_key(|(_, at)| *at);
    order
}

/// The records API on loopback, over a database.
pub struct Api {
    pub base_url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Api {
    pub fn start(db: &str, api_key: Option<String>) -> Self {
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let db = store::open(db, OpenMode::MustExist).expect("the database opens");
        let state = sync_host::api::ApiState::new(db, api_key, runtime().metadata().endpoints.clone());
        let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio.spawn(async move { axum::serve(listener, sync_host::api::router(state)).await });
        Api { base_url, _runtime: tokio }
    }

    /// GET a path; returns status and JSON body.
    pub fn get(&self, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.get(&format!("{}{}", self.base_url, path_and_query));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = request.call().expect("request reaches the api");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// Every record, following `next_cursor`.
    pub fn all(&self, query: &str, connection: &str) -> Vec<Value> {
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/customers?{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self.get(&path, &[("Connection-Id", connection)]);
            assert_eq!(status, 200, "{body}");
            records.extend(body["records"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return records,
            }
        }
    }
}

/// The Customer model (docs/quickbooks.md), written independently of the
/// guest's code, for comparisons.
pub fn map_customer(c: &Value) -> Value {
    let s = |v: &Value| if v.is_string() { v.clone() } else { Value::Null };
    let address = |a: &Value| {
        if a.is_object() {
            serde_json::json!({
                "city": s(&a["City"]), "line1": s(&a["Line1"]), "postal_code": s(&a["PostalCode"]),
                "country": s(&a["Country"]), "id": a["Id"].as_str().unwrap_or(""),
            })
        } else {
            Value::Null
        }
    };
    let utc = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
            .expect("rfc3339")
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    serde_json::json!({
        "id": c["Id"].as_str().unwrap(),
        "given_name": s(&c["GivenName"]),
        "display_name": s(&c["DisplayName"]),
        "active": c["Active"].as_bool().unwrap_or(true),
        "balance_cents": cents(&c["Balance"]),
        "taxable": c["Taxable"].as_bool().unwrap_or(false),
        "primary_email": s(&c["PrimaryEmailAddr"]["Address"]),
        "primary_phone": s(&c["PrimaryPhone"]["FreeFormNumber"]),
        "bill_address": address(&c["BillAddr"]),
        "ship_address": address(&c["ShipAddr"]),
        "created_at": utc(&c["MetaData"]["CreateTime"]),
        "updated_at": utc(&c["MetaData"]["LastUpdatedTime"]),
    })
}

/// Cents from a JSON number by string arithmetic on its shortest text.
fn cents(balance: &Value) -> i64 {
    if balance.is_null() {
        return 0;
    }
    let text = balance.to_string();
    let negative = text.starts_with('-');
    let digits = text.trim_start_matches('-');
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut fraction: Vec<u8> = fraction.bytes().map(|b| b - b'0').collect();
    fraction.resize(fraction.len().max(3), 0);
    let mut value = whole.parse::<i64>().unwrap() * 100 + i64::from(fraction[0]) * 10 + i64::from(fraction[1]);
    if fraction[2] >= 5 {
        value += 1;
    }
    if negative {
        -value
    } else {
        value
    }
}

/// Runs the `sync-host` binary; returns exit success, stdout and stderr.
pub fn sync_host_cli(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(host_binary())
        .args(args)
        .env_remove("QBO_ACCESS_TOKEN")
        .env_remove("QBO_CLIENT_ID")
        .env_remove("QBO_CLIENT_SECRET")
        .env_remove("QBO_REFRESH_TOKEN")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .context("sync-host runs")?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// `sync-host serve` as a child process on a free loopback port; killed on
/// drop. Everything it prints on stderr is kept, to look for secrets.
pub struct ServeProcess {
    child: std::process::Child,
    pub api: ApiClient,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    pub fn start(db: &str, api_key: Option<&str>) -> Self {
        let mut args = Vec::new();
        if let Some(key) = api_key {
            args.extend(["--api-key", key]);
        }
        Self::start_with(db, &args, &[])
    }

    /// `serve --db <db> --listen 127.0.0.1:0 --component <guest> <args>`.
    pub fn start_with(db: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(host_binary())
            .args(["serve", "--db", db, "--listen", "127.0.0.1:0", "--component"])
            .arg(guest_wasm())
            .args(args)
            .env_remove("SYNC_HOST_API_KEY")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sync-host serve starts");
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(address) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    if let Some(tx) = address_tx.take() {
                        let _ = tx.send(address.to_owned());
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let base_url = address_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve printed no address: {:?}", lines.lock().unwrap()));
        ServeProcess { child, api: ApiClient { base_url }, stderr: lines, reader: Some(reader) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it
    /// exited successfully and everything it printed.
    pub fn terminate(mut self) -> (bool, String) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM");
        let exited = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (exited.success(), self.stderr())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sync-host connections add <id> --db <db> --base-url <fake> --realm-id
/// <realm>` plus `args` (credentials, `--every`, …).
pub fn add_connection(db: &str, id: &str, base_url: &str, args: &[&str]) {
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let mut all = vec![
        "connections", "add", id, "--db", db, "--base-url", base_url, "--realm-id", REALM,
        "--component", &wasm,
    ];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = sync_host_cli(&all, &[]).unwrap();
    assert!(ok, "connections add failed: {stdout}{stderr}");
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A blocking client of the records API.
pub struct ApiClient {
    pub base_url: String,
}

impl ApiClient {
    /// Sends a request; returns status, headers and the body (JSON if it parses).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut builder = ureq::http::Request::builder().method(method).uri(format!("{}{}", self.base_url, path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut response = agent.run(builder.body(Vec::<u8>::new()).unwrap()).expect("request reaches the api");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        self.request("GET", path, headers)
    }

    /// Sends a request with a JSON body.
    pub fn send_json(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base_url, path))
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut response = agent.run(builder.body(body.to_string().into_bytes()).unwrap()).expect("request reaches the api");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// A stand-in for the user's application: records every webhook it gets and
/// answers with the status set (204 by default).
pub struct WebhookReceiver {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    _runtime: tokio::runtime::Runtime,
}

impl WebhookReceiver {
    pub fn start() -> Self {
        use std::sync::atomic::{AtomicU16, Ordering};
        type Shared = (std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>, std::sync::Arc<AtomicU16>);
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(AtomicU16::new(204));
        let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route(
                "/hooks",
                axum::routing::post(
                    |axum::extract::State((received, status)): axum::extract::State<Shared>,
                     headers: axum::http::HeaderMap,
                     body: String| async move {
                        let code = status.load(Ordering::SeqCst);
                        if code < 300 {
                            let signature =
                                headers.get("x-sync-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
                            received.lock().unwrap().push((signature, body));
                        }
                        axum::http::StatusCode::from_u16(code).unwrap()
                    },
                ),
            )
            .with_state((received.clone(), status.clone()));
        tokio.spawn(async move { axum::serve(listener, app).await });
        WebhookReceiver { url, received, status, _runtime: tokio }
    }

    /// Answers with `status` from now on (a 5xx or 4xx: nothing is recorded).
    pub fn answer(&self, status: u16) {
        self.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// (signature header, body) of each webhook accepted so far.
    pub fn received(&self) -> Vec<(Option<String>, String)> {
        self.received.lock().unwrap().clone()
    }
}
