//! A host platforms can trust (docs/contract.md, "Per-run limits"): hostile
//! components built by the test suite are stopped with an error naming the
//! limit, or refused what they ask; the host stays up and the store is
//! intact. Components that import what this host does not offer are refused
//! before they run.

use e2e_tests::*;
use std::sync::Arc;
use std::time::Duration;
use sync_host::runs::{ConnectionSpec, RunLimits, Runner};
use sync_host::runtime::{InstanceLimits, SyncRuntime};
use sync_host::store::{ListQuery, Scope};

fn hostile() -> Arc<SyncRuntime> {
    static RUNTIME: std::sync::OnceLock<Arc<SyncRuntime>> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| Arc::new(SyncRuntime::from_file(hostile_wasm()).expect("the hostile component loads")))
        .clone()
}

/// A provider, and a store that already holds one record of the model.
fn setup() -> (Harness, Runner) {
    let harness = Harness::new(company(300, 10, 0.0));
    let runner = Runner::new(hostile(), harness.database());
    let record = sync_host::capabilities::records::validate_batch(&[r#"{"id":"kept","n":1}"#.to_string()]).unwrap();
    harness.database().run_writes().unwrap().records.save(&scope(), &record).unwrap();
    (harness, runner)
}

fn scope() -> Scope {
    Scope { connection: "hostile".into(), model: "Item".into() }
}

fn spec(harness: &Harness, behaviour: &str, limits: RunLimits) -> ConnectionSpec {
    let mut spec = ConnectionSpec::new("hostile", &harness.base_url, quickbooks::config(REALM), Some(TOKEN.into()));
    spec.config.insert("behaviour".into(), behaviour.into());
    spec.limits = limits;
    spec
}

/// The store holds exactly the record it held, and `also`.
fn assert_store_intact(harness: &Harness, also: &[&str]) {
    let page = harness.database().records.list(&scope(), &ListQuery { limit: 1000, ..Default::default() }).unwrap();
    let mut ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    let mut expected = vec!["kept"];
    expected.extend_from_slice(also);
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(page.records.iter().find(|r| r.id == "kept").unwrap().json, r#"{"id":"kept","n":1}"#);
}

/// Runs `behaviour` under `limits`, expects it stopped naming `limit`, then
/// shows the host is still up: the same runtime runs a well-behaved pass.
fn assert_stopped(behaviour: &str, limits: RunLimits, limit: &str) {
    let (harness, runner) = setup();
    let error = runner.run(&spec(&harness, behaviour, limits), None).expect_err("the run is stopped").to_string();
    assert!(error.contains(limit), "{behaviour}: the error names `{limit}`: {error}");
    assert_store_intact(&harness, &[]);
    runner.run(&spec(&harness, "bad-records", RunLimits::default()), None).expect("the host is still up");
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    let limits = RunLimits {
        instance: InstanceLimits { deadline: Duration::from_millis(500), ..Default::default() },
        ..Default::default()
    };
    assert_stopped("endless-loop", limits, "deadline");
}

#[test]
fn a_memory_balloon_is_stopped_at_the_memory_limit() {
    let limits =
        RunLimits { instance: InstanceLimits { memory_bytes: 32 << 20, ..Default::default() }, ..Default::default() };
    assert_stopped("memory-balloon", limits, "memory limit");
}

#[test]
fn a_huge_batch_is_stopped_at_the_records_per_batch_limit() {
    assert_stopped("huge-batch", RunLimits::default(), "limit exceeded: records per batch (at most 10000)");
}

#[test]
fn a_huge_record_is_stopped_at_the_bytes_per_record_limit() {
    assert_stopped("huge-record", RunLimits::default(), "limit exceeded: bytes per record");
}

#[test]
fn a_request_flood_is_stopped_at_the_requests_per_run_limit() {
    let mut limits = RunLimits::default();
    limits.proxy.requests_per_run = 50;
    assert_stopped("many-requests", limits, "limit exceeded: proxy requests per run (at most 50)");
}

#[test]
fn a_huge_response_is_stopped_at_the_bytes_per_response_limit() {
    let mut limits = RunLimits::default();
    limits.proxy.bytes_per_response = 1000;
    assert_stopped("huge-response", limits, "limit exceeded: bytes per proxy response (at most 1000)");
}

#[test]
fn invalid_records_non_string_ids_and_undeclared_models_are_refused_and_store_nothing() {
    let (harness, runner) = setup();
    runner
        .run(&spec(&harness, "bad-records", RunLimits::default()), None)
        .expect("each refusal is an error the component sees");
    assert_store_intact(&harness, &["good"]);
}

#[test]
fn escaping_paths_and_smuggled_headers_never_reach_the_provider() {
    let (harness, runner) = setup();
    runner.run(&spec(&harness, "escape-paths", RunLimits::default()), None).expect("every attempt is refused");
    assert!(harness.fake.requests().is_empty(), "nothing was sent: {:?}", harness.fake.requests());
}

#[test]
fn components_that_import_sockets_or_the_filesystem_are_refused_before_they_run() {
    for import in ["wasi:sockets/tcp@0.2.6", "wasi:filesystem/preopens@0.2.6"] {
        let bytes =
            wat::parse_str(format!(r#"(component (import "{import}" (instance (export "f" (func)))))"#)).unwrap();
        let error = match SyncRuntime::from_bytes(&bytes) {
            Ok(_) => panic!("a component importing {import} must not load"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(import), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostile.wasm");
        std::fs::write(&path, &bytes).unwrap();
        let (ok, stdout, stderr) = sync_host_cli(&["inspect", path.to_str().unwrap()], &[]).unwrap();
        assert!(!ok, "inspect exits non-zero: {stdout}");
        assert!(stdout.contains(&format!("import {import}  <- not provided by this host")), "{stdout}");
        assert!(stderr.contains("does not fit this host"), "{stderr}");
    }
    let (ok, stdout, _) = sync_host_cli(&["inspect", "--json", guest_wasm().to_str().unwrap()], &[]).unwrap();
    assert!(ok);
    let inspection: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(inspection["fits"], true);
    assert_eq!(inspection["metadata"]["name"], "customers");
    assert!(inspection["imports"].as_array().unwrap().iter().all(|i| i["provided"] == true));
}

#[test]
fn limits_out_of_range_are_refused_naming_the_flag_before_anything_runs() {
    let harness = Harness::new(company(10, 0, 0.0));
    let db = harness.db();
    for (flag, value) in [
        ("--timeout-secs", "9223372036854775807"),
        ("--timeout-secs", "0"),
        ("--retry-budget-secs", "18446744073709551615"),
        ("--memory-mib", "17592186044416"),
    ] {
        let args =
            ["run", "--db", db.as_str(), "--base-url", harness.base_url.as_str(), "--realm-id", "1", flag, value];
        let (ok, _, stderr) = sync_host_cli(&args, &[("QBO_ACCESS_TOKEN", TOKEN)]).unwrap();
        assert!(!ok && stderr.contains(flag) && !stderr.contains("panicked"), "{flag} {value}: {stderr}");
    }
    assert_eq!(harness.fake.query_requests(), 0, "nothing ran");
}

#[test]
fn the_demo_refuses_to_replace_a_file_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "my notes").unwrap();
    let path = notes.to_str().unwrap();
    let (ok, _, stderr) = sync_host_cli(&["demo", "--no-serve", "--customers", "10", "--db", path], &[]).unwrap();
    assert!(!ok && stderr.contains("is not a database the demo made"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes", "left as it was");

    // A store of real connections is refused too; the demo's own is recreated.
    let harness = Harness::new(company(10, 0, 0.0));
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN]);
    let (ok, _, stderr) =
        sync_host_cli(&["demo", "--no-serve", "--customers", "10", "--db", &harness.db()], &[]).unwrap();
    assert!(!ok && stderr.contains("not the demo's"), "{stderr}");
    let demo_db = dir.path().join("demo.sqlite");
    let demo_db = demo_db.to_str().unwrap();
    for _ in 0..2 {
        let (ok, _, stderr) =
            sync_host_cli(&["demo", "--no-serve", "--customers", "10", "--db", demo_db], &[]).unwrap();
        assert!(ok, "{stderr}");
    }
}
