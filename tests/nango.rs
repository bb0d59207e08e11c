//! An application written against Nango, unchanged, against `sync-host
//! serve`: Nango's own Node SDK (`@nangohq/node` 0.71.10, `support/nango.rs`)
//! is the client (docs/nango.md).

use chrono::Duration;
use e2e_tests::*;
use serde_json::{json, Value};
use std::time::Duration as Wait;

const WEBHOOK_SECRET: &str = "e2e-nango-webhook-secret-do-not-leak";
const INTEGRATION: &str = "qbo-prod";

fn start_serve(harness: &Harness, receiver: &WebhookReceiver, extra: &[&str]) -> ServeProcess {
    let mut args = vec!["--schedule", "--webhook-url", &receiver.url, "--webhook-secret", WEBHOOK_SECRET];
    args.extend_from_slice(extra);
    ServeProcess::start_with(&harness.db(), &args, &[])
}

/// Whether the SDK's `verifyIncomingWebhookRequest` and its legacy
/// `verifyWebhookSignature` accept a received webhook, with `key` as the
/// app's signing key.
fn sdk_verifies(headers: &std::collections::BTreeMap<String, String>, body: &str, key: &str) -> (bool, bool) {
    let request = |call: &str, args: Value| {
        let answer = nango_sdk(&json!({
            "host": "http://127.0.0.1:1", "key": "unused", "webhookSigningKey": key, "call": call, "args": args
        }));
        assert_eq!(answer["ok"], true, "{call}: {answer}");
        answer["result"].as_bool().unwrap_or_else(|| panic!("{call} answers a boolean: {answer}"))
    };
    let parsed: Value = serde_json::from_str(body).unwrap();
    let legacy = headers.get("x-nango-signature").cloned().unwrap_or_default();
    (
        request("verifyIncomingWebhookRequest", json!([body, headers])),
        request("verifyWebhookSignature", json!([legacy, parsed])),
    )
}

#[test]
fn webhooks_in_nangos_format_verify_with_nangos_sdk_and_say_initial_then_incremental() {
    let harness = Harness::new(company(120, 10, 0.0));
    let integration = ["--integration", INTEGRATION, "--webhook-format", "nango"];
    let args = [&["--access-token", TOKEN, "--every", "1h"][..], &integration[..]].concat();
    add_connection(&harness.db(), "acme", &harness.base_url, &args);
    let receiver = WebhookReceiver::start();
    let serve = start_serve(&harness, &receiver, &[]);
    wait_until("the first webhook", Wait::from_secs(30), || receiver.received_with_headers().len() == 1);
    let (headers, body) = receiver.received_with_headers().remove(0);

    assert!(!headers.contains_key("x-sync-signature"), "Nango's headers only: {headers:?}");
    assert_eq!(sdk_verifies(&headers, &body, WEBHOOK_SECRET), (true, true), "both of the SDK's checks accept it");
    assert_eq!(sdk_verifies(&headers, &body, "another-key"), (false, false), "another key does not");
    let tampered = body.replacen("\"success\":true", "\"success\":false", 1);
    assert_eq!(sdk_verifies(&headers, &tampered, WEBHOOK_SECRET), (false, false), "nor another body");

    let webhook: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(serde_json::to_string(&webhook).unwrap(), body, "compact, keys sorted: as Nango serialises it");
    let since = webhook["modifiedAfter"].as_str().unwrap().to_owned();
    assert_eq!(
        webhook,
        json!({
            "from": "nango", "type": "sync", "connectionId": "acme", "providerConfigKey": INTEGRATION,
            "syncName": "customers", "syncVariant": "base", "model": "Customer", "syncType": "INITIAL",
            "success": true, "responseResults": {"added": 153, "updated": 0, "deleted": 0},
            "modifiedAfter": since, "queryTimeStamp": since,
        })
    );

    // An edit upstream: the next run is incremental, and says what changed.
    harness.fake.advance(Duration::minutes(5));
    let id = harness.fake.ids()[0].clone();
    harness.fake.update(&id, |c| {
        c.insert("DisplayName".into(), json!("Renamed for Nango"));
    });
    serve.api.request("POST", "/connections/acme/sync", &[]);
    wait_until("the second webhook", Wait::from_secs(30), || receiver.received_with_headers().len() == 2);
    let second: Value = serde_json::from_str(&receiver.received_with_headers()[1].1).unwrap();
    assert_eq!((second["syncType"].as_str(), second["success"].as_bool()), (Some("INCREMENTAL"), Some(true)));
    assert_eq!(second["responseResults"], json!({"added": 0, "updated": 1, "deleted": 0}), "{second}");

    // A failed run: Nango's failure shape, still signed.
    harness.fake.on_request(|_, _| Some(fake_qbo::Injected::fault("6000", "A business validation error", "injected")));
    serve.api.request("POST", "/connections/acme/sync", &[]);
    wait_until("the failure's webhook", Wait::from_secs(30), || receiver.received_with_headers().len() == 3);
    let (headers, body) = receiver.received_with_headers().remove(2);
    assert!(sdk_verifies(&headers, &body, WEBHOOK_SECRET).0, "the SDK accepts the failure's webhook");
    let failure: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((failure["success"].as_bool(), failure["syncType"].as_str()), (Some(false), Some("INCREMENTAL")));
    assert_eq!(failure["error"]["type"], "script_error", "{failure}");
    assert!(failure["error"]["description"].as_str().unwrap().contains("6000"), "{failure}");
    assert!(failure["startedAt"].is_string() && failure["failedAt"].is_string(), "{failure}");
    assert!(failure.get("responseResults").is_none(), "{failure}");
    // Every webhook of the run, the incremental one too, passes both of the SDK's checks.
    for (i, (headers, body)) in receiver.received_with_headers().iter().enumerate() {
        assert_eq!(sdk_verifies(headers, body, WEBHOOK_SECRET), (true, true), "webhook {i}");
    }
    assert!(!serve.stderr().contains(WEBHOOK_SECRET), "the secret leaked");
}

#[test]
fn the_server_default_format_applies_to_connections_that_name_none() {
    let harness = Harness::new(company(30, 10, 0.0));
    add_connection(&harness.db(), "plain", &harness.base_url, &["--access-token", TOKEN, "--every", "1h"]);
    let receiver = WebhookReceiver::start();
    let _serve = start_serve(&harness, &receiver, &["--webhook-format", "nango"]);
    wait_until("the webhook", Wait::from_secs(30), || receiver.received_with_headers().len() == 1);
    let (headers, body) = receiver.received_with_headers().remove(0);
    assert_eq!(sdk_verifies(&headers, &body, WEBHOOK_SECRET), (true, true));
    let webhook: Value = serde_json::from_str(&body).unwrap();
    // No integration given: the provider's name stands for it.
    assert_eq!((webhook["from"].as_str(), webhook["providerConfigKey"].as_str()), (Some("nango"), Some("quickbooks")));
}

const API_KEY: &str = "e2e-nango-api-key-do-not-leak";

/// One call of Nango's SDK against `serve`, with the server's key.
fn sdk(serve: &ServeProcess, call: &str, args: Value) -> Value {
    sdk_with_key(serve, API_KEY, call, args)
}

fn sdk_with_key(serve: &ServeProcess, key: &str, call: &str, args: Value) -> Value {
    nango_sdk(&json!({"host": serve.api.base_url, "key": key, "call": call, "args": args}))
}

/// Every record of `model` through `listRecords`, page by page at `limit`,
/// with `extra` options; and how many pages it took.
fn list_all(serve: &ServeProcess, limit: u32, extra: Value) -> (Vec<Value>, usize) {
    let (mut records, mut pages, mut cursor) = (Vec::new(), 0, Value::Null);
    loop {
        let mut options = json!({
            "providerConfigKey": INTEGRATION, "connectionId": "acme", "model": "Customer", "limit": limit
        });
        for (key, value) in extra.as_object().unwrap() {
            options[key] = value.clone();
        }
        if !cursor.is_null() {
            options["cursor"] = cursor.clone();
        }
        let answer = sdk(serve, "listRecords", json!([options]));
        assert_eq!(answer["ok"], true, "{answer}");
        pages += 1;
        records.extend(answer["result"]["records"].as_array().unwrap().iter().cloned());
        cursor = answer["result"]["next_cursor"].clone();
        if cursor.is_null() {
            return (records, pages);
        }
    }
}

fn ids(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn nango_serve(harness: &Harness, receiver: &WebhookReceiver) -> ServeProcess {
    let integration = ["--integration", INTEGRATION, "--webhook-format", "nango"];
    let args = [&["--access-token", TOKEN, "--every", "1h"][..], &integration[..]].concat();
    add_connection(&harness.db(), "acme", &harness.base_url, &args);
    start_serve(harness, receiver, &["--api-key", API_KEY])
}

#[test]
fn list_records_through_the_sdk_pages_filters_and_refuses_as_nango_does() {
    let harness = Harness::new(company(120, 10, 0.0));
    let receiver = WebhookReceiver::start();
    let serve = nango_serve(&harness, &receiver);
    wait_until("the first webhook", Wait::from_secs(30), || receiver.received_with_headers().len() == 1);

    // Every record once, in order, whatever the page size.
    let (all, _) = list_all(&serve, 1000, json!({}));
    assert_eq!(all.len(), 153);
    for limit in [7, 50] {
        let (paged, pages) = list_all(&serve, limit, json!({}));
        assert_eq!(ids(&paged), ids(&all), "limit {limit}");
        assert_eq!(pages, 153_usize.div_ceil(limit as usize), "limit {limit}");
    }
    let metadata = &all[0]["_nango_metadata"];
    assert_eq!(
        (metadata["last_action"].as_str(), metadata["pruned_at"].is_null()),
        (Some("ADDED"), true),
        "{metadata}"
    );

    // An edit and an archival upstream, told by a webhook whose modifiedAfter
    // reads exactly them.
    harness.fake.advance(Duration::minutes(5));
    let (edited, archived) = (ids(&all)[3].clone(), ids(&all)[4].clone());
    harness.fake.update(&edited, |c| {
        c.insert("DisplayName".into(), json!("Edited for Nango"));
    });
    harness.fake.archive(&archived);
    serve.api.request("POST", "/connections/acme/sync", &[("Authorization", &format!("Bearer {API_KEY}"))]);
    wait_until("the second webhook", Wait::from_secs(30), || receiver.received_with_headers().len() == 2);
    let told: Value = serde_json::from_str(&receiver.received_with_headers()[1].1).unwrap();
    let (changed, _) = list_all(&serve, 100, json!({"modifiedAfter": told["modifiedAfter"]}));
    let mut changed = ids(&changed);
    changed.sort();
    let mut expected = vec![edited.clone(), archived.clone()];
    expected.sort();
    assert_eq!(changed, expected, "modifiedAfter from the webhook: what changed, nothing else");

    // Each filter, and the true union of any two (any case).
    let count = |filter: &str| list_all(&serve, 1000, json!({"filter": filter})).0.len();
    assert_eq!((count("added"), count("updated"), count("deleted")), (151, 1, 1));
    assert_eq!(count("updated,deleted"), 2, "Nango's own store answers one of the two here");
    assert_eq!(count("added,deleted"), 152, "and here");
    assert_eq!(count("ADDED,Updated"), 152);

    // Chosen ids.
    let (chosen, _) = list_all(&serve, 100, json!({"ids": [edited, archived, "no-such-id"]}));
    assert_eq!(chosen.len(), 2);

    // Refused as Nango refuses: a wrong key, a wrong integration, a bad limit.
    let wrong_key = sdk_with_key(
        &serve,
        "not-the-key",
        "listRecords",
        json!([{"providerConfigKey": INTEGRATION, "connectionId": "acme", "model": "Customer"}]),
    );
    assert_eq!(
        (wrong_key["status"].as_u64(), wrong_key["data"]["error"]["code"].as_str()),
        (Some(401), Some("unknown_account"))
    );
    let wrong_integration = sdk(
        &serve,
        "listRecords",
        json!([{"providerConfigKey": "other", "connectionId": "acme", "model": "Customer"}]),
    );
    assert_eq!(
        (wrong_integration["status"].as_u64(), wrong_integration["data"]["error"]["code"].as_str()),
        (Some(400), Some("unknown_connection"))
    );
    let bad_limit = sdk(
        &serve,
        "listRecords",
        json!([{"providerConfigKey": INTEGRATION, "connectionId": "acme", "model": "Customer", "limit": 10001}]),
    );
    let error = &bad_limit["data"]["error"];
    assert_eq!(
        (error["code"].as_str(), &error["errors"][0]["path"]),
        (Some("invalid_query_params"), &json!(["limit"])),
        "{error}"
    );
    let unknown_model = sdk(
        &serve,
        "listRecords",
        json!([{"providerConfigKey": INTEGRATION, "connectionId": "acme", "model": "Invoice"}]),
    );
    assert_eq!(unknown_model["data"]["error"]["code"], "invalid_query_params", "{}", unknown_model["data"]);

    // Without the SDK: no key, a malformed one; and the headers the route needs.
    let (status, body) = serve.api.get("/records/?model=Customer", &[]);
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("missing_auth_header")));
    let (status, body) = serve.api.get("/records/?model=Customer", &[("Authorization", API_KEY)]);
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("malformed_auth_header")));
    let auth = format!("Bearer {API_KEY}");
    let (status, body) = serve.api.get("/records?model=Customer", &[("Authorization", &auth)]);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_headers")), "{body}");
    let (status, body) = serve.api.get(
        "/records?model=Customer&colour=red",
        &[("Authorization", &auth), ("Connection-Id", "acme"), ("Provider-Config-Key", INTEGRATION)],
    );
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query_params")), "{body}");
    // `ids` on the records API too.
    let (status, body) =
        serve.api.get(&format!("/customers?ids={edited}"), &[("Authorization", &auth), ("Connection-Id", "acme")]);
    assert_eq!((status, body["records"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
    assert!(!serve.stderr().contains(API_KEY), "the key leaked");
}

#[test]
fn sync_control_through_the_sdk_drives_the_same_runs_as_the_control_api() {
    let harness = Harness::new(company(40, 10, 0.0));
    let receiver = WebhookReceiver::start();
    let serve = nango_serve(&harness, &receiver);
    wait_until("the first webhook", Wait::from_secs(30), || receiver.received_with_headers().len() == 1);
    let runs = || {
        let (_, body) =
            serve.api.get("/connections/acme/runs?limit=100", &[("Authorization", &format!("Bearer {API_KEY}"))]);
        body["runs"].as_array().unwrap().iter().filter(|r| !r["outcome"].is_null()).count()
    };
    let status = || {
        let answer = sdk(&serve, "syncStatus", json!([INTEGRATION, "*", "acme"]));
        assert_eq!(answer["ok"], true, "{answer}");
        answer["result"]["syncs"][0].clone()
    };
    let first = status();
    assert_eq!(
        (first["connection_id"].as_str(), first["name"].as_str(), first["variant"].as_str()),
        (Some("acme"), Some("customers"), Some("base"))
    );
    assert_eq!((first["status"].as_str(), first["type"].as_str()), (Some("SUCCESS"), Some("INCREMENTAL")), "{first}");
    assert_eq!(
        (first["recordCount"]["Customer"].as_u64(), first["latestResult"]["Customer"]["added"].as_u64()),
        (Some(73), Some(73))
    );
    assert_eq!(
        (first["latestExecutionStatus"].as_str(), first["frequency"].as_str()),
        (Some("SUCCESS"), Some("every 1h"))
    );
    assert!(
        first["finishedAt"].is_string() && first["nextScheduledSyncAt"].is_string() && first["checkpoint"].is_object(),
        "{first}"
    );

    // triggerSync: a run now; with reset, a run from nothing (INITIAL).
    let answer = sdk(&serve, "triggerSync", json!([INTEGRATION, ["customers"], "acme"]));
    assert_eq!(
        (answer["ok"].as_bool(), answer["result"]["data"]["success"].as_bool()),
        (Some(true), Some(true)),
        "{answer}"
    );
    wait_until("the triggered run", Wait::from_secs(30), || runs() == 2);
    let answer = sdk(&serve, "triggerSync", json!([INTEGRATION, ["customers"], "acme", {"reset": true}]));
    assert_eq!(answer["ok"], true, "{answer}");
    wait_until("the reset run", Wait::from_secs(30), || runs() == 3);
    // It started over: it read every customer again (all unchanged), where
    // the run before read only what changed (nothing).
    let (_, history) =
        serve.api.get("/connections/acme/runs?limit=2", &[("Authorization", &format!("Bearer {API_KEY}"))]);
    let unchanged = |i: usize| history["runs"][i]["summary"]["unchanged"].as_u64();
    assert_eq!(unchanged(0), Some(73), "{}", history["runs"]);
    assert!(unchanged(1) < Some(10), "the run before read only what changed: {}", history["runs"]);
    // The legacy sync_mode too; an unknown sync is refused.
    let answer = sdk(&serve, "triggerSync", json!([INTEGRATION, ["customers"], "acme", "incremental"]));
    assert_eq!(answer["ok"], true, "{answer}");
    wait_until("the incremental run", Wait::from_secs(30), || runs() == 4);
    let unknown = sdk(&serve, "triggerSync", json!([INTEGRATION, ["invoices"], "acme"]));
    assert_eq!(
        (unknown["status"].as_u64(), unknown["data"]["error"]["code"].as_str()),
        (Some(400), Some("unknown_sync"))
    );

    // pauseSync / startSync, seen by syncStatus and by the control API.
    assert_eq!(sdk(&serve, "pauseSync", json!([INTEGRATION, ["customers"], "acme"]))["ok"], true);
    assert_eq!((status()["status"].as_str(), status()["nextScheduledSyncAt"].is_null()), (Some("PAUSED"), true));
    let (_, shown) = serve.api.get("/connections/acme", &[("Authorization", &format!("Bearer {API_KEY}"))]);
    assert_eq!(shown["status"], "paused");
    let refused = sdk(&serve, "triggerSync", json!([INTEGRATION, ["customers"]]));
    assert_eq!((refused["status"].as_u64(), refused["data"]["error"]["code"].as_str()), (Some(409), Some("paused")));
    // Without a connection id: every connection of the integration.
    assert_eq!(sdk(&serve, "startSync", json!([INTEGRATION, ["customers"]]))["ok"], true);
    wait_until("the run after start", Wait::from_secs(30), || runs() == 5);
    let all = sdk(&serve, "syncStatus", json!([INTEGRATION, ["customers"]]));
    assert_eq!(all["result"]["syncs"].as_array().map(Vec::len), Some(1), "{all}");

    // listConnections: Nango's names, never credentials.
    let listed = sdk(&serve, "listConnections", json!([]));
    let connection = &listed["result"]["connections"][0];
    assert_eq!(
        (
            connection["connection_id"].as_str(),
            connection["provider_config_key"].as_str(),
            connection["provider"].as_str()
        ),
        (Some("acme"), Some(INTEGRATION), Some("quickbooks")),
        "{listed}"
    );
    assert!(connection["created"].is_string(), "{connection}");
    assert!(!listed.to_string().contains(TOKEN), "no credentials in {listed}");
}
