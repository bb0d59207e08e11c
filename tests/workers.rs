//! Scale-out (docs/store.md, "PostgreSQL"): several `sync-host serve
//! --schedule` workers on one PostgreSQL database. Every run is claimed by
//! one worker, a worker killed mid-run leaves its connection to another,
//! which resumes from the checkpoint, and every store ends equal to its
//! company's truth. Skipped without `SYNC_HOST_TEST_POSTGRES`.

use e2e_tests::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration as Wait;
use sync_host::store::{Connection, ConnectionStatus, StoredCredentials};

const COMPANIES: usize = 20;

fn runs(db: &sync_host::store::Store, id: &str) -> Vec<sync_host::store::RunRecord> {
    db.runs.list(id, None, 1000).unwrap().0
}

#[test]
fn three_workers_share_twenty_connections_and_survive_one_killed_mid_run() {
    let Some(backend) = Backend::postgres() else { return };
    // Company 0 is slow: a second per page, 6 pages, so a run is surely in
    // flight when its worker is killed.
    let companies: Vec<FakeQbo> = (0..COMPANIES)
        .map(|n| {
            let fake = FakeQbo::new(&format!("{}", 4620816365000000000u64 + n as u64), TOKEN);
            fake.seed_recorded();
            fake.seed_generated(
                if n == 0 { 5000 } else { 300 + 40 * n },
                &fake_qbo::GenerateOptions { archived_fraction: 0.05, ..Default::default() },
            );
            fake
        })
        .collect();
    companies[0].on_request(|request, _| {
        (request.kind == fake_qbo::RequestKind::Query).then(|| std::thread::sleep(Wait::from_secs(1)));
        None
    });
    let first = Harness::on(companies[0].clone(), backend);
    let harnesses: Vec<Harness> = companies
        .iter()
        .enumerate()
        .map(|(n, fake)| Harness::sharing(fake.clone(), &first, &format!("company-{n:02}")))
        .collect();
    let db = first.database();
    for (n, harness) in harnesses.iter().enumerate() {
        let connection = Connection {
            id: harness.connection.clone(),
            provider: "quickbooks".into(),
            base_url: harness.base_url.clone(),
            config: BTreeMap::from([("realmId".to_owned(), harness.fake.realm_id().to_owned())]),
            every: Some(std::time::Duration::from_secs(3600)),
            paused: false,
            status: ConnectionStatus::Idle,
            status_message: None,
            failures: 0,
            // The slow company first, so it is in flight early.
            next_run_at_us: Some(if n == 0 { 0 } else { 1 }),
            webhook_url: None,
            webhook_format: None,
            integration: None,
            notified_at_us: None,
            created_us: 0,
            updated_us: 0,
        };
        db.connections.insert(&connection, &StoredCredentials::AccessToken(TOKEN.into()), &Default::default()).unwrap();
    }

    let receiver = WebhookReceiver::start();
    let args = ["--schedule", "--workers", "3", "--webhook-url", &receiver.url, "--webhook-secret", "hook-secret"];
    let mut workers: Vec<Option<ServeProcess>> =
        (0..3).map(|_| Some(ServeProcess::start_with(&first.db(), &args, &[]))).collect();
    wait_until("company 0's run to be in flight", Wait::from_secs(60), || {
        runs(&db, "company-00").iter().any(|r| r.outcome.is_none())
    });
    let in_flight = runs(&db, "company-00").into_iter().find(|r| r.outcome.is_none()).unwrap();
    let pid: u32 = in_flight.worker.as_deref().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let victim =
        workers.iter().position(|w| w.as_ref().is_some_and(|w| w.pid() == pid)).expect("a worker of ours runs it");
    // Killed once it has stored a page (pages take a second each, and the
    // worker may first have had to compile the component on a busy machine).
    wait_until("company 0's first page to be stored", Wait::from_secs(60), || {
        first.connection_as("company-00").checkpoint().is_some()
    });
    workers[victim].take().unwrap().kill(); // SIGKILL, mid-run

    wait_until("every connection to have synced", Wait::from_secs(180), || {
        harnesses.iter().all(|h| runs(&db, &h.connection).iter().any(|r| r.error.is_none() && r.outcome.is_some()))
    });

    for harness in &harnesses {
        let mut history = runs(&db, &harness.connection);
        history.sort_by_key(|r| r.started_us);
        for pair in history.windows(2) {
            let ended = pair[0].ended_us.expect("every earlier run has ended");
            assert!(ended <= pair[1].started_us, "{}: runs overlap: {pair:?}", harness.connection);
        }
        harness.connection_as(&harness.connection).assert_store_matches_upstream();
    }
    let slow = runs(&db, "company-00");
    let killed = slow.iter().find(|r| r.id == in_flight.id).unwrap();
    assert!(killed.error.as_deref().unwrap().contains("stopped"), "the killed run is closed: {killed:?}");
    let resumed = slow.iter().find(|r| r.error.is_none()).unwrap();
    assert_ne!(resumed.worker, in_flight.worker, "another worker resumed it");
    let summary: Value = serde_json::from_str(resumed.summary.as_deref().unwrap()).unwrap();
    assert!(summary["pages"].as_u64().unwrap() < 6, "resumed from the checkpoint, not restarted: {summary}");
    // The killed run could tell nothing; the run that resumed it tells from
    // the killed run's start, so an application reading from there misses
    // none of what either stored.
    let started_us = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros();
    wait_until("company 0's webhook", Wait::from_secs(30), || {
        receiver.received().iter().any(|(_, body)| body.contains("\"company-00\""))
    });
    let told: Value = receiver
        .received()
        .iter()
        .map(|(_, body)| serde_json::from_str::<Value>(body).unwrap())
        .find(|w| w["connection_id"] == "company-00")
        .unwrap();
    assert_eq!(told["success"], true, "{told}");
    assert!(
        started_us(told["modified_after"].as_str().unwrap()) <= in_flight.started_us,
        "from the killed run's start: {told}"
    );
    // Any worker serves the API.
    for worker in workers.iter().flatten() {
        let (status, body) = worker.api.get("/connections", &[]);
        assert_eq!((status, body["connections"].as_array().map(Vec::len)), (200, Some(COMPANIES)));
    }
}
