//! The same `.wasm` in hosts nobody here wrote: `sync-host compose` wires the
//! customers component, unchanged, to the WASI adapters (`host/wasi`) into
//! one WASI command, and stock runtimes (the wasmtime CLI, wasmtime-py, jco)
//! run it against the fake QuickBooks on loopback: full sync, edits and
//! archivals upstream, an incremental run resumed from the checkpoint, an
//! idle one; `sync-host serve` then serves exactly the fake's truth from
//! `/state/sync.sqlite`. Runtimes are installed pinned under
//! `target/wasi-runtimes` (support/wasi.rs); a missing tool skips, unless
//! `SYNC_HOST_REQUIRE_WASI_TOOLS=1`.

use chrono::Duration;
use e2e_tests::wasi::{
    adapters_built, assert_served_matches_upstream, command_env, compose, customers_command, run_command,
    upstream_truth, CommandRun, Runtime,
};
use e2e_tests::*;
use serde_json::Value;

/// The token must show nowhere: not in what the command printed, not in
/// what the component could log.
fn assert_no_token(run: &CommandRun, token: &str) {
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "the token shows:\n{}{}",
        run.stdout,
        run.stderr
    );
}

/// Full, then upstream edits and archives, then incremental, then idle, in
/// `runtime`; the served store equals the fake's truth after each.
fn edits_archives_and_incremental(runtime: Runtime) {
    let Some(command) = customers_command() else { return };
    // 333 customers: 300 generated (10 % archived, 100 sharing one
    // timestamp) plus the 33 recorded ones.
    let harness = Harness::new(company(300, 100, 0.1));
    let fake = &harness.fake;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("sync.sqlite");
    let env = command_env(&harness.base_url, TOKEN, REALM);

    let Some(full) = run_command(runtime, command, state.path(), &env) else { return };
    assert!(full.ok, "{runtime:?}: the full sync failed:\n{}", full.stderr);
    assert_no_token(&full, TOKEN);
    let summary = full.summary();
    let active = upstream_truth(fake).len();
    assert!(active > 250 && active < 333, "some customers are archived upstream ({active} active)");
    assert_eq!(summary["added"], active, "{runtime:?}: {summary}");
    assert_eq!((summary["updated"].as_u64(), summary["deleted"].as_u64()), (Some(0), Some(0)), "{summary}");
    assert_eq!(summary["requests"], fake.requests().len(), "every request went through the provider once");
    assert_eq!(fake.cdc_requests(), 0, "a first sync lists everything");
    assert!(!state.path().join("sync.sqlite-wal").exists(), "the driver closes the store, folding its log");
    assert_served_matches_upstream(&db, fake);

    // Upstream, an hour later: renames, archivals and additions.
    fake.advance(Duration::hours(1));
    let ids: Vec<String> = upstream_truth(fake).keys().cloned().collect();
    let renamed: Vec<String> = ids.iter().step_by(30).take(5).cloned().collect();
    let archived: Vec<String> = ids.iter().skip(7).step_by(40).take(3).cloned().collect();
    assert!(renamed.iter().all(|id| !archived.contains(id)));
    for id in &renamed {
        fake.update(id, |c| {
            c.insert("DisplayName".into(), Value::String(format!("Renamed {id} — Ünïcode 'quoted'")));
        });
    }
    for id in &archived {
        fake.archive(id);
    }
    for i in 0..2 {
        fake.insert(serde_json::json!({"DisplayName": format!("New customer {i}"), "Balance": 314.28}));
    }
    fake.reset_requests();

    let incremental = run_command(runtime, command, state.path(), &env).unwrap();
    assert!(incremental.ok, "{runtime:?}: the incremental sync failed:\n{}", incremental.stderr);
    assert_no_token(&incremental, TOKEN);
    let summary = incremental.summary();
    assert_eq!(
        (&summary["added"], &summary["updated"], &summary["deleted"]),
        (&2.into(), &5.into(), &3.into()),
        "{summary}"
    );
    assert!(
        incremental.stderr.contains("incremental sync from"),
        "resumed from the checkpoint:\n{}",
        incremental.stderr
    );
    assert!(fake.cdc_requests() >= 1, "an incremental run asks CDC for deletions");
    assert_served_matches_upstream(&db, fake);

    // Nothing changed upstream: a few requests (CDC among them), no change.
    fake.reset_requests();
    let idle = run_command(runtime, command, state.path(), &env).unwrap();
    assert!(idle.ok, "{runtime:?}: the idle run failed:\n{}", idle.stderr);
    let summary = idle.summary();
    assert_eq!(
        (&summary["added"], &summary["updated"], &summary["deleted"]),
        (&0.into(), &0.into(), &0.into()),
        "{summary}"
    );
    assert!(fake.cdc_requests() >= 1 && fake.requests().len() <= 3, "idle: {:?}", fake.requests());
    assert_served_matches_upstream(&db, fake);
}

#[test]
fn the_wasmtime_cli_syncs_edits_archives_and_resumes_incrementally() {
    edits_archives_and_incremental(Runtime::WasmtimeCli);
}

#[test]
fn wasmtime_py_syncs_edits_archives_and_resumes_incrementally() {
    edits_archives_and_incremental(Runtime::WasmtimePy);
}

#[test]
fn jco_syncs_edits_archives_and_resumes_incrementally() {
    edits_archives_and_incremental(Runtime::Jco);
}

#[test]
fn the_component_is_embedded_byte_for_byte() {
    let Some(command) = customers_command() else { return };
    let input = std::fs::read(guest_wasm()).unwrap();
    let output = std::fs::read(command).unwrap();
    assert!(output.len() > input.len());
    assert!(output.windows(input.len()).any(|w| w == input.as_slice()), "the component's bytes are not in the command");
}

#[test]
fn a_failed_run_exits_non_zero_with_a_named_error_and_never_the_token() {
    let Some(command) = customers_command() else { return };
    let harness = Harness::new(company(0, 0, 0.0));
    let state = tempfile::tempdir().unwrap();
    // The fake refuses this token: a 401, named, without the token.
    let wrong = "wrong-token-that-must-not-show";
    let Some(run) =
        run_command(Runtime::WasmtimeCli, command, state.path(), &command_env(&harness.base_url, wrong, REALM))
    else {
        return;
    };
    assert!(!run.ok, "a refused token fails the run");
    assert!(run.stderr.contains("error: run failed: provider error: HTTP 401"), "{}", run.stderr);
    assert_no_token(&run, wrong);
    // No token at all: `unauthorized`, named.
    let mut env = command_env(&harness.base_url, "", REALM);
    env.retain(|(k, _)| k != "SYNC_ACCESS_TOKEN");
    let run = run_command(Runtime::WasmtimeCli, command, state.path(), &env).unwrap();
    assert!(!run.ok);
    assert!(run.stderr.contains("unauthorized: no access token"), "{}", run.stderr);
    // A configuration key the component does not read is refused, as `sync-host run` does.
    let mut env = command_env(&harness.base_url, TOKEN, REALM);
    env.push(("SYNC_CONFIG_realmID".into(), REALM.into()));
    harness.fake.reset_requests();
    let run = run_command(Runtime::WasmtimeCli, command, state.path(), &env).unwrap();
    assert!(!run.ok && run.stderr.contains("reads no configuration key `realmID`"), "{}", run.stderr);
    assert_eq!(harness.fake.requests().len(), 0, "the refused configuration sent nothing");
}

#[test]
fn inspect_says_the_output_is_a_wasi_command_and_what_it_needs() {
    let Some(command) = customers_command() else { return };
    let (fits, stdout, stderr) = sync_host_cli(&["inspect", command.to_str().unwrap()], &[]).unwrap();
    assert!(!fits, "sync-host itself does not run a WASI command");
    let said = format!("{stdout}{stderr}");
    for needed in [
        "a WASI command (exports wasi:cli/run@0.2",
        "outgoing wasi:http",
        "a preopened /state",
        "SYNC_BASE_URL, SYNC_ACCESS_TOKEN, SYNC_CONFIG_realmId",
        "import wasi:http/outgoing-handler@0.2",
        "import wasi:filesystem/preopens@0.2",
    ] {
        assert!(said.contains(needed), "inspect does not say `{needed}`:\n{said}");
    }
    assert!(!said.contains("portable-sync:sync/"), "the component's own imports are satisfied inside:\n{said}");
}

#[test]
fn compose_refuses_a_component_that_imports_more_than_the_adapters_give() {
    adapters_built();
    let dir = tempfile::tempdir().unwrap();
    let greedy = dir.path().join("greedy.wasm");
    // A component asking for the filesystem would reach /state through the composition.
    let bytes =
        wat::parse_str(r#"(component (import "wasi:filesystem/preopens@0.2.0" (instance (export "f" (func)))))"#)
            .unwrap();
    std::fs::write(&greedy, bytes).unwrap();
    let output = dir.path().join("out.wasm");
    let (ok, _, stderr) =
        sync_host_cli(&["compose", "--component", greedy.to_str().unwrap(), "--output", output.to_str().unwrap()], &[])
            .unwrap();
    assert!(
        !ok && stderr.contains("cannot be composed") && stderr.contains("wasi:filesystem/preopens@0.2.0"),
        "{stderr}"
    );
    assert!(!output.exists());
}

/// `case <name>: <result>` lines of the command's log.
fn conformance_cases(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| line.split_once("case ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(": "))
        .map(|(name, result)| (name.to_owned(), result.trim().to_owned()))
        .collect()
}

/// The conformance component, composed the same way, passes every case in
/// `runtime` (the same provider as `conformance.rs`: 503 to its 2nd and 4th
/// query, for the retry cases).
fn conformance(runtime: Runtime) {
    adapters_built();
    let dir = tempfile::tempdir().unwrap();
    let Some(command) = compose(conformance_wasm(), dir.path(), "conformance.command.wasm") else { return };
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_recorded();
    fake.on_request(|request, _| {
        (request.kind == fake_qbo::RequestKind::Query && (request.n == 2 || request.n == 4))
            .then(fake_qbo::Injected::unavailable)
    });
    let harness = Harness::new(fake);
    let state = tempfile::tempdir().unwrap();
    let mut env = command_env(&harness.base_url, TOKEN, REALM);
    env.push(("SYNC_CONNECTION".into(), "conformance".into()));
    env.push(("SYNC_RETRY_MAX_WAIT_SECS".into(), "1".into()));
    let Some(run) = run_command(runtime, &command, state.path(), &env) else { return };
    let cases = conformance_cases(&run.stderr);
    assert!(cases.len() >= 30, "{runtime:?} reported {} cases:\n{}", cases.len(), run.stderr);
    let failed: Vec<&(String, String)> = cases.iter().filter(|(_, result)| result != "ok").collect();
    assert!(failed.is_empty(), "{runtime:?} fails conformance cases: {failed:#?}");
    assert!(run.ok, "{runtime:?}: the conformance run failed:\n{}", run.stderr);
    assert!(cases.iter().any(|(n, _)| n.starts_with("listing.")) && cases.iter().any(|(n, _)| n.starts_with("proxy.")));
    assert_no_token(&run, TOKEN);
}

#[test]
fn the_conformance_component_passes_every_case_in_the_wasmtime_cli() {
    conformance(Runtime::WasmtimeCli);
}

#[test]
fn wasmtime_py_and_jco_pass_every_conformance_case_too() {
    conformance(Runtime::WasmtimePy);
    conformance(Runtime::Jco);
}

/// The component never sees the token: the provider gives it an empty
/// environment (the probe logs everything it can see), while the provider
/// itself reads the token from the same process environment.
#[test]
fn the_component_sees_an_empty_environment_while_the_token_is_set() {
    let Some(()) = adapters_built() else { return };
    let dir = tempfile::tempdir().unwrap();
    let probe = workspace().join("target/wasm32-wasip2/release/sync_wasi_env_probe.wasm");
    let Some(command) = compose(&probe, dir.path(), "probe.command.wasm") else { return };
    let state = tempfile::tempdir().unwrap();
    let token = "probe-token-the-component-must-not-see";
    let env = vec![
        ("SYNC_BASE_URL".to_owned(), "http://127.0.0.1:9".to_owned()),
        ("SYNC_ACCESS_TOKEN".to_owned(), token.to_owned()),
        ("SYNC_CONNECTION".to_owned(), "probe".to_owned()),
    ];
    for runtime in [Runtime::WasmtimeCli, Runtime::WasmtimePy, Runtime::Jco] {
        let Some(run) = run_command(runtime, &command, state.path(), &env) else { continue };
        assert!(run.ok, "{runtime:?}: {}", run.stderr);
        assert!(run.stderr.contains("probe environment: 0 variables []"), "{runtime:?}:\n{}", run.stderr);
        assert!(run.stderr.contains("probe arguments: 0"), "{runtime:?}:\n{}", run.stderr);
        assert_no_token(&run, token);
    }
}

/// The store is sync-host's own: after a stock runtime's full sync,
/// `sync-host run` on the same file resumes from the same checkpoint (an
/// incremental run, CDC included) and finds nothing to change.
#[test]
fn sync_host_run_resumes_from_what_the_wasmtime_cli_stored() {
    let Some(command) = customers_command() else { return };
    let harness = Harness::new(company(100, 0, 0.1));
    let state = tempfile::tempdir().unwrap();
    let env = command_env(&harness.base_url, TOKEN, REALM);
    let Some(full) = run_command(Runtime::WasmtimeCli, command, state.path(), &env) else { return };
    assert!(full.ok, "{}", full.stderr);
    harness.fake.reset_requests();
    let db = state.path().join("sync.sqlite");
    let (ok, stdout, stderr) = sync_host_cli(
        &[
            "run",
            "--db",
            db.to_str().unwrap(),
            "--base-url",
            &harness.base_url,
            "--realm-id",
            REALM,
            "--component",
            guest_wasm().to_str().unwrap(),
            "-v",
        ],
        &[("QBO_ACCESS_TOKEN", TOKEN)],
    )
    .unwrap();
    assert!(ok, "{stdout}{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (&summary["added"], &summary["updated"], &summary["deleted"]),
        (&0.into(), &0.into(), &0.into()),
        "{summary}"
    );
    assert!(stderr.contains("incremental sync from"), "{stderr}");
    assert!(harness.fake.cdc_requests() >= 1);
}
