//! Every host runs the conformance component (`testing/conformance`), which
//! checks from the component's side each edge case the WIT documents promise:
//! the rules are written once, there, not again in each host's tests.

use e2e_tests::*;
use fake_qbo::{Injected, RequestKind};
use std::process::Command;

/// A fake provider answering the component's requests, 503 to its 2nd and
/// 4th (the cases of retries), and a fresh database.
fn provider() -> Harness {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_recorded();
    fake.on_request(|request, _| {
        (request.kind == RequestKind::Query && (request.n == 2 || request.n == 4)).then(Injected::unavailable)
    });
    Harness::new(fake)
}

/// `case <name>: <result>` lines of a host's log, in order.
fn cases(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| line.split_once("case ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(": "))
        // sync-host appends the event's fields (` connection=… run=…`).
        .map(|(name, result)| (name.to_owned(), result.split(" connection=").next().unwrap_or("").trim().to_owned()))
        .collect()
}

fn assert_all_pass(host: &str, ok: bool, log: &str) -> Vec<String> {
    let cases = cases(log);
    assert!(cases.len() >= 30, "{host} reported {} cases:\n{log}", cases.len());
    let failed: Vec<&(String, String)> = cases.iter().filter(|(_, result)| result != "ok").collect();
    assert!(failed.is_empty(), "{host} fails conformance cases: {failed:#?}");
    assert!(ok, "{host}'s run failed:\n{log}");
    cases.into_iter().map(|(name, _)| name).collect()
}

#[test]
fn sync_host_passes_every_conformance_case() {
    let harness = provider();
    let wasm = conformance_wasm().to_str().unwrap().to_owned();
    let db = harness.db();
    let (ok, _, stderr) = sync_host_cli(
        &[
            "run",
            "--component",
            &wasm,
            "--db",
            db.as_str(),
            "--base-url",
            &harness.base_url,
            "--realm-id",
            REALM,
            "--connection",
            "conformance",
            "--retry-max-wait-secs",
            "1",
            "-v",
        ],
        &[("QBO_ACCESS_TOKEN", TOKEN)],
    )
    .unwrap();
    let names = assert_all_pass("sync-host", ok, &stderr);
    assert!(names.iter().any(|n| n.starts_with("listing.")) && names.iter().any(|n| n.starts_with("proxy.")));
}

#[test]
fn the_node_host_passes_every_conformance_case() {
    node_ready();
    let harness = provider();
    let output = Command::new("node")
        .arg(node_dir().join("run.mjs"))
        .arg("--component")
        .arg(conformance_wasm())
        .args(["--base-url", &harness.base_url, "--realm-id", REALM, "--connection", "conformance", "--db"])
        .arg(harness.db())
        .args(["--log-level", "info", "--retry-max-wait-secs", "1"])
        .env("QBO_ACCESS_TOKEN", TOKEN)
        .output()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_all_pass("the Node host", output.status.success(), &stderr);
}
