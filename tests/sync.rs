//! The vertical slice, end to end: the real `.wasm` in the real host against
//! the fake QuickBooks on 127.0.0.1, checked through `GET /customers`.

use chrono::Duration;
use e2e_tests::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// 2,600 customers: the 33 recorded sandbox ones plus 2,567 generated, 10 % of
/// those archived, 1,500 of them sharing one `LastUpdatedTime`.
fn acceptance_company() -> FakeQbo {
    company(2567, 1500, 0.1)
}

fn active_ids(fake: &FakeQbo) -> Vec<String> {
    fake.all_customers()
        .iter()
        .filter(|c| c["Active"].as_bool().unwrap_or(true))
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect()
}

fn archived_ids(fake: &FakeQbo) -> Vec<String> {
    fake.all_customers()
        .iter()
        .filter(|c| c["Active"] == Value::Bool(false))
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn full_then_incremental_then_idle() {
    let harness = Harness::new(acceptance_company());
    let fake = &harness.fake;
    assert_eq!(fake.all_customers().len(), 2600);
    let active = active_ids(fake);
    assert!(active.len() < 2600, "some customers are archived");

    // Full sync.
    let full = harness.sync();
    assert!(fake.query_requests() <= 5, "full sync took {} query requests", fake.query_requests());
    assert_eq!(full.outcome.added as usize, active.len());
    assert_eq!((full.outcome.updated, full.outcome.deleted, full.outcome.unchanged), (0, 0, 0));
    assert_eq!(full.summary.requests as usize, fake.requests().len());
    harness.assert_store_matches_upstream();

    // The recorded sandbox customers are mapped exactly as the fixture says.
    let expected: Vec<Value> = serde_json::from_str(include_str!("fixtures/qbo-customers-page.expected.json")).unwrap();
    let live = harness.live_customers();
    for want in &expected {
        assert_eq!(&live[want["id"].as_str().unwrap()], want);
    }
    let records = harness.api_records("limit=1000");
    assert!(records.iter().all(|r| r["_nango_metadata"]["last_action"] == "ADDED"));

    // Upstream changes, an hour later: disjoint sets of updates, archives,
    // re-activations and additions.
    fake.advance(Duration::hours(1));
    let updated: Vec<String> = active.iter().step_by(40).take(50).cloned().collect();
    let archived: Vec<String> = active.iter().skip(20).step_by(80).take(20).cloned().collect();
    assert!(updated.iter().all(|id| !archived.contains(id)));
    let reactivated: Vec<String> = archived_ids(fake).into_iter().take(10).collect();
    for id in &updated {
        fake.update(id, |c| {
            c.insert("DisplayName".into(), Value::String(format!("Renamed {id} — Ünïcode 'quoted'")));
        });
    }
    for id in &archived {
        fake.archive(id);
    }
    for id in &reactivated {
        fake.reactivate(id);
    }
    let added: Vec<String> = (0..15)
        .map(|i| fake.insert(serde_json::json!({"DisplayName": format!("New customer {i}"), "Balance": 314.28})))
        .collect();
    fake.reset_requests();

    let incremental = harness.sync();
    assert_eq!(incremental.outcome.added as usize, added.len() + reactivated.len());
    assert_eq!(incremental.outcome.updated as usize, updated.len());
    assert_eq!(incremental.outcome.deleted as usize, archived.len());
    harness.assert_store_matches_upstream();

    let by_id: BTreeMap<String, Value> =
        harness.api_records("limit=500").into_iter().map(|r| (r["id"].as_str().unwrap().to_owned(), r)).collect();
    for id in &archived {
        let meta = &by_id[id]["_nango_metadata"];
        assert_eq!(meta["last_action"], "DELETED", "archived customer {id}");
        assert!(meta["deleted_at"].is_string());
    }
    for id in &updated {
        assert_eq!(by_id[id]["_nango_metadata"]["last_action"], "UPDATED");
    }
    for id in added.iter().chain(&reactivated) {
        assert_eq!(by_id[id]["_nango_metadata"]["last_action"], "ADDED");
    }
    let deleted = harness.api_records("filter=deleted");
    assert_eq!(deleted.len(), archived.len());

    // Idle: nothing changes, at most three requests.
    let before = harness.api_records("limit=10000");
    fake.reset_requests();
    let idle = harness.sync();
    assert!(fake.requests().len() <= 3, "idle run made {} requests", fake.requests().len());
    assert_eq!((idle.outcome.added, idle.outcome.updated, idle.outcome.deleted), (0, 0, 0));
    assert_eq!(harness.api_records("limit=10000"), before, "an idle run changes nothing");
}

#[test]
fn every_request_asks_for_json_and_minor_version_75() {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_recorded();
    let raw_queries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = raw_queries.clone();
    fake.on_request(move |request, _| {
        seen.lock().unwrap().push(request.raw_query.clone());
        None
    });
    let harness = Harness::new(fake);
    harness.sync();
    harness.fake.advance(Duration::minutes(5));
    harness.sync();
    let requests = harness.fake.requests();
    assert!(requests.len() >= 3, "a full run, then a query and a CDC request");
    // The fake answers XML without `Accept: application/json`, which the sync
    // could not read: every request succeeding means every one asked for JSON.
    for request in &requests {
        assert_eq!(request.status, 200, "{request:?}");
    }
    let raw_queries = raw_queries.lock().unwrap();
    assert_eq!(raw_queries.len(), requests.len());
    for raw in raw_queries.iter() {
        assert!(raw.split('&').any(|pair| pair == "minorversion=75"), "{raw}");
    }
    let query = requests[0].query.as_deref().unwrap();
    assert!(query.contains("Active IN (true, false)"), "{query}");
    assert!(query.contains("MAXRESULTS 1000"), "{query}");
}

#[test]
fn command_line_run_prints_one_json_summary_and_fails_clearly() {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_recorded();
    let harness = Harness::new(fake);
    let db = harness.db();
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let args = ["run", "--component", &wasm, "--db", db.as_str(), "--base-url", &harness.base_url, "--realm-id", REALM];

    let (ok, stdout, stderr) = sync_host_cli(&args, &[("QBO_ACCESS_TOKEN", TOKEN)]).unwrap();
    assert!(ok, "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let summary: Value = serde_json::from_str(lines[0]).unwrap();
    for key in ["added", "updated", "deleted", "unchanged", "pages", "requests"] {
        assert!(summary[key].is_u64(), "{key} in {summary}");
    }
    assert_eq!(summary["added"], 33);

    let (ok, stdout, stderr) = sync_host_cli(&args, &[("QBO_ACCESS_TOKEN", "wrong-secret-token")]).unwrap();
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("401") && stderr.contains("3200"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-token"), "the token leaked: {stderr}");
    // Nothing stored was lost.
    assert_eq!(harness.live_customers().len(), 33);
}

#[test]
fn describe_declares_the_sync() {
    let runtime = runtime();
    let m = runtime.metadata();
    assert_eq!(m.name, "customers");
    assert_eq!(m.scopes, vec!["com.intuit.quickbooks.accounting".to_string()]);
    assert_eq!(m.frequency, "every hour");
    assert_eq!(m.endpoints[0].path, "/customers");
    assert_eq!(m.models[0].name, "Customer");
    assert_eq!(m.models[0].json_schema["required"].as_array().unwrap().len(), 12);
    assert_eq!((m.limits.requests_per_minute, m.limits.max_concurrent, m.limits.throttle_wait_secs), (500, 10, 60));
    let keys: Vec<&str> = m.configuration.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, vec!["realmId", "reconcileEvery"]);
}

#[test]
fn the_component_imports_only_its_world_and_the_wasi_std_needs() {
    let runtime = runtime();
    let imports = runtime.imports();
    for wanted in ["proxy", "records", "listing", "checkpoint", "config", "logging"] {
        assert!(imports.contains(&format!("portable-sync:sync/{wanted}@0.2.0")), "{wanted} in {imports:?}");
    }
    for import in imports {
        let allowed = import.starts_with("portable-sync:sync/")
            || import.starts_with("wasi:io/")
            || import.starts_with("wasi:cli/");
        assert!(allowed, "unexpected import {import}: no filesystem, sockets, http or clocks");
    }
}

#[test]
fn a_component_that_wants_the_filesystem_is_refused_by_name() {
    let component = wat::parse_str(
        r#"(component (import "wasi:filesystem/preopens@0.2.6" (instance (export "get-directories" (func)))))"#,
    )
    .unwrap();
    let error = match sync_host::runtime::SyncRuntime::from_bytes(&component) {
        Ok(_) => panic!("a component importing wasi:filesystem must not load"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("wasi:filesystem/preopens"), "{error}");
}

#[test]
fn a_component_without_the_sync_export_is_refused_clearly() {
    let component = wat::parse_str("(component)").unwrap();
    let error = match sync_host::runtime::SyncRuntime::from_bytes(&component) {
        Ok(_) => panic!("a component without the sync export must not load"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("portable-sync:sync/sync@0.2.0"), "{error}");
}
