//! Swap hosts without recompiling: the very same `.wasm` runs in the Rust
//! host (wasmtime) and in the Node.js host (`host/node`, through jco), against
//! one fake QuickBooks, and both end up with the same records. The Node host's
//! database is read back through sync-host's own records API: a database
//! either host wrote is served by `sync-host serve` unchanged.

use chrono::Duration;
use e2e_tests::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Records by id: the payload and whether it is (soft-)deleted.
type Records = BTreeMap<String, (Value, bool)>;

/// `sha256sum` of a file, as lower-case hex.
fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    assert!(out.status.success(), "sha256sum failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().expect("a digest").to_owned()
}

/// The Node host run as a user runs it; returns its summary line and the
/// component hash it reported.
struct NodeRun {
    summary: Value,
    component_sha256: String,
}

fn node_run(wasm: &Path, base_url: &str, db: &Path) -> NodeRun {
    let output = Command::new("node")
        .arg(node_dir().join("run.mjs"))
        .arg("--component")
        .arg(wasm)
        .args(["--base-url", base_url, "--realm-id", REALM, "--db"])
        .arg(db)
        .arg("--print-hash")
        .env("QBO_ACCESS_TOKEN", TOKEN)
        .current_dir(workspace())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Node host failed:\nstdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the Node host prints one summary line: {stdout}");
    let component_sha256 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("component sha256 "))
        .unwrap_or_else(|| panic!("no `component sha256` line on stderr: {stderr}"))
        .trim()
        .to_owned();
    assert!(!stderr.contains(TOKEN), "the token leaked: {stderr}");
    NodeRun { summary: serde_json::from_str(lines[0]).expect("the summary is JSON"), component_sha256 }
}

/// The Rust host's records, through its records API (`GET /customers`).
fn rust_records(harness: &Harness) -> Records {
    by_id(harness.api_records("limit=1000"))
}

/// The Node host's records, served by sync-host's records API from the
/// database the Node host wrote.
fn node_records(db: &Path) -> Records {
    by_id(Api::start(db.to_str().unwrap(), None).all("limit=1000", "default"))
}

fn by_id(records: Vec<Value>) -> Records {
    records
        .into_iter()
        .map(|mut r| {
            let meta = r.as_object_mut().unwrap().remove("_nango_metadata").expect("records carry metadata");
            let deleted = meta["last_action"] == "DELETED";
            (r["id"].as_str().unwrap().to_owned(), (r, deleted))
        })
        .collect()
}

fn assert_same_records(phase: &str, rust: &Records, node: &Records) {
    let only_rust: Vec<&String> = rust.keys().filter(|k| !node.contains_key(*k)).collect();
    let only_node: Vec<&String> = node.keys().filter(|k| !rust.contains_key(*k)).collect();
    assert!(
        only_rust.is_empty() && only_node.is_empty(),
        "{phase}: only in Rust: {only_rust:?}; only in Node: {only_node:?}"
    );
    for (id, (record, deleted)) in rust {
        let (node_record, node_deleted) = &node[id];
        assert_eq!(record, node_record, "{phase}: record {id} differs");
        assert_eq!(deleted, node_deleted, "{phase}: deleted flag of {id} differs");
    }
}

/// Both hosts printed the same change counts (and, running the same guest on
/// the same data, the same pages and requests).
fn assert_same_summary(phase: &str, rust: &Value, node: &Value) {
    for key in ["added", "updated", "deleted", "unchanged", "pages", "requests", "retries"] {
        assert_eq!(rust[key], node[key], "{phase}: `{key}` differs: Rust {rust}, Node {node}");
    }
}

#[test]
fn the_same_wasm_syncs_the_same_records_in_rust_and_node() {
    let wasm = guest_wasm();
    node_ready();
    let wasm_sha256 = sha256_file(wasm);

    let harness = Harness::new(company(300, 120, 0.1));
    let fake = &harness.fake;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("node.sqlite");

    // Phase 1: full sync in both hosts.
    let rust_full = harness.sync();
    let node_full = node_run(wasm, &harness.base_url, &state);
    assert_eq!(node_full.component_sha256, wasm_sha256, "the Node host loaded other bytes than the Rust host");
    let rust_summary: Value = serde_json::from_str(&rust_full.to_json()).unwrap();
    assert_same_summary("full", &rust_summary, &node_full.summary);
    let active = fake.all_customers().iter().filter(|c| c["Active"].as_bool().unwrap_or(true)).count();
    assert_eq!(rust_full.outcome.added as usize, active);
    let rust = rust_records(&harness);
    assert_eq!(rust.len(), active);
    assert_same_records("full", &rust, &node_records(&state));

    // Phase 2, an hour later upstream: updates, archives, a re-activation and additions.
    fake.advance(Duration::hours(1));
    let customers = fake.all_customers();
    let active_ids: Vec<String> = customers
        .iter()
        .filter(|c| c["Active"].as_bool().unwrap_or(true))
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect();
    let archived_before: Vec<String> = customers
        .iter()
        .filter(|c| c["Active"] == Value::Bool(false))
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect();
    let updated: Vec<&String> = active_ids.iter().step_by(25).take(10).collect();
    let archived: Vec<&String> = active_ids.iter().skip(7).step_by(50).take(5).collect();
    assert!(updated.iter().all(|id| !archived.contains(id)));
    for id in &updated {
        fake.update(id, |c| {
            c.insert("DisplayName".into(), Value::String(format!("Renamed {id} — Ünïcode 'quoted'")));
        });
    }
    for id in &archived {
        fake.archive(id);
    }
    let reactivated = archived_before.first().expect("some customers are archived").clone();
    fake.reactivate(&reactivated);
    for i in 0..3 {
        fake.insert(serde_json::json!({"DisplayName": format!("Cross-host customer {i}"), "Balance": 12.5}));
    }

    let rust_incremental = harness.sync();
    let node_incremental = node_run(wasm, &harness.base_url, &state);
    assert_eq!(node_incremental.component_sha256, wasm_sha256);
    let rust_summary: Value = serde_json::from_str(&rust_incremental.to_json()).unwrap();
    assert_same_summary("incremental", &rust_summary, &node_incremental.summary);
    assert_eq!(rust_incremental.outcome.added, 3 + 1, "additions and the re-activated customer");
    assert_eq!(rust_incremental.outcome.updated as usize, updated.len());
    assert_eq!(rust_incremental.outcome.deleted as usize, archived.len());
    let rust = rust_records(&harness);
    for id in &archived {
        assert!(rust[*id].1, "archived customer {id} is deleted in the Rust store");
    }
    assert_same_records("incremental", &rust, &node_records(&state));

    // Phase 3: nothing changed upstream; neither host changes anything.
    let rust_idle = harness.sync();
    let node_idle = node_run(wasm, &harness.base_url, &state);
    let rust_summary: Value = serde_json::from_str(&rust_idle.to_json()).unwrap();
    assert_same_summary("idle", &rust_summary, &node_idle.summary);
    assert_eq!((rust_idle.outcome.added, rust_idle.outcome.updated, rust_idle.outcome.deleted), (0, 0, 0));
    assert_same_records("idle", &rust_records(&harness), &node_records(&state));

    // Phase 4: customers deleted outright, then the hosts away longer than
    // CDC's 30 days: both reconcile with a listing and delete them.
    let gone: Vec<String> = active_ids.iter().rev().take(3).cloned().collect();
    for id in &gone {
        assert!(fake.delete_outright(id));
    }
    fake.advance(Duration::days(35));
    let rust_reconciled = harness.sync();
    let node_reconciled = node_run(wasm, &harness.base_url, &state);
    let rust_summary: Value = serde_json::from_str(&rust_reconciled.to_json()).unwrap();
    assert_same_summary("reconciliation", &rust_summary, &node_reconciled.summary);
    assert_eq!(rust_reconciled.outcome.deleted, 3, "the listing deleted what QuickBooks no longer has");
    let rust = rust_records(&harness);
    for id in &gone {
        assert!(rust[id].1, "{id} is deleted in the Rust store");
    }
    assert_same_records("reconciliation", &rust, &node_records(&state));
}
