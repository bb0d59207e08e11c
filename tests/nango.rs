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
