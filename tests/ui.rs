//! The operator's dashboard (`GET /ui`, docs/ui.md) in a real browser:
//! Debian's headless Chromium driven by playwright-core (pinned in
//! `tests/ui/package.json`, installed by `npm ci`; it downloads no browser),
//! against `sync-host serve --schedule --api-key` on the fake QuickBooks.
//! `tests/ui/browser.mjs` does what an operator does and checks what the page
//! shows against the API and the fake's truth; this file sets the scene.
//!
//! Without /usr/bin/chromium the test says how to install it and is skipped,
//! unless `CI=true` or `SYNC_HOST_REQUIRE_BROWSER=1`, where it fails. The
//! screenshots go to `$SYNC_HOST_UI_SCREENSHOTS` when set (docs/ has copies),
//! else to a temporary folder.

use e2e_tests::*;
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const API_KEY: &str = "e2e-ui-api-key-do-not-leak";
const WEBHOOK_SECRET: &str = "e2e-ui-webhook-secret-do-not-leak";
const CLIENT_ID: &str = "e2e-ui-app";
const CLIENT_SECRET: &str = "e2e-ui-client-secret-do-not-leak";
const REVOKED_REFRESH_TOKEN: &str = "e2e-ui-revoked-refresh-token-do-not-leak";
/// A customer's name that runs script if the page ever parses data as HTML.
const HOSTILE: &str = r#"<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> & Sons"#;

#[test]
fn the_dashboard_shows_and_drives_the_connections_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let driver = driver_installed();

    // acme: a company with a hostile customer name, archived customers, webhooks.
    let harness = Harness::new(company(150, 10, 0.1));
    let hostile_id = harness.fake.ids()[5].clone();
    harness.fake.reactivate(&hostile_id);
    harness.fake.update(&hostile_id, |c| {
        c.insert("DisplayName".into(), json!(HOSTILE));
    });
    let live = harness.fake.all_customers().iter().filter(|c| c["Active"].as_bool().unwrap_or(true)).count();
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN, "--every", "1h"]);
    // globex: a company whose token endpoint refuses the connection's refresh
    // token (invalid_grant), so it needs re-authorising and says why.
    let other = FakeQbo::new(REALM, "globex-token");
    other.enable_oauth_with_refresh_token(CLIENT_ID, CLIENT_SECRET, "globex-current-refresh-token");
    let other_server = other.start().expect("the second fake starts");
    let token_url = format!("{}/oauth2/v1/tokens/bearer", other_server.base_url());
    add_connection(
        &harness.db(),
        "globex",
        &other_server.base_url(),
        &[
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--refresh-token",
            REVOKED_REFRESH_TOKEN,
            "--token-url",
            &token_url,
        ],
    );

    let receiver = WebhookReceiver::start();
    let serve = ServeProcess::start_with(
        &harness.db(),
        &["--schedule", "--api-key", API_KEY, "--webhook-url", &receiver.url, "--webhook-secret", WEBHOOK_SECRET],
        &[],
    );
    let auth = format!("Bearer {API_KEY}");
    let connection = |id: &str| serve.api.get(&format!("/connections/{id}"), &[("Authorization", &auth)]).1;
    wait_until("acme has synced and globex needs re-authorising", Duration::from_secs(120), || {
        connection("acme")["last_run"]["outcome"] == "success" && connection("globex")["status"] == "needs_reauth"
    });
    assert_eq!(connection("acme")["last_run"]["summary"]["added"], json!(live), "{}", connection("acme"));

    // The run the page asks for waits at QuickBooks until the page has shown
    // it running (browser.mjs creates the gate), so the page is seen live.
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let held = gate.clone();
    harness.fake.on_request(move |_, _| {
        let since = std::time::Instant::now();
        while !held.exists() && since.elapsed() < Duration::from_secs(300) {
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    // Something for that run to bring: an edit and an archival upstream.
    harness.fake.advance(chrono::Duration::minutes(5));
    let active: Vec<String> = harness
        .fake
        .all_customers()
        .into_iter()
        .filter(|c| c["Active"].as_bool().unwrap_or(true))
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .filter(|id| *id != hostile_id)
        .collect();
    harness.fake.update(&active[0], |c| {
        c.insert("DisplayName".into(), json!("Edited while the operator watched"));
    });
    harness.fake.archive(&active[1]);

    let screenshots = match std::env::var_os("SYNC_HOST_UI_SCREENSHOTS") {
        Some(folder) => PathBuf::from(folder),
        None => dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let answer = run_driver(
        &driver,
        &json!({
            "base": serve.api.base_url,
            "chromium": chromium,
            "key": API_KEY,
            "wrongKey": "not-the-key",
            "connection": "acme",
            "broken": "globex",
            "expectedLive": live,
            "hostileId": hostile_id,
            "hostile": HOSTILE,
            "gate": gate,
            "screenshots": screenshots,
            "secrets": [TOKEN, WEBHOOK_SECRET, CLIENT_SECRET, REVOKED_REFRESH_TOKEN, "globex-current-refresh-token"],
        }),
    );
    assert_eq!(answer["ok"], true, "{answer}");
    // Shown with --nocapture: what the browser checked, in order.
    for step in answer["checked"].as_array().unwrap() {
        println!("checked: {}", step.as_str().unwrap_or_default());
    }
    for name in ["ui-connections.png", "ui-connection.png", "ui-records.png", "ui-phone.png"] {
        assert!(screenshots.join(name).metadata().is_ok_and(|m| m.len() > 0), "screenshot {name}");
    }
    assert!(gate.exists(), "the page showed the run live");

    // What the page did, as the API and the store see it.
    let acme = connection("acme");
    assert_eq!((acme["status"].as_str(), acme["every"].as_str()), (Some("idle"), Some("1h")), "{acme}");
    let runs = serve.api.get("/connections/acme/runs", &[("Authorization", &auth)]).1;
    let api_runs: Vec<&Value> = runs["runs"].as_array().unwrap().iter().filter(|r| r["trigger"] == "api").collect();
    assert_eq!(
        api_runs.len(),
        3,
        "run now, reset, reset and empty, each once (the dismissed reset sent nothing): {runs}"
    );
    assert!(api_runs.iter().all(|r| r["outcome"] == "success"), "{runs}");
    harness.connection_as("acme").assert_store_matches_upstream();
    let stderr = serve.stderr();
    for secret in [API_KEY, WEBHOOK_SECRET, TOKEN, CLIENT_SECRET, REVOKED_REFRESH_TOKEN] {
        assert!(!stderr.contains(secret), "serve logged a secret");
    }
}

/// Debian's Chromium, or `None` (after saying how to install it) where it
/// is not required.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("SYNC_HOST_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("SYNC_HOST_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let why = format!(
        "the dashboard's browser test needs Chromium at {} (Debian, Ubuntu: `sudo apt-get install -y chromium \
         chromium-driver`; or set SYNC_HOST_CHROMIUM to a Chromium binary)",
        path.display()
    );
    assert!(!required, "{why}; CI=true or SYNC_HOST_REQUIRE_BROWSER=1 says it must run");
    // Straight to stderr: the harness hides `eprintln!` of a passing test.
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
    None
}

/// `tests/ui`, with its locked playwright-core installed (`npm ci`) on first use.
fn driver_installed() -> PathBuf {
    // playwright-core downloads nothing on install; this says so to any later version.
    npm_installed("ui", "playwright-core", &[("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")])
}

/// Runs `browser.mjs` with `config` on its stdin; its last line is its answer.
fn run_driver(dir: &Path, config: &Value) -> Value {
    node_script(dir, "browser.mjs", config)
}
