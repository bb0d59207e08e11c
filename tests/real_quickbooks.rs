//! The store equals QuickBooks under what real QuickBooks does
//! (docs/quickbooks.md): deletions its change feed cannot show, long
//! throttling in XML, daylight saving, a host killed mid-run, two runs at
//! once. Each test ends with the store equal to the fake's truth.

use chrono::{DateTime, Duration, FixedOffset};
use e2e_tests::*;
use fake_qbo::RequestKind;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn deleted_ids(harness: &Harness) -> BTreeSet<String> {
    harness.api_records("filter=deleted&limit=1000").iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn live_ids(fake: &FakeQbo) -> Vec<String> {
    fake.all_customers()
        .iter()
        .filter(|c| c["Active"].as_bool().unwrap_or(true))
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect()
}

fn cli_run(harness: &Harness, extra: &[&str]) -> (bool, String, String) {
    let db = harness.db();
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let mut args = vec![
        "run",
        "--component",
        &wasm,
        "--db",
        db.as_str(),
        "--base-url",
        &harness.base_url,
        "--realm-id",
        REALM,
        "--retry-max-wait-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    sync_host_cli(&args, &[("QBO_ACCESS_TOKEN", TOKEN)]).unwrap()
}

#[test]
fn deletions_cut_from_a_full_cdc_answer_are_found_by_reconciling() {
    let harness = Harness::new(company(1500, 10, 0.0));
    harness.sync();
    harness.fake.advance(Duration::hours(1));
    let ids = live_ids(&harness.fake);
    let gone: Vec<String> = ids[..3].to_vec();
    for id in &gone {
        assert!(harness.fake.delete_outright(id));
    }
    harness.fake.advance(Duration::minutes(1));
    for id in &ids[3..1203] {
        harness.fake.update(id, |c| {
            c.insert("DisplayName".into(), Value::String(format!("Repriced {id}")));
        });
    }
    harness.fake.reset_requests();
    // Through the command line, to read what the run logs.
    let (ok, stdout, stderr) = cli_run(&harness, &["-v"]);
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["deleted"], 3, "{summary}");
    assert!(stderr.contains("CDC answered 1000 objects"), "the log says why it reconciled: {stderr}");
    let queries = harness.fake.query_requests();
    let customers = harness.fake.len();
    assert!(queries <= customers.div_ceil(1000) + 3, "{queries} query requests for {customers} customers");
    assert_eq!(deleted_ids(&harness), gone.iter().cloned().collect());
    harness.assert_store_matches_upstream();
}

#[test]
fn deletions_older_than_cdc_s_thirty_days_are_found_by_reconciling() {
    let harness = Harness::new(company(400, 10, 0.0));
    harness.sync();
    let gone: Vec<String> = live_ids(&harness.fake)[10..13].to_vec();
    harness.fake.advance(Duration::hours(2));
    for id in &gone {
        assert!(harness.fake.delete_outright(id));
    }
    harness.fake.advance(Duration::days(35));
    harness.fake.reset_requests();
    let report = harness.sync();
    assert_eq!(report.outcome.deleted, 3);
    assert_eq!(report.summary.deleted, 3, "the summary counts what the listing deleted");
    assert_eq!(harness.fake.cdc_requests(), 0, "QuickBooks would refuse CDC that far back");
    assert_eq!(deleted_ids(&harness), gone.iter().cloned().collect());
    harness.assert_store_matches_upstream();
}

#[test]
fn a_reconciliation_is_due_every_day_and_configurable() {
    let harness = Harness::new(company(300, 10, 0.0));
    harness.sync();
    let gone = live_ids(&harness.fake)[0].clone();
    harness.fake.advance(Duration::hours(2));
    harness.fake.delete_outright(&gone);
    // CDC would show this one; hide it, as a merge can be hidden, to see that
    // only a listing finds it.
    harness.fake.on_request(|request, _| {
        (request.kind == RequestKind::Cdc).then(|| fake_qbo::Injected::Status {
            status: 200,
            headers: vec![],
            body: r#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"2026-05-05T05:00:00.000-07:00"}"#.into(),
        })
    });
    harness.sync();
    assert!(deleted_ids(&harness).is_empty(), "2 hours after the last listing, CDC is trusted");
    let mut spec = harness.spec();
    spec.config.insert("reconcileEvery".into(), "90m".into());
    harness.run_spec(&spec).unwrap();
    assert_eq!(deleted_ids(&harness), BTreeSet::from([gone.clone()]), "due after 90 minutes when configured so");

    spec.config.insert("reconcileEvery".into(), "every now and then".into());
    let error = harness.run_spec(&spec).unwrap_err().to_string();
    assert!(error.contains("invalid configuration") && error.contains("reconcileEvery"), "{error}");
}

#[test]
fn an_interrupted_reconciliation_deletes_nothing_and_the_next_run_completes_it() {
    let harness = Harness::new(company(3500, 10, 0.0));
    harness.sync();
    let gone: Vec<String> = live_ids(&harness.fake)[100..103].to_vec();
    harness.fake.advance(Duration::hours(25));
    for id in &gone {
        harness.fake.delete_outright(id);
    }
    harness.fake.reset_requests();
    // Request 1 learns QuickBooks' clock (a day since the last listing), 2 is
    // the listing's first page; from 3 on QuickBooks fails.
    harness.fake.on_request(|request, _| {
        (request.n >= 3).then(|| fake_qbo::Injected::fault("10000", "An application error has occurred", "injected"))
    });
    let error = harness.run().unwrap_err().to_string();
    assert!(error.contains("10000"), "{error}");
    assert!(deleted_ids(&harness).is_empty(), "a partial listing deletes nothing");
    let checkpoint = harness.checkpoint().unwrap();
    assert_eq!(checkpoint["complete"], false);
    assert!(checkpoint["listing"].is_u64(), "{checkpoint}");

    harness.fake.clear_hooks();
    harness.fake.reset_requests();
    let report = harness.sync();
    assert_eq!(report.outcome.deleted, 3);
    assert!(harness.fake.query_requests() <= 4, "resumed, not restarted: {} queries", harness.fake.query_requests());
    assert_eq!(deleted_ids(&harness), gone.iter().cloned().collect());
    harness.assert_store_matches_upstream();
}

#[test]
fn customers_added_or_edited_during_a_reconciliation_are_never_deleted_by_it() {
    let harness = Harness::new(company(2500, 1200, 0.0));
    harness.sync();
    harness.fake.advance(Duration::hours(25));
    let ids = live_ids(&harness.fake);
    let added = Arc::new(Mutex::new(Vec::new()));
    let seen = added.clone();
    let edited = ids[5].clone();
    // The listing's own requests: queries answered while the store has the
    // listing open (so not the run's clock query, nor the pass before it);
    // the first two of them add a customer and edit one already listed.
    let db = harness.database();
    let scope = sync_host::store::Scope { connection: harness.connection.clone(), model: "Customer".into() };
    harness.fake.on_request(move |request, fake| {
        let listing = db.run_writes().unwrap().records.current_listing(&scope).unwrap().is_some();
        let mut added = seen.lock().unwrap();
        if request.kind == RequestKind::Query && listing && added.len() < 2 {
            fake.advance(Duration::seconds(1));
            added.push(fake.insert(serde_json::json!({"DisplayName": format!("Added mid-listing {}", request.n)})));
            fake.update(&edited, |c| {
                c.insert("DisplayName".into(), Value::String(format!("Edited mid-listing {}", request.n)));
            });
        }
        None
    });
    let report = harness.sync();
    let added = added.lock().unwrap().clone();
    assert_eq!(added.len(), 2, "the hook added a customer at two of the listing's requests");
    assert!(report.summary.requests >= 4, "a listing of 2,533 customers: {:?}", report.summary);
    assert_eq!(report.outcome.deleted, 0);
    let live = harness.live_customers();
    for id in &added {
        assert!(live.contains_key(id), "{id}, added during the listing, is live");
    }
    assert!(live.contains_key(&ids[5]), "edited during the listing, still live");
    assert!(
        harness.database().run_writes().unwrap().records.current_listing(&scope_of(&harness)).unwrap().is_none(),
        "the listing completed"
    );
    harness.assert_store_matches_upstream();
}

fn scope_of(harness: &Harness) -> sync_host::store::Scope {
    sync_host::store::Scope { connection: harness.connection.clone(), model: "Customer".into() }
}

#[test]
fn twenty_seconds_of_throttling_in_xml_without_retry_after_is_ridden_out() {
    let harness = Harness::new(company(2500, 10, 0.0));
    harness.fake.throttle_for(3, std::time::Duration::from_secs(20));
    let report = harness.sync();
    assert!(report.summary.retries >= 10, "each 429 waited and was retried: {:?}", report.summary);
    assert_eq!(report.summary.retries, report.proxy.throttled, "every retry was a throttle wait");
    harness.assert_store_matches_upstream();

    // With too small a budget, the run fails naming QuickBooks' fault, not its markup.
    let harness = Harness::new(company(100, 10, 0.0));
    harness.fake.throttle_for(1, std::time::Duration::from_secs(60));
    let mut spec = harness.spec();
    spec.retry.budget = std::time::Duration::from_secs(2);
    let error = harness.run_spec(&spec).unwrap_err().to_string();
    assert_eq!(
        error,
        "provider error: HTTP 429, code 3001: ThrottleExceeded (The request limit was reached.  Try again later)"
    );
    assert!(harness.checkpoint().is_none(), "nothing stored, nothing checkpointed");
}

#[test]
fn the_host_paces_requests_under_the_company_s_quota() {
    // 6,033 customers: 7 requests. QuickBooks allows 3 in any 2 seconds here
    // (the real quota is 500 a minute: the same rule, scaled down to keep the
    // test short); the host, told so, spaces them and is never throttled.
    let window = std::time::Duration::from_secs(2);
    let harness = Harness::new(company(6000, 10, 0.0));
    harness.fake.set_quota_per(3, window);
    let mut spec = harness.spec();
    spec.quota = Some(sync_host::provider::Quota { requests: 3, window, max_concurrent: 1 });
    let report = harness.run_spec(&spec).unwrap();
    assert!(report.summary.requests > 3, "more requests than one window allows: {:?}", report.summary);
    assert_eq!(report.summary.retries, 0, "never throttled: {:?}", report.summary);
    assert!(harness.fake.requests().iter().all(|r| r.status == 200));
    harness.assert_store_matches_upstream();

    // The same company without pacing is throttled: the quota is real.
    let unpaced = Harness::new(company(6000, 10, 0.0));
    unpaced.fake.set_quota_per(3, window);
    let mut spec = unpaced.spec();
    spec.quota = Some(sync_host::provider::Quota::default());
    let report = unpaced.run_spec(&spec).unwrap();
    assert!(report.summary.retries > 0, "{:?}", report.summary);
}

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

#[test]
fn full_and_incremental_syncs_across_the_fall_back() {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_recorded();
    // An hour before the clocks go back: a crowd at 01:30 PDT.
    fake.set_now(at("2026-11-01T01:30:00-07:00"));
    let crowd = fake.seed_generated(
        1500,
        &fake_qbo::GenerateOptions { shared_timestamp: Some((1500, fake.now())), spread_days: 0, ..Default::default() },
    );
    let harness = Harness::new(fake);
    harness.sync();
    harness.assert_store_matches_upstream();
    assert_eq!(harness.checkpoint().unwrap()["position"]["since"], "2026-11-01T01:30:00-07:00");

    // 40 minutes later the clocks read 01:10 again, now -08:00: the text sorts
    // before the checkpoint's, the instant comes after it.
    harness.fake.set_now(at("2026-11-01T01:10:00-08:00"));
    for id in crowd.iter().step_by(7).take(200) {
        harness.fake.update(id, |c| {
            c.insert("GivenName".into(), Value::String("After the fall-back".into()));
        });
    }
    harness.fake.archive(&crowd[1]);
    let added = harness.fake.insert(serde_json::json!({"DisplayName": "Added in PST"}));
    assert!(harness.fake.get(&added).unwrap()["MetaData"]["LastUpdatedTime"].as_str().unwrap().ends_with("-08:00"));
    let report = harness.sync();
    assert_eq!((report.outcome.added, report.outcome.deleted), (1, 1));
    assert!(report.outcome.updated >= 199, "{:?}", report.outcome);
    harness.assert_store_matches_upstream();

    // And an incremental from a -08:00 checkpoint into the next hour.
    harness.fake.advance(Duration::minutes(70));
    harness.fake.update(&crowd[2], |c| {
        c.insert("GivenName".into(), Value::String("Later still".into()));
    });
    let report = harness.sync();
    assert_eq!(report.outcome.updated, 1);
    harness.assert_store_matches_upstream();
}

#[test]
fn a_run_killed_with_sigkill_mid_sync_is_resumed_by_the_next() {
    let harness = Harness::new(company(5000, 10, 0.0));
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    harness.fake.on_request(move |request, _| {
        seen.store(request.n, Ordering::SeqCst);
        if request.n == 3 {
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        None
    });
    let db = harness.db();
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let mut child = std::process::Command::new(host_binary())
        .args(["run", "--component", &wasm, "--db", db.as_str(), "--base-url", &harness.base_url])
        .args(["--realm-id", REALM])
        .env("QBO_ACCESS_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waited = std::time::Instant::now();
    while reached.load(Ordering::SeqCst) < 3 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(60), "the run never reached page 3");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    harness.fake.clear_hooks();
    assert!(harness.live_customers().len() >= 1900, "two pages were stored before the kill");
    assert_eq!(harness.checkpoint().unwrap()["complete"], false);

    harness.fake.reset_requests();
    harness.sync();
    assert!(harness.fake.query_requests() <= 5, "resumed from the checkpoint: {}", harness.fake.query_requests());
    harness.assert_store_matches_upstream();
}

#[test]
fn a_second_run_of_a_running_connection_refuses_and_the_store_ends_right() {
    let harness = Harness::new(company(2500, 10, 0.0));
    let started = Arc::new(AtomicUsize::new(0));
    let seen = started.clone();
    harness.fake.on_request(move |request, _| {
        seen.store(request.n, Ordering::SeqCst);
        if request.n == 1 {
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        None
    });
    let first = {
        let db = harness.db();
        let base_url = harness.base_url.clone();
        let wasm = guest_wasm().to_str().unwrap().to_owned();
        std::thread::spawn(move || {
            sync_host_cli(
                &["run", "--component", &wasm, "--db", db.as_str(), "--base-url", &base_url, "--realm-id", REALM],
                &[("QBO_ACCESS_TOKEN", TOKEN)],
            )
            .unwrap()
        })
    };
    while started.load(Ordering::SeqCst) < 1 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Another process, and this process too, are refused while the first runs.
    let (ok, _, stderr) = cli_run(&harness, &[]);
    assert!(!ok);
    assert!(stderr.contains("another run holds connection `default`"), "{stderr}");
    let error = harness.run().unwrap_err().to_string();
    assert!(error.contains("another run holds connection"), "{error}");

    let (ok, _, stderr) = first.join().unwrap();
    assert!(ok, "{stderr}");
    harness.assert_store_matches_upstream();
}
