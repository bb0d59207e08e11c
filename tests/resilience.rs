//! What real QuickBooks does to a sync (docs/quickbooks.md): edits while paging,
//! crowds sharing a timestamp, outages, throttling, bad answers, faults,
//! customers deleted outright. After each, the store must equal the upstream
//! truth, or keep what it had and resume.

use chrono::Duration;
use e2e_tests::*;
use fake_qbo::{GenerateOptions, Injected, RequestKind};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use sync_host::runs::RunLimits;
use sync_host::runtime::{InstanceLimits, RunFailure};

fn failure_text(result: Result<sync_host::runtime::RunReport, RunFailure>) -> String {
    match result {
        Ok(report) => panic!("the run should fail, it did: {}", report.to_json()),
        Err(failure) => failure.to_string(),
    }
}

/// Every active upstream customer updated before the checkpoint's timestamp is stored.
fn assert_checkpoint_not_ahead_of_store(harness: &Harness) {
    let checkpoint = harness.checkpoint().expect("a checkpoint was saved");
    let Some(since) = checkpoint["position"]["since"].as_str() else { return };
    let since = chrono::DateTime::parse_from_rfc3339(since).unwrap();
    let live = harness.live_customers();
    for customer in harness.fake.all_customers() {
        let at =
            chrono::DateTime::parse_from_rfc3339(customer["MetaData"]["LastUpdatedTime"].as_str().unwrap()).unwrap();
        if at < since && customer["Active"].as_bool().unwrap_or(true) {
            let id = customer["Id"].as_str().unwrap();
            assert!(live.contains_key(id), "checkpoint at {since} is ahead of customer {id} ({at}), not stored");
        }
    }
}

#[test]
fn edits_between_the_pages_of_a_full_sync_lose_nothing() {
    let fake = company(2600, 1800, 0.05);
    let order = query_order(&fake);
    let crowd_at = fake.now() - Duration::days(2);
    // Customers of the crowd on page 1 (already read when page 2 is asked for),
    // and customers not read yet.
    let read_crowd: Vec<String> =
        order.iter().take(1000).filter(|(_, at)| *at == crowd_at).map(|(id, _)| id.clone()).collect();
    assert!(read_crowd.len() > 10, "the crowd starts on page 1");
    let unread: Vec<String> = order.iter().skip(1500).map(|(id, _)| id.clone()).collect();
    let deleted_outright = Arc::new(Mutex::new(Vec::new()));
    let deleted = deleted_outright.clone();
    let edits = (read_crowd.clone(), unread.clone());
    fake.on_request(move |request, fake| {
        if request.kind != RequestKind::Query || !(2..=3).contains(&request.n) {
            return None;
        }
        let (read_crowd, unread) = &edits;
        let k = request.n * 3;
        fake.advance(Duration::seconds(1));
        fake.update(&read_crowd[k], |c| {
            c.insert("DisplayName".into(), Value::String(format!("edited while paging {k}")));
        });
        fake.archive(&read_crowd[k + 1]);
        if fake.delete_outright(&read_crowd[k + 2]) {
            deleted.lock().unwrap().push(read_crowd[k + 2].clone());
        }
        fake.update(&unread[k], |c| {
            c.insert("Balance".into(), serde_json::json!(78.6));
        });
        fake.archive(&unread[k + 1]);
        fake.insert(serde_json::json!({"DisplayName": format!("added while paging {k}"), "Balance": 0.005}));
        None
    });
    let harness = Harness::new(fake);
    harness.sync();
    let deleted: Vec<String> = deleted_outright.lock().unwrap().clone();
    assert_eq!(deleted.len(), 2);
    // Everything but the customers deleted outright is already exact.
    harness.assert_store_matches_upstream_but(&deleted);

    harness.fake.clear_hooks();
    harness.fake.advance(Duration::minutes(10));
    let next = harness.sync();
    assert_eq!(next.outcome.deleted, 2, "CDC reports the customers deleted outright");
    harness.assert_store_matches_upstream();
}

#[test]
fn twenty_five_hundred_customers_sharing_one_timestamp() {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_generated(
        2500,
        &GenerateOptions { shared_timestamp: Some((2500, fake.now() - Duration::hours(5))), ..Default::default() },
    );
    let harness = Harness::new(fake);
    let report = harness.sync();
    assert_eq!(report.outcome.added, 2500);
    assert!(harness.fake.query_requests() <= 4, "{} query requests", harness.fake.query_requests());
    harness.assert_store_matches_upstream();
    // The next run re-reads the crowd (>=, not >) and finds nothing new.
    harness.fake.reset_requests();
    let idle = harness.sync();
    assert_eq!((idle.outcome.added, idle.outcome.updated, idle.outcome.deleted), (0, 0, 0));
    assert_eq!(idle.outcome.unchanged, 2500);
}

#[test]
fn an_outage_mid_way_fails_clearly_and_the_next_run_resumes() {
    let fake = company(3500, 500, 0.1);
    // Pages 1 and 2 hold the first 1,999 customers in query order (each page re-reads one).
    let active: std::collections::HashSet<String> = fake
        .all_customers()
        .iter()
        .filter(|c| c["Active"].as_bool().unwrap_or(true))
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect();
    let on_two_pages = query_order(&fake).iter().take(1999).filter(|(id, _)| active.contains(id)).count();
    fake.on_request(|request, _| (request.kind == RequestKind::Query && request.n >= 3).then(Injected::unavailable));
    let harness = Harness::new(fake);
    // The outage outlasts any budget; a short one keeps the test short.
    let mut spec = harness.spec();
    spec.retry.budget = std::time::Duration::from_secs(2);
    let error = failure_text(harness.run_spec(&spec));
    assert!(error.contains("503"), "{error}");
    let stored = harness.live_customers().len();
    assert_eq!(stored, on_two_pages, "the pages before the outage stay stored");
    assert_eq!(harness.checkpoint().unwrap()["complete"], false);
    assert_checkpoint_not_ahead_of_store(&harness);

    harness.fake.clear_hooks();
    harness.fake.reset_requests();
    harness.sync();
    assert!(harness.fake.query_requests() <= 3, "resumed with {} query requests", harness.fake.query_requests());
    harness.assert_store_matches_upstream();
}

#[test]
fn throttling_is_retried_after_retry_after_and_counted() {
    let fake = company(2200, 100, 0.1);
    let throttled = Arc::new(Mutex::new(0u32));
    let count = throttled.clone();
    fake.on_request(move |request, _| {
        (request.n % 3 == 0).then(|| {
            *count.lock().unwrap() += 1;
            Injected::throttle(1)
        })
    });
    let harness = Harness::new(fake);
    let started = std::time::Instant::now();
    let report = harness.sync();
    let throttled = *throttled.lock().unwrap();
    assert!(throttled >= 1);
    assert_eq!(report.summary.retries, throttled, "every 429 was retried once and counted");
    assert!(started.elapsed() >= std::time::Duration::from_secs(u64::from(throttled)), "Retry-After was honoured");
    harness.assert_store_matches_upstream();
}

#[test]
fn a_burst_of_503_is_ridden_out() {
    let fake = company(1500, 10, 0.0);
    fake.on_request(|request, _| (2..=4).contains(&request.n).then(Injected::unavailable));
    let harness = Harness::new(fake);
    let report = harness.sync();
    assert_eq!(report.summary.retries, 3);
    harness.assert_store_matches_upstream();
}

#[test]
fn truncated_json_fails_naming_where_and_the_next_run_continues() {
    let fake = company(2500, 10, 0.0);
    fake.on_request(|request, _| (request.n == 2).then(Injected::truncated_json));
    let harness = Harness::new(fake);
    let error = failure_text(harness.run());
    assert!(error.contains("invalid response") && error.contains("line 1 column"), "{error}");
    assert!(error.contains("LastUpdatedTime"), "names the page: {error}");
    assert_eq!(harness.live_customers().len(), 1000, "page 1 stays stored");
    assert_checkpoint_not_ahead_of_store(&harness);

    harness.fake.clear_hooks();
    harness.sync();
    harness.assert_store_matches_upstream();
}

#[test]
fn a_quickbooks_fault_names_its_code_and_detail_and_loses_nothing() {
    let harness = Harness::new(company(300, 10, 0.1));
    harness.sync();
    let before = harness.api_records("limit=10000");
    let checkpoint = harness.checkpoint();

    harness.fake.advance(Duration::minutes(1));
    harness.fake.on_request(|_, _| {
        Some(Injected::fault("4000", "Error parsing query", "QueryParserError: Encountered \" \"ORDERBY\" at line 1"))
    });
    let error = failure_text(harness.run());
    assert!(error.contains("4000") && error.contains("QueryParserError"), "{error}");
    assert_eq!(harness.api_records("limit=10000"), before, "nothing stored is lost");
    assert_eq!(harness.checkpoint(), checkpoint, "the checkpoint stays");
}

#[test]
fn a_401_names_the_authentication_fault_and_loses_nothing() {
    let harness = Harness::new(company(300, 10, 0.1));
    harness.sync();
    let before = harness.api_records("limit=10000");
    let error = failure_text(harness.run_with_token(Some("expired-token-value".into())));
    assert!(error.contains("401") && error.contains("3200"), "{error}");
    assert!(!error.contains("expired-token-value"));
    let error = failure_text(harness.run_with_token(None));
    assert!(error.contains("unauthorized") && error.contains("QBO_ACCESS_TOKEN"), "{error}");
    assert_eq!(harness.api_records("limit=10000"), before);
}

#[test]
fn a_malformed_customer_is_a_named_error() {
    let harness = Harness::new(company(50, 10, 0.0));
    harness.fake.on_request(|_, _| {
        Some(Injected::Status {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"QueryResponse":{"Customer":[{"Id":"1","Balance":"lots","MetaData":{"CreateTime":"2026-01-01T00:00:00Z","LastUpdatedTime":"2026-01-01T00:00:00Z"}}]},"time":"2026-05-05T05:00:00.000-07:00"}"#.into(),
        })
    });
    let error = failure_text(harness.run());
    assert!(error.contains("customer 1") && error.contains("Balance"), "{error}");
}

#[test]
fn customers_deleted_outright_are_deleted_through_cdc() {
    let harness = Harness::new(company(400, 10, 0.0));
    harness.sync();
    harness.fake.advance(Duration::hours(2));
    let merged: Vec<String> =
        harness.fake.all_customers().iter().take(4).map(|c| c["Id"].as_str().unwrap().to_owned()).collect();
    for id in &merged {
        assert!(harness.fake.delete_outright(id));
    }
    harness.fake.reset_requests();
    let report = harness.sync();
    assert_eq!(report.outcome.deleted, 4);
    assert_eq!(harness.fake.cdc_requests(), 1);
    harness.assert_store_matches_upstream();
    let deleted: Vec<String> =
        harness.api_records("filter=deleted").iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    for id in &merged {
        assert!(deleted.contains(id), "{id} is DELETED");
    }
}

#[test]
fn beyond_cdc_s_thirty_days_the_run_still_succeeds_without_cdc() {
    let harness = Harness::new(company(100, 10, 0.0));
    harness.sync();
    // Changes of every kind in those forty days, one of them a deletion
    // only CDC would show.
    let ids: Vec<String> = harness.live_customers().into_keys().collect();
    harness.fake.advance(Duration::days(10));
    harness.fake.update(&ids[1], |c| {
        c.insert("DisplayName".into(), serde_json::Value::String("Renamed in the gap".into()));
    });
    harness.fake.archive(&ids[2]);
    assert!(harness.fake.delete_outright(&ids[3]));
    let added = harness.fake.insert(serde_json::json!({"DisplayName": "Added in the gap"}));
    harness.fake.advance(Duration::days(30));
    harness.fake.reset_requests();
    let report = harness.sync();
    assert_eq!(harness.fake.cdc_requests(), 0, "QuickBooks would refuse it");
    assert_eq!((report.outcome.added, report.outcome.deleted), (1, 2), "the addition; the archival and the deletion");
    let live = harness.live_customers();
    assert_eq!(live[&ids[1]]["display_name"], "Renamed in the gap", "{}", live[&ids[1]]);
    assert!(live.contains_key(&added) && !live.contains_key(&ids[2]) && !live.contains_key(&ids[3]));
    harness.assert_store_matches_upstream();
}

#[test]
fn a_guest_over_its_memory_limit_is_stopped_and_the_host_stays_up() {
    let harness = Harness::new(company(1000, 10, 0.0));
    let limits =
        RunLimits { instance: InstanceLimits { memory_bytes: 2 << 20, ..Default::default() }, ..Default::default() };
    let error = failure_text(harness.run_with(Some(TOKEN.into()), limits));
    assert!(error.contains("memory limit"), "{error}");
    harness.sync();
    harness.assert_store_matches_upstream();
}

#[test]
fn a_run_past_its_deadline_is_stopped() {
    let harness = Harness::new(company(10, 1, 0.0));
    harness.fake.on_request(|_, _| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        None
    });
    let limits = RunLimits {
        instance: InstanceLimits { deadline: std::time::Duration::from_millis(100), ..Default::default() },
        ..Default::default()
    };
    let error = failure_text(harness.run_with(Some(TOKEN.into()), limits));
    assert!(error.contains("deadline"), "{error}");
}
