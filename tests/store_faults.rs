//! The store failing under a running `sync-host serve --schedule`
//! (docs/store.md, "When the store fails"): PostgreSQL stopped mid-run and
//! started again, PostgreSQL turned read-only, a full disk under SQLite, a
//! SQLite write lock held by another process past the busy timeout, and a
//! next run set by a clock that has since stepped back. Each with real
//! processes; PostgreSQL is a server of the test's own (`PrivatePostgres`),
//! the disk a small tmpfs the test mounts. Each ends with the store equal
//! to the fake's truth, with no restart of `serve`.

use e2e_tests::*;
use fake_qbo::RequestKind;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CONNECTION: &str = "acme";

/// `serve --schedule <args>`, logging warnings (each failed run is one).
fn serve(db: &str, args: &[&str]) -> ServeProcess {
    let all: Vec<&str> = ["--schedule"].into_iter().chain(args.iter().copied()).collect();
    ServeProcess::start_with(db, &all, &[("RUST_LOG", "warn")])
}

fn add(harness: &Harness, every: &str) {
    add_connection(&harness.db(), CONNECTION, &harness.base_url, &["--access-token", TOKEN, "--every", every]);
}

/// Status, `Retry-After` and JSON body of a GET.
fn get_with_retry_after(serve: &ServeProcess, path: &str) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.get(&format!("{}{path}", serve.api.base_url)).call().expect("the API answers");
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, retry_after, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Waits until `check` holds; on a timeout, the panic shows what `serve` logged.
fn wait_for(serve: &ServeProcess, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; serve logged:\n{}",
            serve.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connection(serve: &ServeProcess) -> Value {
    let (status, body) = serve.api.get(&format!("/connections/{CONNECTION}"), &[]);
    assert_eq!(status, 200, "{body}");
    body
}

/// The finished runs, newest first.
fn finished_runs(serve: &ServeProcess) -> Vec<Value> {
    let (status, body) = serve.api.get(&format!("/connections/{CONNECTION}/runs?limit=1000"), &[]);
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().iter().filter(|r| !r["outcome"].is_null()).cloned().collect()
}

fn successes(serve: &ServeProcess) -> usize {
    finished_runs(serve).iter().filter(|r| r["outcome"] == "success").count()
}

/// Waits for a successful run after the `seen` ones so far.
fn wait_for_success_after(serve: &ServeProcess, seen: usize, timeout: Duration) {
    wait_for(serve, "a successful run", timeout, || successes(serve) > seen);
}

/// Edits upstream while the store is away: one updated, one archived, one new.
fn edit_upstream(harness: &Harness) -> String {
    let ids = harness.fake.ids();
    harness.fake.advance(chrono::Duration::seconds(5));
    harness.fake.update(&ids[3], |c| {
        c.insert("DisplayName".into(), json!("Edited while the store was away"));
    });
    harness.fake.archive(&ids[4]);
    harness.fake.insert(json!({"DisplayName": "Added while the store was away"}))
}

/// The history names each failure by its cause, and no run was closed as
/// abandoned: the runs whose end the store refused kept their own error.
fn assert_failures_named(serve: &ServeProcess, cause: &str) {
    let runs = finished_runs(serve);
    let failures: Vec<&Value> = runs.iter().filter(|r| r["outcome"] == "failure").collect();
    assert!(!failures.is_empty(), "a failed run is in the history: {runs:?}");
    for run in &failures {
        let error = run["error"].as_str().unwrap_or_default();
        assert!(error.contains(cause), "the failure names `{cause}`: {run}");
    }
    assert!(
        runs.iter().all(|r| !r["error"].as_str().unwrap_or_default().contains("died or was killed")),
        "no run lost its error to `abandoned`: {runs:?}"
    );
}

fn metric(serve: &ServeProcess, name: &str) -> f64 {
    let (status, text) = serve.api.get("/metrics", &[]);
    assert_eq!(status, 200, "{text}");
    let text = text.as_str().unwrap().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn serve_lines(serve: &ServeProcess, containing: &str) -> usize {
    serve.stderr().lines().filter(|l| l.contains(containing)).count()
}

#[test]
fn postgres_stopped_mid_run_and_started_again_needs_no_restart_and_loses_nothing() {
    let Some(postgres) = PrivatePostgres::start() else { return };
    let postgres = Arc::new(postgres);
    let harness = Harness::at(company(2500, 10, 0.0), &postgres.url());
    add(&harness, "2s");
    let serve = serve(&harness.db(), &["--failure-backoff-secs", "1"]);
    let pid = serve.pid();
    wait_for_success_after(&serve, 0, Duration::from_secs(60));

    // The next full pass stops the server between two pages of a run.
    let queries = Arc::new(AtomicUsize::new(0));
    let (counted, stopper) = (queries.clone(), postgres.clone());
    harness.fake.on_request(move |request, _| {
        if matches!(request.kind, RequestKind::Query) && counted.fetch_add(1, Ordering::SeqCst) == 1 {
            stopper.stop();
        }
        None
    });
    let (reset, body) =
        serve.api.send_json("POST", &format!("/connections/{CONNECTION}/sync"), &[], &json!({"reset": true}));
    assert_eq!(reset, 202, "{body}");
    wait_until("PostgreSQL to be stopped mid-run", Duration::from_secs(60), || queries.load(Ordering::SeqCst) >= 2);
    let new_id = edit_upstream(&harness);

    // While it is away: 503 with Retry-After and the cause, never 500; the
    // metrics still answer and say so.
    wait_until("the API to say the store is unavailable", Duration::from_secs(30), || {
        get_with_retry_after(&serve, &format!("/connections/{CONNECTION}")).0 == 503
    });
    let (status, retry_after, body) = get_with_retry_after(&serve, &format!("/connections/{CONNECTION}"));
    assert_eq!((status, retry_after.as_deref()), (503, Some("5")), "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("store unavailable: "), "{body}");
    let (status, _, records) = get_with_retry_after(&serve, "/customers");
    assert_eq!(status, 503, "{records}");
    assert_eq!(metric(&serve, "sync_store_up"), 0.0);
    std::thread::sleep(Duration::from_secs(4));
    for poll in ["cannot read the due connections", "cannot read the pending deliveries"] {
        assert!(serve_lines(&serve, poll) <= 1, "the outage is logged once, not every poll: {}", serve.stderr());
    }

    harness.fake.clear_hooks();
    postgres.start_again();
    let seen = successes(&serve);
    wait_for_success_after(&serve, seen, Duration::from_secs(60));
    assert_eq!(serve.pid(), pid, "the same process throughout");
    assert_eq!(metric(&serve, "sync_store_up"), 1.0);
    assert_failures_named(&serve, "store unavailable: ");
    harness.connection_as(CONNECTION).assert_store_matches_upstream();
    assert!(harness.connection_as(CONNECTION).live_customers().contains_key(&new_id));
}

#[test]
fn a_read_only_postgres_fails_runs_visibly_with_a_backoff_and_keeps_their_webhooks() {
    let Some(postgres) = PrivatePostgres::start() else { return };
    let harness = Harness::at(company(300, 10, 0.0), &postgres.url());
    add(&harness, "1s");
    let receiver = WebhookReceiver::start();
    let serve = serve(
        &harness.db(),
        &["--failure-backoff-secs", "1", "--webhook-url", &receiver.url, "--webhook-secret", "whsec-store-faults"],
    );
    wait_for_success_after(&serve, 0, Duration::from_secs(60));
    wait_until("the first run's webhook", Duration::from_secs(30), || !receiver.received().is_empty());

    postgres.psql("ALTER SYSTEM SET default_transaction_read_only = on");
    postgres.psql("SELECT pg_reload_conf()");
    let new_id = edit_upstream(&harness);
    wait_for(&serve, "the connection to show the failure", Duration::from_secs(30), || {
        connection(&serve)["status"] == "failing"
    });
    let shown = connection(&serve);
    assert!(shown["status_message"].as_str().unwrap().contains("store read-only: "), "{shown}");
    // Backing off (1, 2, 4, 8 s …), not a tight loop.
    let failures = r#"sync_runs_total{outcome="failure"}"#;
    let failed_before = metric(&serve, failures);
    std::thread::sleep(Duration::from_secs(8));
    let failed = metric(&serve, failures) - failed_before;
    assert!((1.0..=5.0).contains(&failed), "{failed} failed runs in 8 s: {}", serve.stderr());
    assert!(serve_lines(&serve, "run failed: store read-only: ") >= 2, "{}", serve.stderr());
    assert!(metric(&serve, r#"sync_store_errors_total{kind="read_only"}"#) >= 1.0);

    let delivered_before = receiver.received().len();
    postgres.psql("ALTER SYSTEM RESET default_transaction_read_only");
    postgres.psql("SELECT pg_reload_conf()");
    let seen = successes(&serve);
    wait_for_success_after(&serve, seen, Duration::from_secs(60));
    assert_failures_named(&serve, "store read-only: ");
    harness.connection_as(CONNECTION).assert_store_matches_upstream();
    assert!(harness.connection_as(CONNECTION).live_customers().contains_key(&new_id));
    // The failure's webhook, refused by the store then, is queued and sent now.
    wait_until("the kept failure webhook", Duration::from_secs(30), || {
        receiver.received()[delivered_before..].iter().any(|(_, body)| {
            let body: Value = serde_json::from_str(body).unwrap();
            body["success"] == false && body["error"].as_str().unwrap_or_default().contains("store read-only: ")
        })
    });
}

/// A tmpfs of `megabytes` mounted on a new directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(SmallDisk { dir }),
            Ok(output) => {
                eprintln!(
                    "skipped: cannot mount a small tmpfs (needs root): {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn integrity(db: &str) -> String {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

#[test]
fn a_full_disk_fails_runs_as_store_full_and_the_next_run_after_space_is_back_completes() {
    let Some(disk) = SmallDisk::mount(24) else { return };
    let db = disk.path("records.sqlite");
    let harness = Harness::at(company(500, 10, 0.0), &db);
    add(&harness, "1s");
    let serve = serve(&db, &["--failure-backoff-secs", "1"]);
    wait_for_success_after(&serve, 0, Duration::from_secs(60));

    let filler = disk.fill();
    // More than the WAL's free pages can take: the run must grow the files.
    for n in 0..4000 {
        harness
            .fake
            .insert(json!({"DisplayName": format!("Customer {n} added on a full disk"), "Notes": "x".repeat(500)}));
    }
    let new_id = edit_upstream(&harness);
    wait_for(&serve, "the connection to show the full disk", Duration::from_secs(60), || {
        connection(&serve)["status"] == "failing"
    });
    let shown = connection(&serve);
    assert!(shown["status_message"].as_str().unwrap().contains("store full: "), "{shown}");
    // Reads go on.
    let (status, body) = serve.api.get("/customers?limit=5", &[("Connection-Id", CONNECTION)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(integrity(&db), "ok");

    std::fs::remove_file(filler).unwrap();
    let seen = successes(&serve);
    wait_for_success_after(&serve, seen, Duration::from_secs(90));
    assert_eq!(integrity(&db), "ok");
    assert_failures_named(&serve, "store full: ");
    harness.connection_as(CONNECTION).assert_store_matches_upstream();
    assert!(harness.connection_as(CONNECTION).live_customers().contains_key(&new_id));
}

#[test]
fn a_sqlite_write_lock_held_past_the_busy_timeout_is_store_unavailable_and_retried() {
    let harness = Harness::new(company(300, 10, 0.0));
    add(&harness, "1s");
    let serve = serve(&harness.db(), &["--failure-backoff-secs", "1"]);
    wait_for_success_after(&serve, 0, Duration::from_secs(60));

    // A backup tool, say, holding the write lock for longer than the 10 s
    // busy timeout.
    let mut holder = rusqlite::Connection::open(harness.db()).unwrap();
    let held = holder.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    let new_id = edit_upstream(&harness);
    wait_for(&serve, "the connection to show the held lock", Duration::from_secs(60), || {
        connection(&serve)["status"] == "failing"
    });
    let shown = connection(&serve);
    let message = shown["status_message"].as_str().unwrap();
    assert!(message.contains("store unavailable: database is locked"), "{shown}");
    drop(held);

    let seen = successes(&serve);
    wait_for_success_after(&serve, seen, Duration::from_secs(60));
    assert_failures_named(&serve, "store unavailable: ");
    harness.connection_as(CONNECTION).assert_store_matches_upstream();
    assert!(harness.connection_as(CONNECTION).live_customers().contains_key(&new_id));
}

#[test]
fn a_next_run_set_by_a_clock_since_stepped_back_waits_no_longer_than_its_interval() {
    let harness = Harness::new(company(50, 10, 0.0));
    add(&harness, "2s");
    let (ok, stdout, stderr) = sync_host_cli(&["run", "--connection", CONNECTION, "--db", &harness.db()], &[]).unwrap();
    assert!(ok, "{stdout}{stderr}");
    // As the clock had it two hours ahead: the next run, two hours away now.
    let store = harness.database();
    let two_hours_on = chrono::Utc::now().timestamp_micros() + 2 * 3600 * 1_000_000;
    let update = sync_host::store::ConnectionUpdate { next_run_at_us: Some(Some(two_hours_on)), ..Default::default() };
    store.connections.update(CONNECTION, &update).unwrap().unwrap();
    let new_id = edit_upstream(&harness);

    let serve = serve(&harness.db(), &[]);
    wait_for_success_after(&serve, 1, Duration::from_secs(30));
    assert!(serve.stderr().contains("the clock stepped back"), "{}", serve.stderr());
    harness.connection_as(CONNECTION).assert_store_matches_upstream();
    assert!(harness.connection_as(CONNECTION).live_customers().contains_key(&new_id));
}
