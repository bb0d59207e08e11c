//! `GET /customers` as platform users rely on it (docs/api.md), end to end
//! through `sync-host serve`, on each backend: SQLite, and PostgreSQL when
//! `SYNC_HOST_TEST_POSTGRES` names a server (one suite, two backends).

use chrono::Duration;
use e2e_tests::*;
use fake_qbo::GenerateOptions;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// A store with two connections: `default` (600 customers, some archived and
/// then some changed, so every last_action occurs) and `acme` (33).
fn synced(backend: Backend) -> Harness {
    let fake = FakeQbo::new(REALM, TOKEN);
    fake.seed_generated(600, &GenerateOptions { archived_fraction: 0.1, ..Default::default() });
    let mut harness = Harness::on(fake, backend);
    harness.sync();
    harness.fake.advance(Duration::hours(1));
    let ids: Vec<String> = harness.fake.all_customers().iter().map(|c| c["Id"].as_str().unwrap().to_owned()).collect();
    for id in ids.iter().step_by(10) {
        harness.fake.update(id, |c| {
            c.insert("GivenName".into(), Value::String("Changed".into()));
        });
    }
    for id in ids.iter().skip(5).step_by(25) {
        harness.fake.archive(id);
    }
    harness.sync();

    let acme = FakeQbo::new(REALM, TOKEN);
    acme.seed_recorded();
    let acme_server = acme.start().unwrap();
    let spec = sync_host::runs::ConnectionSpec::new(
        "acme",
        &acme_server.base_url(),
        quickbooks::config(REALM),
        Some(TOKEN.into()),
    );
    sync_host::runs::Runner::new(runtime(), harness.database()).run(&spec, None).unwrap();
    harness.connection = "default".into();
    harness
}

fn ids(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn page_all(api: &ApiClient, query: &str, headers: &[(&str, &str)]) -> Vec<Value> {
    page_from(api, query, None, headers)
}

fn page_from(api: &ApiClient, query: &str, cursor: Option<&str>, headers: &[(&str, &str)]) -> Vec<Value> {
    let mut records = Vec::new();
    let mut path = match cursor {
        Some(cursor) => format!("/customers?{query}&cursor={cursor}"),
        None => format!("/customers?{query}"),
    };
    loop {
        let (status, body) = api.get(&path, headers);
        assert_eq!(status, 200, "{path}: {body}");
        records.extend(body["records"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/customers?{query}&cursor={cursor}"),
            None => return records,
        }
    }
}

fn order_key(record: &Value) -> (String, String) {
    (
        record["_nango_metadata"]["last_modified_at"].as_str().unwrap().to_owned(),
        record["id"].as_str().unwrap().to_owned(),
    )
}

fn paging_with_any_limit_visits_every_record_once_in_order(backend: Backend) {
    let harness = synced(backend);
    let serve = ServeProcess::start(&harness.db(), None);
    let everything = page_all(&serve.api, "limit=10000", &[]);
    assert_eq!(everything.len(), 600 - 60, "every record ever stored, the 24 archived since included");
    for limit in [1, 7, 100, 9999] {
        let records = page_all(&serve.api, &format!("limit={limit}"), &[]);
        assert_eq!(ids(&records), ids(&everything), "limit={limit}");
        let keys: Vec<(String, String)> = records.iter().map(order_key).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "strictly ordered by (last_modified_at, id)");
    }
    // next_cursor is null exactly when nothing more follows.
    let (_, exact) = serve.api.get(&format!("/customers?limit={}", everything.len()), &[]);
    assert_eq!(exact["next_cursor"], Value::Null);
    let (_, short) = serve.api.get(&format!("/customers?limit={}", everything.len() - 1), &[]);
    assert!(short["next_cursor"].is_string());
    // The default limit is 100.
    let (_, default) = serve.api.get("/customers", &[]);
    assert_eq!(default["records"].as_array().unwrap().len(), 100);
}

fn filters_and_modified_after_combine(backend: Backend) {
    let harness = synced(backend);
    let serve = ServeProcess::start(&harness.db(), None);
    let all = page_all(&serve.api, "limit=10000", &[]);
    let by_action = |action: &str| -> HashSet<String> {
        all.iter()
            .filter(|r| r["_nango_metadata"]["last_action"] == action)
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let as_set = |records: Vec<Value>| -> HashSet<String> { ids(&records).into_iter().collect() };
    assert_eq!(as_set(page_all(&serve.api, "filter=added", &[])), by_action("ADDED"));
    assert_eq!(as_set(page_all(&serve.api, "filter=updated", &[])), by_action("UPDATED"));
    assert_eq!(as_set(page_all(&serve.api, "filter=deleted", &[])), by_action("DELETED"));
    assert_eq!(by_action("DELETED").len(), 24);
    let live: HashSet<String> = by_action("ADDED").union(&by_action("UPDATED")).cloned().collect();
    assert_eq!(as_set(page_all(&serve.api, "filter=added,updated&limit=50", &[])), live);
    assert_eq!(
        as_set(page_all(&serve.api, "filter=updated,deleted,updated", &[])).len(),
        by_action("UPDATED").len() + 24
    );

    let pivot = all[all.len() / 2]["_nango_metadata"]["last_modified_at"].as_str().unwrap().to_owned();
    let after: Vec<Value> = all
        .iter()
        .filter(|r| r["_nango_metadata"]["last_modified_at"].as_str().unwrap() >= pivot.as_str())
        .cloned()
        .collect();
    let query = format!("modified_after={pivot}&limit=33");
    assert_eq!(ids(&page_all(&serve.api, &query, &[])), ids(&after));
    let deleted_after: Vec<String> =
        ids(&after.iter().filter(|r| r["_nango_metadata"]["last_action"] == "DELETED").cloned().collect::<Vec<_>>());
    assert_eq!(ids(&page_all(&serve.api, &format!("{query}&filter=deleted"), &[])), deleted_after);
}

fn a_record_cursor_resumes_right_after_it_and_modified_records_come_back(backend: Backend) {
    let harness = synced(backend);
    let serve = ServeProcess::start(&harness.db(), None);
    let all = page_all(&serve.api, "limit=10000", &[]);
    let tenth = &all[9];
    let cursor = tenth["_nango_metadata"]["cursor"].as_str().unwrap();
    let (_, body) = serve.api.get(&format!("/customers?cursor={cursor}&limit=5"), &[]);
    assert_eq!(ids(body["records"].as_array().unwrap()), ids(&all[10..15]));

    // A client pages; meanwhile a record it already read changes upstream and is synced.
    let (_, first) = serve.api.get("/customers?limit=50", &[]);
    let read = first["records"].as_array().unwrap();
    let changed_id = read[3]["id"].as_str().unwrap().to_owned();
    assert!(read[3]["_nango_metadata"]["deleted_at"].is_null());
    harness.fake.advance(Duration::minutes(1));
    harness.fake.update(&changed_id, |c| {
        c.insert("DisplayName".into(), Value::String("changed while a client pages".into()));
    });
    harness.sync();
    let rest = page_from(&serve.api, "limit=50", first["next_cursor"].as_str(), &[]);
    let again = rest.iter().find(|r| r["id"] == changed_id.as_str()).expect("the modified record shows up again");
    assert_eq!(again["display_name"], "changed while a client pages");
    assert_eq!(again["_nango_metadata"]["last_action"], "UPDATED");
    let seen: HashSet<String> = ids(read).into_iter().chain(ids(&rest)).collect();
    assert_eq!(seen.len(), all.len(), "nothing lost");
}

fn connections_are_isolated_and_selected_by_header(backend: Backend) {
    let harness = synced(backend);
    let serve = ServeProcess::start(&harness.db(), None);
    let acme = page_all(&serve.api, "limit=10000", &[("Connection-Id", "acme")]);
    assert_eq!(acme.len(), 33);
    let expected: Vec<Value> = serde_json::from_str(include_str!("fixtures/qbo-customers-page.expected.json")).unwrap();
    let by_id: BTreeMap<String, Value> = acme
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("_nango_metadata");
            (r["id"].as_str().unwrap().to_owned(), r)
        })
        .collect();
    for want in &expected {
        assert_eq!(&by_id[want["id"].as_str().unwrap()], want);
    }
    let default = page_all(&serve.api, "limit=10000", &[]);
    let explicit = page_all(&serve.api, "limit=10000", &[("Connection-Id", "default")]);
    assert_eq!(ids(&default), ids(&explicit));
    assert!(ids(&default).iter().all(|id| id.parse::<u32>().unwrap() > 0));
    assert_ne!(default.len(), 33);
}

fn bad_input_gets_a_400_naming_the_parameter_never_a_500(backend: Backend) {
    let harness = synced(backend);
    let serve = ServeProcess::start(&harness.db(), None);
    for (query, code, names) in [
        ("limit=0", "invalid_limit", "limit"),
        ("limit=abc", "invalid_limit", "limit"),
        ("limit=10001", "invalid_limit", "limit"),
        ("limit=", "invalid_limit", "limit"),
        ("cursor=not-a-cursor", "invalid_cursor", "cursor"),
        ("cursor=MXwxMjM", "invalid_cursor", "cursor"),
        ("filter=bogus", "invalid_filter", "filter"),
        ("filter=", "invalid_filter", "filter"),
        ("modified_after=yesterday", "invalid_modified_after", "modified_after"),
        ("modified_after=2026-13-45T00:00:00Z", "invalid_modified_after", "modified_after"),
        ("colour=blue", "unknown_parameter", "colour"),
    ] {
        let (status, body) = serve.api.get(&format!("/customers?{query}"), &[]);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}");
        assert!(body["error"]["message"].as_str().unwrap().contains(names), "{query}: {body}");
    }
    let (status, body) = serve.api.get("/customers", &[("Connection-Id", "nobody")]);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_connection")));
    assert!(body["error"]["message"].as_str().unwrap().contains("Connection-Id"));

    let (status, body) = serve.api.get("/invoices", &[]);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = serve.api.request("POST", "/customers", &[]);
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let (status, _) = serve.api.request("DELETE", "/customers?limit=1", &[]);
    assert_eq!(status, 405);
}

fn an_api_key_is_required_when_configured(backend: Backend) {
    let harness = synced(backend);
    let serve = ServeProcess::start(&harness.db(), Some("k3y-for-tests"));
    let (status, body) = serve.api.get("/customers?limit=1", &[]);
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = serve.api.get("/customers?limit=1", &[("Authorization", "Bearer wrong")]);
    assert_eq!(status, 401);
    let (status, _) = serve.api.get("/customers?limit=1", &[("Authorization", "k3y-for-tests")]);
    assert_eq!(status, 401);
    let (status, body) = serve.api.get("/customers?limit=1", &[("Authorization", "Bearer k3y-for-tests")]);
    assert_eq!(status, 200, "{body}");
}

fn real_responses_conform_to_the_openapi_document(backend: Backend) {
    let harness = synced(backend);
    let serve = ServeProcess::start(&harness.db(), Some("k"));
    let auth = [("Authorization", "Bearer k")];
    let document = served_openapi(&serve.api);
    // The one the code makes for this component and an API key.
    let state =
        sync_host::api::ApiState::new(harness.database(), Some("k".into()), runtime().metadata().endpoints.clone());
    assert_eq!(document, sync_host::api::openapi_document(state), "the served document is the one made from the code");
    // The records' schema is the component's model, as it declares it.
    let mut declared = runtime().metadata().models[0].json_schema.clone();
    declared.as_object_mut().unwrap().remove("$schema");
    assert_eq!(document["components"]["schemas"]["Customer"], declared);

    let responses = &document["paths"]["/customers"]["get"]["responses"];
    let error = serde_json::json!({"$ref": "#/components/responses/Error"});
    let check = |status: u16, body: &Value| {
        let response = if status == 405 { &error } else { &responses[status.to_string()] };
        assert_openapi_response(&document, response, body)
    };
    for query in ["limit=10000", "limit=3&filter=deleted", "filter=updated&limit=2", "limit=1"] {
        let (status, body) = serve.api.get(&format!("/customers?{query}"), &auth);
        assert_eq!(status, 200);
        check(status, &body);
    }
    for query in ["limit=0", "cursor=x", "filter=x"] {
        let (status, body) = serve.api.get(&format!("/customers?{query}"), &auth);
        check(status, &body);
    }
    let (status, body) = serve.api.get("/customers", &[]);
    check(status, &body);
    let (status, body) = serve.api.request("POST", "/customers", &auth);
    assert_eq!(status, 405, "the router's answer for a method the document does not list");
    check(status, &body);
}

/// Each case on each backend: `<case>::sqlite` and `<case>::postgres`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[test]
                fn sqlite() {
                    super::$case(e2e_tests::Backend::Sqlite);
                }

                #[test]
                fn postgres() {
                    if let Some(backend) = e2e_tests::Backend::postgres() {
                        super::$case(backend);
                    }
                }
            }
        )*
    };
}

on_both_backends!(
    paging_with_any_limit_visits_every_record_once_in_order,
    filters_and_modified_after_combine,
    a_record_cursor_resumes_right_after_it_and_modified_records_come_back,
    connections_are_isolated_and_selected_by_header,
    bad_input_gets_a_400_naming_the_parameter_never_a_500,
    an_api_key_is_required_when_configured,
    real_responses_conform_to_the_openapi_document,
);
