//! Running unattended against QuickBooks companies (docs/connections.md):
//! connections with OAuth that rotates, the scheduler, the control API, and
//! shutting down mid-run. Real processes over loopback; no secret in any
//! output.

use chrono::Duration;
use e2e_tests::*;
use fake_qbo::RequestKind;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration as Wait;

const CLIENT_ID: &str = "e2e-client";
const CLIENT_SECRET: &str = "e2e-client-secret-do-not-leak";

/// A fake company with its token endpoint on; returns the harness and the
/// first refresh token.
fn oauth_company(generated: usize) -> (Harness, String) {
    let harness = Harness::new(company(generated, 10, 0.0));
    let refresh_token = harness.fake.enable_oauth(CLIENT_ID, CLIENT_SECRET);
    (harness, refresh_token)
}

fn add_oauth_connection(harness: &Harness, id: &str, refresh_token: &str, every: &str) {
    let token_url = format!("{}/oauth2/v1/tokens/bearer", harness.base_url);
    add_connection(
        &harness.db(),
        id,
        &harness.base_url,
        &[
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--refresh-token",
            refresh_token,
            "--token-url",
            &token_url,
            "--every",
            every,
        ],
    );
}

/// The stored credentials of a connection, as the host keeps them.
fn stored_refresh_token(harness: &Harness, id: &str) -> String {
    match harness.database().connections.credentials(id).unwrap() {
        Some(sync_host::store::StoredCredentials::OAuth { refresh_token, .. }) => {
            secrecy::ExposeSecret::expose_secret(&refresh_token).to_owned()
        }
        other => panic!("no OAuth credentials: {other:?}"),
    }
}

fn connection(serve: &ServeProcess, id: &str) -> Value {
    let (status, body) = serve.api.get(&format!("/connections/{id}"), &[]);
    assert_eq!(status, 200, "{body}");
    body
}

fn runs(serve: &ServeProcess, id: &str) -> Vec<Value> {
    let (status, body) = serve.api.get(&format!("/connections/{id}/runs?limit=1000"), &[]);
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().clone()
}

fn finished_runs(serve: &ServeProcess, id: &str) -> Vec<Value> {
    runs(serve, id).into_iter().filter(|r| !r["outcome"].is_null()).collect()
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked into {what}: {text}");
    }
}

#[test]
fn an_access_token_expiring_mid_sync_is_refreshed_and_the_run_completes() {
    let (harness, first_refresh) = oauth_company(3500);
    refreshes_mid_sync_with_no_secret_in_a_trace_log(harness, first_refresh);
}

/// The same on PostgreSQL, whose driver logs every statement's parameters
/// (the stored secrets among them) at debug level.
#[test]
fn no_secret_in_a_trace_log_on_postgresql() {
    let Some(backend) = Backend::postgres() else { return };
    let harness = Harness::on(company(3500, 10, 0.0), backend);
    let first_refresh = harness.fake.enable_oauth(CLIENT_ID, CLIENT_SECRET);
    refreshes_mid_sync_with_no_secret_in_a_trace_log(harness, first_refresh);
}

fn refreshes_mid_sync_with_no_secret_in_a_trace_log(harness: Harness, first_refresh: String) {
    add_oauth_connection(&harness, "acme", &first_refresh, "1h");
    harness.fake.on_request(|request, fake| {
        if request.kind == RequestKind::Query && request.n == 3 {
            fake.expire_access_tokens();
        }
        None
    });
    let db = harness.db();
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let (ok, stdout, stderr) = sync_host_cli(
        &["run", "--db", db.as_str(), "--connection", "acme", "--component", &wasm, "-v"],
        &[("RUST_LOG", "trace")],
    )
    .unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(harness.fake.token_refreshes(), 2, "one to start, one after the 401");
    assert!(stderr.contains("access token refreshed"));
    harness.connection_as("acme").assert_store_matches_upstream();
    let rotated = stored_refresh_token(&harness, "acme");
    assert_ne!(rotated, first_refresh, "the rotated refresh token was stored");
    let all_output = format!("{stdout}{stderr}");
    assert_no_secret(
        "the run's output (RUST_LOG=trace)",
        &all_output,
        &[CLIENT_SECRET, &first_refresh, &rotated, "fake-access-"],
    );
}

#[test]
fn a_host_killed_right_after_a_refresh_keeps_the_rotated_token() {
    let (harness, first_refresh) = oauth_company(2500);
    add_oauth_connection(&harness, "acme", &first_refresh, "1h");
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    harness.fake.on_request(move |request, _| {
        seen.store(request.n, Ordering::SeqCst);
        (request.n == 1).then(|| std::thread::sleep(Wait::from_secs(5)));
        None
    });
    let db = harness.db();
    let mut child = std::process::Command::new(host_binary())
        .args(["run", "--db", db.as_str(), "--connection", "acme", "--component"])
        .arg(guest_wasm())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The refresh happened, and its first request with the new token is in flight.
    wait_until("the first request after the refresh", Wait::from_secs(60), || reached.load(Ordering::SeqCst) >= 1);
    assert_eq!(harness.fake.token_refreshes(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    harness.fake.clear_hooks();
    // The superseded token is refused by the provider; the stored one works.
    assert_ne!(stored_refresh_token(&harness, "acme"), first_refresh);
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let (ok, _, stderr) =
        sync_host_cli(&["run", "--db", db.as_str(), "--connection", "acme", "--component", &wasm], &[]).unwrap();
    assert!(ok, "the restarted host works with the rotated token: {stderr}");
    harness.connection_as("acme").assert_store_matches_upstream();
}

#[test]
fn a_revoked_refresh_token_needs_reauthorisation_without_a_retry_storm() {
    let (harness, refresh) = oauth_company(300);
    add_oauth_connection(&harness, "acme", &refresh, "1s");
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule", "--failure-backoff-secs", "1"], &[]);
    wait_until("the first run", Wait::from_secs(30), || !finished_runs(&serve, "acme").is_empty());
    let before = harness.connection_as("acme").api_records("limit=1000");
    harness.fake.revoke_refresh_tokens();
    harness.fake.expire_access_tokens();
    wait_until("needs_reauth", Wait::from_secs(30), || connection(&serve, "acme")["status"] == "needs_reauth");
    let requests = harness.fake.token_requests();
    std::thread::sleep(Wait::from_secs(4));
    assert_eq!(harness.fake.token_requests(), requests, "no retry storm: the schedule stopped");
    let shown = connection(&serve, "acme");
    assert!(shown["status_message"].as_str().unwrap().contains("invalid_grant"), "{shown}");
    assert!(shown["next_run_at"].is_null());
    let (status, body) = serve.api.request("POST", "/connections/acme/sync", &[]);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("needs_reauth")), "{body}");
    assert_eq!(harness.connection_as("acme").api_records("limit=1000"), before, "records intact");

    // Authorised again, the connection is added again: the scheduler runs it
    // as its own (not as asked for through the API), from the checkpoint.
    let db = harness.db();
    let runs_before = finished_runs(&serve, "acme").len();
    let (ok, _, stderr) = sync_host_cli(&["connections", "remove", "acme", "--db", db.as_str()], &[]).unwrap();
    assert!(ok, "{stderr}");
    let renewed = harness.fake.reauthorise().expect("OAuth on");
    add_oauth_connection(&harness, "acme", &renewed, "1h");
    wait_until("the re-added connection's run", Wait::from_secs(30), || {
        finished_runs(&serve, "acme").len() > runs_before
    });
    let first = finished_runs(&serve, "acme").remove(0);
    assert_eq!((first["trigger"].as_str(), first["outcome"].as_str()), (Some("schedule"), Some("success")), "{first}");
    assert_eq!(first["summary"]["added"], 0, "resumed from the checkpoint, records kept: {first}");
    assert_no_secret("serve's log", &serve.stderr(), &[CLIENT_SECRET, &refresh, &renewed]);
}

#[test]
fn one_connection_never_runs_twice_at_once_across_processes() {
    let (harness, refresh) = oauth_company(2500);
    add_oauth_connection(&harness, "acme", &refresh, "1h");
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    harness.fake.on_request(move |request, _| {
        seen.store(request.n, Ordering::SeqCst);
        (request.n == 1).then(|| std::thread::sleep(Wait::from_secs(3)));
        None
    });
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule"], &[]);
    wait_until("the scheduled run to start", Wait::from_secs(30), || reached.load(Ordering::SeqCst) >= 1);
    assert_eq!(connection(&serve, "acme")["status"], "running");
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let db = harness.db();
    let (ok, _, stderr) =
        sync_host_cli(&["run", "--db", db.as_str(), "--connection", "acme", "--component", &wasm], &[]).unwrap();
    assert!(!ok);
    assert!(stderr.contains("another run holds connection `acme`"), "{stderr}");
    wait_until("the scheduled run to end", Wait::from_secs(60), || !finished_runs(&serve, "acme").is_empty());
    assert_eq!(finished_runs(&serve, "acme")[0]["outcome"], "success");
    harness.connection_as("acme").assert_store_matches_upstream();
}

#[test]
fn the_scheduler_runs_due_connections_skips_paused_and_backs_off_a_failing_one() {
    let harness = Harness::new(company(100, 10, 0.0));
    // A company whose every answer is a fault.
    let broken = Harness::new(company(10, 1, 0.0));
    broken.fake.on_request(|_, _| Some(fake_qbo::Injected::fault("5010", "Stale object", "injected for the test")));
    let db = harness.db();
    add_connection(&db, "fast", &harness.base_url, &["--access-token", TOKEN, "--every", "1s"]);
    add_connection(&db, "paused", &harness.base_url, &["--access-token", TOKEN, "--every", "1s"]);
    add_connection(&db, "broken", &broken.base_url, &["--access-token", TOKEN, "--every", "1s"]);
    let serve = ServeProcess::start_with(&db, &["--failure-backoff-secs", "30"], &[]);
    let (status, _) = serve.api.request("POST", "/connections/paused/pause", &[]);
    assert_eq!(status, 200);
    drop(serve);
    let serve = ServeProcess::start_with(&db, &["--schedule", "--failure-backoff-secs", "30"], &[]);
    wait_until("`fast` to run three times", Wait::from_secs(60), || finished_runs(&serve, "fast").len() >= 3);
    assert!(finished_runs(&serve, "paused").is_empty(), "a paused connection never runs");
    assert_eq!(connection(&serve, "paused")["status"], "paused");
    let broken = connection(&serve, "broken");
    assert_eq!(broken["status"], "failing", "{broken}");
    assert!(broken["status_message"].as_str().unwrap().contains("5010"), "{broken}");
    assert_eq!(finished_runs(&serve, "broken").len(), 1, "backing off for 30 s, it ran once");
    // The backoff counts from the failed run's end, as the store recorded both.
    let next = chrono::DateTime::parse_from_rfc3339(broken["next_run_at"].as_str().unwrap()).unwrap();
    let ended = chrono::DateTime::parse_from_rfc3339(broken["last_run"]["ended_at"].as_str().unwrap()).unwrap();
    assert_eq!(next - ended, Duration::seconds(30), "{broken}");
    assert!(finished_runs(&serve, "fast").iter().all(|r| r["outcome"] == "success"));
}

#[test]
fn trigger_reset_pause_resume_frequency_and_history_through_the_api() {
    let (harness, refresh) = oauth_company(300);
    add_oauth_connection(&harness, "acme", &refresh, "1h");
    let key = "e2e-api-key-do-not-leak";
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule", "--api-key", key], &[]);
    let auth = format!("Bearer {key}");
    let auth = [("Authorization", auth.as_str())];
    let (status, _) = serve.api.get("/connections", &[]);
    assert_eq!(status, 401, "the control API takes the API key");
    wait_until("the first run", Wait::from_secs(30), || {
        serve.api.get("/connections/acme/runs", &auth).1["runs"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| !r["outcome"].is_null()))
    });
    let shown = serve.api.get("/connections/acme", &auth).1;
    assert_eq!((shown["status"].as_str(), shown["every"].as_str()), (Some("idle"), Some("1h")), "{shown}");
    assert_eq!(shown["last_run"]["summary"]["added"], 333);
    let (_, list) = serve.api.get("/connections", &auth);
    assert_eq!(list["connections"].as_array().unwrap().len(), 1);

    let runs_now = |n: usize| {
        wait_until(&format!("{n} runs"), Wait::from_secs(30), || {
            serve.api.get("/connections/acme/runs?limit=1000", &auth).1["runs"]
                .as_array()
                .is_some_and(|r| r.iter().filter(|r| !r["outcome"].is_null()).count() >= n)
        });
        serve.api.get("/connections/acme", &auth).1["last_run"].clone()
    };
    // Run now: an incremental run that changes nothing.
    let (status, body) = serve.api.send_json("POST", "/connections/acme/sync", &auth, &json!({}));
    assert_eq!(status, 202, "{body}");
    let last = runs_now(2);
    let changed = |run: &Value| ["added", "updated", "deleted"].map(|k| run["summary"][k].as_u64());
    assert_eq!(changed(&last), [Some(0); 3], "{last}");
    // Reset: the checkpoint is forgotten, a full pass re-reads everything.
    serve.api.send_json("POST", "/connections/acme/sync", &auth, &json!({"reset": true}));
    let last = runs_now(3);
    assert_eq!(last["summary"]["unchanged"], 333, "{last}");
    // Reset and empty: the records too.
    serve.api.send_json("POST", "/connections/acme/sync", &auth, &json!({"reset": true, "empty": true}));
    let last = runs_now(4);
    assert_eq!(last["summary"]["added"], 333, "{last}");
    let (status, body) = serve.api.send_json("POST", "/connections/acme/sync", &auth, &json!({"empty": true}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_body")));
    let (status, body) = serve.api.send_json("POST", "/connections/acme/sync", &auth, &json!({"colour": "blue"}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_field")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("`colour`"), "names the field: {body}");
    let (status, body) = serve.api.send_json("POST", "/connections/acme/sync", &auth, &json!({"reset": "yes"}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_body")), "{body}");
    let (status, body) =
        serve.api.send_json("PATCH", "/connections/acme", &auth, &json!({"every": "1h", "paused": true}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_field")), "{body}");
    let (status, _) = serve.api.send_json("POST", "/connections/acme/sync", &[], &json!({}));
    assert_eq!(status, 401, "the API key, checked before anything else");

    // Pause and resume.
    let (status, paused) = serve.api.request("POST", "/connections/acme/pause", &auth);
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")), "{paused}");
    assert!(paused["next_run_at"].is_null());
    let (status, body) = serve.api.request("POST", "/connections/acme/sync", &auth);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("paused")));
    let (status, resumed) = serve.api.request("POST", "/connections/acme/resume", &auth);
    assert_eq!((status, resumed["status"].as_str()), (200, Some("idle")));

    // Frequency.
    let (status, patched) = serve.api.send_json("PATCH", "/connections/acme", &auth, &json!({"every": "15m"}));
    assert_eq!((status, patched["every"].as_str()), (200, Some("15m")), "{patched}");
    let (status, body) = serve.api.send_json("PATCH", "/connections/acme", &auth, &json!({"every": "often"}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_every")));
    let (status, _) = serve.api.get("/connections/nobody", &auth);
    assert_eq!(status, 404);

    // History: newest first, keyset pages of one.
    let mut seen = Vec::new();
    let mut path = "/connections/acme/runs?limit=1".to_owned();
    loop {
        let (status, page) = serve.api.get(&path, &auth);
        assert_eq!(status, 200, "{page}");
        seen.extend(page["runs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/connections/acme/runs?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert!(seen.len() >= 4);
    let triggers: Vec<&str> = seen.iter().rev().take(4).map(|r| r["trigger"].as_str().unwrap()).collect();
    assert_eq!(triggers, ["schedule", "api", "api", "api"], "the first run is the schedule's, then three asked for");
    let started: Vec<&str> = seen.iter().map(|r| r["started_at"].as_str().unwrap()).collect();
    assert!(started.windows(2).all(|w| w[0] >= w[1]), "newest first: {started:?}");

    let everything = serde_json::to_string(&seen).unwrap() + &serve.stderr();
    assert_no_secret("the API's answers and serve's log", &everything, &[CLIENT_SECRET, &refresh, key]);
}

#[test]
fn sigterm_mid_run_exits_cleanly_and_the_restarted_host_resumes_from_the_checkpoint() {
    let (harness, refresh) = oauth_company(5000);
    add_oauth_connection(&harness, "acme", &refresh, "1h");
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    harness.fake.on_request(move |request, _| {
        seen.store(request.n, Ordering::SeqCst);
        (request.n == 3).then(|| std::thread::sleep(Wait::from_secs(2)));
        None
    });
    let receiver = WebhookReceiver::start();
    let webhooks = ["--schedule", "--webhook-url", &receiver.url, "--webhook-secret", "hook-secret"];
    let serve = ServeProcess::start_with(&harness.db(), &webhooks, &[]);
    wait_until("page 3", Wait::from_secs(60), || reached.load(Ordering::SeqCst) >= 3);
    let (clean, stderr) = serve.terminate();
    assert!(clean, "SIGTERM exits cleanly: {stderr}");
    harness.fake.clear_hooks();
    let checkpoint = harness.connection_as("acme").checkpoint().unwrap();
    assert_eq!(checkpoint["complete"], false, "{checkpoint}");
    let stored = harness.connection_as("acme").live_customers().len();
    assert!(stored >= 2990, "the pages read before SIGTERM are stored: {stored}");

    harness.fake.reset_requests();
    let serve = ServeProcess::start_with(&harness.db(), &webhooks, &[]);
    wait_until("the resumed run", Wait::from_secs(60), || {
        finished_runs(&serve, "acme").first().is_some_and(|r| r["outcome"] == "success")
    });
    let runs = finished_runs(&serve, "acme");
    assert!(runs[1]["error"].as_str().unwrap().contains("interrupted"), "{:?}", runs[1]);
    assert!(harness.fake.query_requests() <= 4, "resumed, not restarted: {} queries", harness.fake.query_requests());
    harness.connection_as("acme").assert_store_matches_upstream();

    // What the stopped run stored is told too: an application that reads from
    // each webhook's modified_after sees every customer.
    wait_until("both runs' webhooks", Wait::from_secs(30), || receiver.received().len() == 2);
    let told: Vec<Value> = receiver.received().iter().map(|(_, body)| serde_json::from_str(body).unwrap()).collect();
    let stopped = told.iter().find(|w| w["success"] == false).expect("the stopped run's webhook");
    assert!(stopped["error"].as_str().unwrap().contains("interrupted"), "{stopped}");
    let added: u64 = told.iter().map(|w| w["added"].as_u64().unwrap()).sum();
    assert_eq!(added as usize, harness.connection_as("acme").live_customers().len(), "{told:?}");
    let mut read = std::collections::BTreeSet::new();
    for webhook in &told {
        let since = webhook["modified_after"].as_str().unwrap();
        for record in harness.connection_as("acme").api_records(&format!("modified_after={since}")) {
            read.insert(record["id"].as_str().unwrap().to_owned());
        }
    }
    let live: std::collections::BTreeSet<String> = harness.connection_as("acme").live_customers().into_keys().collect();
    assert_eq!(read, live, "reading from the webhooks' modified_after finds every stored customer");
}

#[test]
fn control_api_answers_conform_to_the_openapi_document() {
    let (harness, refresh) = oauth_company(50);
    add_oauth_connection(&harness, "acme", &refresh, "1h");
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule"], &[]);
    wait_until("the first run", Wait::from_secs(30), || !finished_runs(&serve, "acme").is_empty());
    let document = served_openapi(&serve.api);
    // The status a user relies on, then the body against that status's schema.
    let check = |path: &str, method: &str, expected: u16, (status, body): (u16, Value)| {
        assert_eq!(status, expected, "{method} {path}: {body}");
        let responses = &document["paths"][path][method]["responses"];
        assert_openapi_response(&document, &responses[status.to_string()], &body);
    };
    check("/connections", "get", 200, serve.api.get("/connections", &[]));
    check("/connections/{id}", "get", 200, serve.api.get("/connections/acme", &[]));
    check("/connections/{id}", "get", 404, serve.api.get("/connections/nobody", &[]));
    check(
        "/connections/{id}",
        "patch",
        200,
        serve.api.send_json("PATCH", "/connections/acme", &[], &json!({"every": "30m"})),
    );
    check(
        "/connections/{id}",
        "patch",
        400,
        serve.api.send_json("PATCH", "/connections/acme", &[], &json!({"every": 5})),
    );
    check("/connections/{id}/pause", "post", 200, serve.api.request("POST", "/connections/acme/pause", &[]));
    check("/connections/{id}/sync", "post", 409, serve.api.request("POST", "/connections/acme/sync", &[]));
    check("/connections/{id}/resume", "post", 200, serve.api.request("POST", "/connections/acme/resume", &[]));
    check(
        "/connections/{id}/sync",
        "post",
        202,
        serve.api.send_json("POST", "/connections/acme/sync", &[], &json!({"reset": true})),
    );
    check("/connections/{id}/runs", "get", 200, serve.api.get("/connections/acme/runs?limit=1", &[]));
    check("/connections/{id}/runs", "get", 400, serve.api.get("/connections/acme/runs?cursor=nope", &[]));
    check("/connections/{id}/deliveries", "get", 200, serve.api.get("/connections/acme/deliveries", &[]));
    check(
        "/webhooks/quickbooks",
        "post",
        401,
        serve.api.send_json("POST", "/webhooks/quickbooks", &[("intuit-signature", "bad")], &json!([])),
    );
}

#[test]
fn a_frequency_changed_during_a_run_sets_the_next_run_after_it() {
    let harness = Harness::new(company(2000, 10, 0.0));
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN, "--every", "1d"]);
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    harness.fake.on_request(move |request, _| {
        seen.store(request.n, Ordering::SeqCst);
        (request.n == 2).then(|| std::thread::sleep(Wait::from_secs(2)));
        None
    });
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule"], &[]);
    wait_until("the run's second request", Wait::from_secs(30), || reached.load(Ordering::SeqCst) >= 2);
    let (status, patched) = serve.api.send_json("PATCH", "/connections/acme", &[], &json!({"every": "1m"}));
    assert_eq!((status, patched["every"].as_str()), (200, Some("1m")), "{patched}");
    wait_until("the run's end", Wait::from_secs(30), || !finished_runs(&serve, "acme").is_empty());
    let after = connection(&serve, "acme");
    let started = chrono::DateTime::parse_from_rfc3339(after["last_run"]["started_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(after["next_run_at"].as_str().unwrap()).unwrap();
    assert_eq!(next - started, Duration::minutes(1), "the new interval, not the one the run began with: {after}");
}

#[test]
fn connections_add_refuses_what_could_not_work_and_stores_nothing() {
    let harness = Harness::new(company(10, 0, 0.0));
    let db = harness.db();
    let base = harness.base_url.as_str();
    let add = |id: &str, base_url: &str, extra: &[&str]| {
        let mut args = vec!["connections", "add", id, "--db", db.as_str(), "--base-url", base_url, "--realm-id", "1"];
        args.extend_from_slice(extra);
        sync_host_cli(&args, &[]).unwrap()
    };
    let cases: [(&str, &str, &[&str], &str); 6] = [
        ("a b/c", base, &["--access-token", TOKEN], "is not a connection id"),
        (
            "acme",
            "https://user:hunter2@example.com",
            &["--access-token", TOKEN],
            "--base-url must not carry a user name or password",
        ),
        ("acme", "example.com", &["--access-token", TOKEN], "must start with http:// or https://"),
        ("acme", base, &["--access-token", TOKEN, "--every", "9999999999999d"], "longer than the longest interval"),
        (
            "acme",
            base,
            &["--access-token", TOKEN, "--webhook-url", "notaurl", "--webhook-secret", "s"],
            "must start with http",
        ),
        (
            "acme",
            base,
            &["--client-id", "a", "--client-secret", "b", "--refresh-token", "c", "--token-url", "ftp://x/"],
            "must start with http",
        ),
    ];
    for (id, base_url, extra, why) in cases {
        let (ok, _, stderr) = add(id, base_url, extra);
        assert!(!ok && stderr.contains(why), "{id} {base_url} {extra:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "the password is not echoed: {stderr}");
    }
    let (ok, stdout, stderr) = sync_host_cli(&["connections", "list", "--db", db.as_str()], &[]).unwrap();
    assert!(!ok || stdout.trim().is_empty(), "nothing was stored: {stdout} {stderr}");
    let (ok, _, stderr) = sync_host_cli(&["serve", "--db", db.as_str(), "--schedule", "--workers", "0"], &[]).unwrap();
    assert!(!ok && stderr.contains("--workers"), "{stderr}");
}

#[test]
fn credentials_from_the_environment_never_clash_with_flags_the_user_typed() {
    let harness = Harness::new(company(10, 0, 0.0));
    let db = harness.db();
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let add = |id: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args =
            vec!["connections", "add", id, "--db", db.as_str(), "--base-url", &harness.base_url, "--realm-id", REALM];
        args.extend(["--component", &wasm]);
        args.extend_from_slice(extra);
        sync_host_cli(&args, env).unwrap()
    };
    // An exported QBO_ACCESS_TOKEN and OAuth typed on the command line: OAuth.
    let oauth = ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--refresh-token", "r1"];
    let (ok, _, stderr) = add("typed", &oauth, &[("QBO_ACCESS_TOKEN", "from-the-environment")]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("cannot be used with"), "{stderr}");
    assert!(stderr.contains("using OAuth"), "says which credentials it took: {stderr}");
    let stored = harness.database().connections.credentials("typed").unwrap();
    assert!(matches!(stored, Some(sync_host::store::StoredCredentials::OAuth { .. })), "{stored:?}");
    // OAuth half given: the missing values named, by flag and by variable.
    let (ok, _, stderr) = add("half", &["--client-id", CLIENT_ID], &[("QBO_CLIENT_SECRET", "s")]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("--refresh-token (or QBO_REFRESH_TOKEN)") && !stderr.contains("--client-secret"),
        "{stderr}"
    );
    // An exported QBO_CLIENT_ID and a typed access token: the access token.
    let (ok, _, stderr) = add("quick", &["--access-token", TOKEN], &[("QBO_CLIENT_ID", "exported")]);
    assert!(ok, "{stderr}");
}

#[test]
fn a_purge_after_a_plain_remove_deletes_what_the_connection_left() {
    let harness = Harness::new(company(40, 0, 0.0));
    let db = harness.db();
    add_connection(&db, "acme", &harness.base_url, &["--access-token", TOKEN]);
    let (ok, stdout, stderr) = sync_host_cli(
        &["run", "--db", db.as_str(), "--connection", "acme", "--component", guest_wasm().to_str().unwrap()],
        &[],
    )
    .unwrap();
    assert!(ok, "{stdout}{stderr}");
    let stored = harness.connection_as("acme").live_customers().len();
    let records = harness.connection_as("acme").api_records("limit=10000").len();
    assert!(stored > 0);
    let remove = |extra: &[&str]| {
        let mut args = vec!["connections", "remove", "acme", "--db", db.as_str()];
        args.extend_from_slice(extra);
        sync_host_cli(&args, &[]).unwrap()
    };
    let (ok, _, stderr) = remove(&[]);
    assert!(ok && stderr.contains("its records stay"), "{stderr}");
    assert_eq!(harness.connection_as("acme").live_customers().len(), stored, "kept without --purge");
    let (ok, _, stderr) = remove(&["--purge"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("already removed") && stderr.contains(&format!("({records} records)")), "{stderr}");
    assert!(harness.connection_as("acme").checkpoint().is_none());
    assert!(!harness.database().records.connection_exists("acme").unwrap(), "nothing left under the id");
    let (ok, _, stderr) = remove(&["--purge"]);
    assert!(!ok && stderr.contains("nothing stored under that id"), "{stderr}");
}

#[test]
fn run_now_on_a_server_that_does_not_schedule_is_refused_not_lost() {
    let harness = Harness::new(company(10, 0, 0.0));
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN]);
    let serve = ServeProcess::start(&harness.db(), None);
    let (status, body) = serve.api.request("POST", "/connections/acme/sync", &[]);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_scheduling")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--schedule"), "{body}");
    assert!(runs(&serve, "acme").is_empty(), "nothing started");
    let (status, _) = serve.api.request("POST", "/connections/nobody/sync", &[]);
    assert_eq!(status, 404);
}

#[test]
fn postgresql_commands_print_no_driver_notices() {
    let Some(Backend::Postgres { admin_url }) = Backend::postgres() else { return };
    let database = scratch_database(&admin_url);
    // The first opening creates the schema, the second finds it there (the
    // driver's NOTICE "relation … already exists, skipping" was printed).
    for _ in 0..2 {
        let (ok, stdout, stderr) = sync_host_cli(&["connections", "list", "--db", &database.url], &[]).unwrap();
        assert!(ok, "{stderr}");
        assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""), "nothing but what was asked");
    }
}

#[test]
fn sync_host_wait_returns_once_the_connection_is_settled() {
    let harness = Harness::new(company(300, 10, 0.0));
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN, "--every", "1h"]);
    let key = "wait-api-key-do-not-leak";
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule", "--api-key", key], &[]);
    let wait = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["wait", "acme", "--api", serve.api.base_url.as_str()];
        args.extend_from_slice(extra);
        sync_host_cli(&args, env).unwrap()
    };
    let auth = [("Authorization", "Bearer wait-api-key-do-not-leak")];
    // The first run: wait returns only once it has finished, and prints it.
    let (ok, stdout, stderr) = wait(&[], &[("SYNC_HOST_API_KEY", key)]);
    assert!(ok, "{stderr}");
    let run: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((run["trigger"].as_str(), run["outcome"].as_str()), (Some("schedule"), Some("success")), "{run}");
    assert_eq!(harness.connection_as("acme").live_customers().len(), 333, "synced by the time wait returned");
    // Records asked for without saying whose: the error says to send the header.
    let (status, body) = serve.api.get("/customers", &auth);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_connection")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("send `Connection-Id: <connection id>`"), "{body}");
    // Run now: what wait prints is the run asked for, not the one before.
    let (status, _) = serve.api.request("POST", "/connections/acme/sync", &auth);
    assert_eq!(status, 202);
    let (ok, stdout, stderr) = wait(&["--api-key", key], &[]);
    assert!(ok, "{stderr}");
    let run: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(run["trigger"], "api", "{run}");
    assert_eq!(serve.api.get("/connections/acme", &auth).1["status"], "idle");
    // What it cannot wait for is named, and the key is never echoed.
    let (ok, _, stderr) = wait(&["--trigger", "webhook", "--timeout-secs", "1", "--api-key", key], &[]);
    assert!(!ok && stderr.contains("timed out after 1 s") && stderr.contains("webhook"), "{stderr}");
    let (ok, _, stderr) = wait(&["--api-key", "wrong"], &[]);
    assert!(!ok && stderr.contains("refused the API key") && !stderr.contains("wrong"), "{stderr}");
    let (ok, _, stderr) =
        sync_host_cli(&["wait", "nobody", "--api", &serve.api.base_url, "--api-key", key], &[]).unwrap();
    assert!(!ok && stderr.contains("no connection `nobody`"), "{stderr}");
    assert_no_secret("wait's output", &stderr, &[key]);
}
