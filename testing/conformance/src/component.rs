//! The cases, against the WIT imports.

wit_bindgen::generate!({
    world: "sync-component",
    path: "../../wit",
});

use exports::portable_sync::sync::sync::{
    ConfigKey, Endpoint, Guest, Metadata, Model, ProviderLimits, RunError, Summary, SyncType,
};
use portable_sync::sync::{checkpoint, config, listing, logging, proxy, records};

use crate::{ensure, Check};

const MODEL: &str = "Item";

struct Component;

/// A case: its name and its check.
type Case = (&'static str, fn() -> Check);

const CASES: &[Case] = &[
    ("records.save-new-is-added", records_save_new),
    ("records.save-identical-is-unchanged", records_save_identical),
    ("records.key-order-and-whitespace-do-not-count", records_key_order),
    ("records.save-changed-is-updated", records_save_changed),
    ("records.delete-is-soft-and-idempotent", records_delete),
    ("records.delete-unknown-does-nothing", records_delete_unknown),
    ("records.save-deleted-comes-back", records_save_deleted),
    ("records.empty-batches-do-nothing", records_empty),
    ("records.undeclared-model-is-refused", records_undeclared),
    ("records.invalid-json-is-refused-naming-the-index", records_invalid_json),
    ("records.non-object-is-refused", records_non_object),
    ("records.missing-or-non-string-id-is-refused", records_bad_ids),
    ("records.duplicate-ids-refuse-the-whole-batch", records_duplicates),
    ("records.delete-refuses-empty-and-duplicate-ids", records_delete_bad_ids),
    ("listing.begin-and-current", listing_begin_current),
    ("listing.end-deletes-only-unseen-live-records", listing_end),
    ("listing.end-of-another-listing-is-refused-and-deletes-nothing", listing_wrong_id),
    ("listing.second-begin-supersedes-the-first", listing_supersede),
    ("listing.keep-counts-as-seen", listing_keep),
    ("listing.abandon-deletes-nothing", listing_abandon),
    ("listing.undeclared-model-is-refused", listing_undeclared),
    ("checkpoint.none-on-a-fresh-connection", checkpoint_fresh),
    ("checkpoint.save-replaces-and-reads-back", checkpoint_replace),
    ("config.missing-key-is-none", config_keys),
    ("proxy.get-answers-with-one-attempt", proxy_get),
    ("proxy.retries-are-counted-in-attempts", proxy_retry),
    ("proxy.no-retry-returns-the-503", proxy_no_retry),
    ("proxy.absolute-and-escaping-paths-are-refused", proxy_paths),
    ("proxy.host-owned-and-smuggling-headers-are-refused", proxy_headers),
    ("logging.every-level-is-accepted", logging_levels),
];

impl Guest for Component {
    fn describe() -> Metadata {
        Metadata {
            name: "conformance".into(),
            description: "Checks a host against the edge cases of the portable-sync WIT.".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            scopes: Vec::new(),
            frequency: "every day".into(),
            sync_type: SyncType::Full,
            endpoints: vec![Endpoint { method: "GET".into(), path: "/items".into(), model: MODEL.into() }],
            models: vec![Model {
                name: MODEL.into(),
                json_schema: r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}"#.into(),
            }],
            configuration: vec![ConfigKey {
                name: "realmId".into(),
                description: "Where the provider's test endpoint is.".into(),
                required: true,
            }],
            limits: ProviderLimits { requests_per_minute: 0, max_concurrent: 0, throttle_wait_secs: 1 },
        }
    }

    fn run() -> Result<Summary, RunError> {
        let mut failed = Vec::new();
        for (name, case) in CASES {
            match case() {
                Ok(()) => logging::log(logging::Level::Info, &format!("case {name}: ok")),
                Err(why) => {
                    logging::log(logging::Level::Error, &format!("case {name}: FAILED: {why}"));
                    failed.push(format!("{name} ({why})"));
                }
            }
        }
        if failed.is_empty() {
            Ok(Summary { pages: 0, requests: 4, retries: 1, saved: 0, deleted: 0 })
        } else {
            Err(RunError::InvalidResponse(format!(
                "{} of {} conformance cases failed: {}",
                failed.len(),
                CASES.len(),
                failed.join("; ")
            )))
        }
    }
}

// --- helpers -------------------------------------------------------------

fn outcome(added: u32, updated: u32, unchanged: u32, deleted: u32) -> records::BatchOutcome {
    records::BatchOutcome { added, updated, unchanged, deleted }
}

fn same(a: &records::BatchOutcome, b: &records::BatchOutcome) -> bool {
    (a.added, a.updated, a.unchanged, a.deleted) == (b.added, b.updated, b.unchanged, b.deleted)
}

fn save(records: &[&str]) -> Result<records::BatchOutcome, records::Error> {
    records::batch_save(MODEL, &records.iter().map(|r| r.to_string()).collect::<Vec<_>>())
}

fn delete(ids: &[&str]) -> Result<records::BatchOutcome, records::Error> {
    records::batch_delete(MODEL, &ids.iter().map(|r| r.to_string()).collect::<Vec<_>>())
}

fn expect_outcome(got: Result<records::BatchOutcome, records::Error>, want: records::BatchOutcome) -> Check {
    match got {
        Ok(got) if same(&got, &want) => Ok(()),
        Ok(got) => Err(format!("expected {want:?}, got {got:?}")),
        Err(error) => Err(format!("expected {want:?}, got the error {error:?}")),
    }
}

fn expect_error(
    got: Result<impl std::fmt::Debug, records::Error>,
    want: fn(&records::Error) -> bool,
    what: &str,
) -> Check {
    match got {
        Err(error) if want(&error) => Ok(()),
        other => Err(format!("expected {what}, got {other:?}")),
    }
}

// --- records -------------------------------------------------------------

fn records_save_new() -> Check {
    expect_outcome(save(&[r#"{"id":"a","n":1}"#, r#"{"id":"b","n":2}"#]), outcome(2, 0, 0, 0))
}

fn records_save_identical() -> Check {
    expect_outcome(save(&[r#"{"id":"a","n":1}"#]), outcome(0, 0, 1, 0))
}

fn records_key_order() -> Check {
    expect_outcome(save(&[" { \"n\" : 1 , \"id\" : \"a\" } "]), outcome(0, 0, 1, 0))
}

fn records_save_changed() -> Check {
    expect_outcome(save(&[r#"{"id":"a","n":10}"#]), outcome(0, 1, 0, 0))
}

fn records_delete() -> Check {
    expect_outcome(delete(&["b"]), outcome(0, 0, 0, 1))?;
    expect_outcome(delete(&["b"]), outcome(0, 0, 0, 0))
}

fn records_delete_unknown() -> Check {
    expect_outcome(delete(&["no-such-id"]), outcome(0, 0, 0, 0))
}

fn records_save_deleted() -> Check {
    expect_outcome(save(&[r#"{"id":"b","n":2}"#]), outcome(0, 1, 0, 0))
}

fn records_empty() -> Check {
    expect_outcome(save(&[]), outcome(0, 0, 0, 0))?;
    expect_outcome(delete(&[]), outcome(0, 0, 0, 0))
}

fn records_undeclared() -> Check {
    let got = records::batch_save("Undeclared", &[r#"{"id":"x"}"#.to_string()]);
    expect_error(got, |e| matches!(e, records::Error::UndeclaredModel(_)), "undeclared-model")?;
    let got = records::batch_delete("Undeclared", &["x".to_string()]);
    expect_error(got, |e| matches!(e, records::Error::UndeclaredModel(_)), "undeclared-model")
}

fn records_invalid_json() -> Check {
    match save(&[r#"{"id":"ok"}"#, "{not json"]) {
        Err(records::Error::InvalidJson(message)) => {
            ensure(message.contains('1'), || format!("the message names index 1: {message}"))
        }
        other => Err(format!("expected invalid-json, got {other:?}")),
    }
}

fn records_non_object() -> Check {
    for text in ["[1,2]", "\"id\"", "null", "42"] {
        expect_error(
            save(&[text]),
            |e| matches!(e, records::Error::InvalidJson(_)),
            &format!("invalid-json for {text}"),
        )?;
    }
    Ok(())
}

fn records_bad_ids() -> Check {
    for text in [r#"{"name":"no id"}"#, r#"{"id":7}"#, r#"{"id":""}"#, r#"{"id":null}"#, r#"{"id":["a"]}"#] {
        expect_error(save(&[text]), |e| matches!(e, records::Error::InvalidId(_)), &format!("invalid-id for {text}"))?;
    }
    Ok(())
}

fn records_duplicates() -> Check {
    expect_error(
        save(&[r#"{"id":"fresh"}"#, r#"{"id":"dup"}"#, r#"{"id":"dup"}"#]),
        |e| matches!(e, records::Error::DuplicateId(m) if m.contains("dup")),
        "duplicate-id naming `dup`",
    )?;
    // Nothing of the refused batch was stored.
    expect_outcome(save(&[r#"{"id":"fresh"}"#]), outcome(1, 0, 0, 0))
}

fn records_delete_bad_ids() -> Check {
    expect_error(delete(&["a", ""]), |e| matches!(e, records::Error::InvalidId(_)), "invalid-id")?;
    expect_error(delete(&["a", "a"]), |e| matches!(e, records::Error::DuplicateId(_)), "duplicate-id")?;
    // Nothing was deleted by the refused batches.
    expect_outcome(save(&[r#"{"id":"a","n":10}"#]), outcome(0, 0, 1, 0))
}

// --- listing ---------------------------------------------------------------
// The store now holds a, b, fresh (live).

fn listing_begin_current() -> Check {
    let listing = listing::begin(MODEL).map_err(|e| format!("begin: {e:?}"))?;
    let current = listing::current(MODEL).map_err(|e| format!("current: {e:?}"))?;
    ensure(current == Some(listing), || format!("current is {current:?}, begun {listing}"))?;
    listing::abandon(MODEL, listing).map_err(|e| format!("abandon: {e:?}"))
}

fn listing_end() -> Check {
    expect_outcome(save(&[r#"{"id":"gone"}"#]), outcome(1, 0, 0, 0))?;
    let listing = listing::begin(MODEL).map_err(|e| format!("begin: {e:?}"))?;
    // a unchanged, b changed, new added: all seen; fresh and gone not.
    expect_outcome(save(&[r#"{"id":"a","n":10}"#, r#"{"id":"b","n":3}"#, r#"{"id":"new"}"#]), outcome(1, 1, 1, 0))?;
    expect_outcome(listing::end(MODEL, listing), outcome(0, 0, 0, 2))?;
    // fresh and gone are deleted, so deleting them again does nothing; a stays.
    expect_outcome(delete(&["fresh", "gone"]), outcome(0, 0, 0, 0))?;
    expect_outcome(save(&[r#"{"id":"a","n":10}"#]), outcome(0, 0, 1, 0))?;
    let current = listing::current(MODEL).map_err(|e| format!("current: {e:?}"))?;
    ensure(current.is_none(), || format!("the listing is closed, current is {current:?}"))
}

fn listing_wrong_id() -> Check {
    let listing = listing::begin(MODEL).map_err(|e| format!("begin: {e:?}"))?;
    expect_error(listing::end(MODEL, listing + 1), |e| matches!(e, records::Error::NoListing(_)), "no-listing")?;
    expect_error(
        listing::keep(MODEL, listing + 1, &["a".to_string()]),
        |e| matches!(e, records::Error::NoListing(_)),
        "no-listing",
    )?;
    listing::abandon(MODEL, listing).map_err(|e| format!("abandon: {e:?}"))?;
    // Nothing was deleted: a, b and new are live (saving them changes nothing).
    expect_outcome(save(&[r#"{"id":"a","n":10}"#, r#"{"id":"b","n":3}"#, r#"{"id":"new"}"#]), outcome(0, 0, 3, 0))
}

fn listing_supersede() -> Check {
    let first = listing::begin(MODEL).map_err(|e| format!("begin: {e:?}"))?;
    expect_outcome(save(&[r#"{"id":"a","n":10}"#, r#"{"id":"b","n":3}"#, r#"{"id":"new"}"#]), outcome(0, 0, 3, 0))?;
    let second = listing::begin(MODEL).map_err(|e| format!("begin: {e:?}"))?;
    ensure(second > first, || format!("listing ids increase: {first} then {second}"))?;
    expect_error(
        listing::end(MODEL, first),
        |e| matches!(e, records::Error::NoListing(_)),
        "no-listing for the superseded one",
    )?;
    // What the first saw does not count for the second: ending it deletes all three.
    expect_outcome(save(&[r#"{"id":"a","n":10}"#]), outcome(0, 0, 1, 0))?;
    expect_outcome(listing::end(MODEL, second), outcome(0, 0, 0, 2))?;
    expect_outcome(save(&[r#"{"id":"b","n":3}"#, r#"{"id":"new"}"#]), outcome(0, 2, 0, 0))
}

fn listing_keep() -> Check {
    let listing = listing::begin(MODEL).map_err(|e| format!("begin: {e:?}"))?;
    listing::keep(MODEL, listing, &["a".to_string(), "b".to_string(), "unknown".to_string()])
        .map_err(|e| format!("keep: {e:?}"))?;
    expect_outcome(listing::end(MODEL, listing), outcome(0, 0, 0, 1))?;
    expect_outcome(delete(&["a", "b", "new"]), outcome(0, 0, 0, 2))
}

fn listing_abandon() -> Check {
    expect_outcome(save(&[r#"{"id":"a","n":10}"#]), outcome(0, 1, 0, 0))?;
    let listing = listing::begin(MODEL).map_err(|e| format!("begin: {e:?}"))?;
    listing::abandon(MODEL, listing).map_err(|e| format!("abandon: {e:?}"))?;
    listing::abandon(MODEL, listing).map_err(|e| format!("a second abandon does nothing: {e:?}"))?;
    expect_error(listing::end(MODEL, listing), |e| matches!(e, records::Error::NoListing(_)), "no-listing")?;
    expect_outcome(save(&[r#"{"id":"a","n":10}"#]), outcome(0, 0, 1, 0))
}

fn listing_undeclared() -> Check {
    expect_error(listing::begin("Undeclared"), |e| matches!(e, records::Error::UndeclaredModel(_)), "undeclared-model")
}

// --- checkpoint, config ----------------------------------------------------

fn checkpoint_fresh() -> Check {
    match checkpoint::get() {
        Ok(None) => Ok(()),
        other => Err(format!("expected none, got {other:?}")),
    }
}

fn checkpoint_replace() -> Check {
    for value in ["one", "", "{\"json\": [1, 2]} ünïcödé"] {
        checkpoint::save(value).map_err(|e| format!("save: {e:?}"))?;
        match checkpoint::get() {
            Ok(Some(got)) if got == value => {}
            other => return Err(format!("saved {value:?}, got {other:?}")),
        }
    }
    Ok(())
}

fn config_keys() -> Check {
    ensure(config::get("no-such-key").is_none(), || "a missing key is none".into())?;
    ensure(config::get("realmId").is_some_and(|r| !r.is_empty()), || "realmId is set".into())
}

// --- proxy -----------------------------------------------------------------

fn query(retry: bool, headers: Vec<(String, String)>) -> proxy::Request {
    let realm = config::get("realmId").unwrap_or_default();
    proxy::Request {
        method: proxy::Method::Get,
        path: format!("/v3/company/{realm}/query"),
        query: vec![("query".into(), "SELECT * FROM Customer MAXRESULTS 1".into())],
        headers: [vec![("Accept".to_string(), "application/json".to_string())], headers].concat(),
        body: None,
        retry,
    }
}

fn expect_response(request: proxy::Request, status: u16, attempts: u32) -> Check {
    match proxy::send(&request) {
        Ok(response) => {
            ensure(response.status == status && response.attempts == attempts, || {
                format!(
                    "expected status {status} after {attempts} attempts, got {} after {}",
                    response.status, response.attempts
                )
            })?;
            ensure(response.headers.iter().all(|(name, _)| *name == name.to_ascii_lowercase()), || {
                "header names are lower case".into()
            })
        }
        Err(error) => Err(format!("expected a response, got {error:?}")),
    }
}

/// Request 1 of the provider.
fn proxy_get() -> Check {
    expect_response(query(true, Vec::new()), 200, 1)
}

/// Requests 2 (503) and 3.
fn proxy_retry() -> Check {
    expect_response(query(true, Vec::new()), 200, 2)
}

/// Request 4 (503).
fn proxy_no_retry() -> Check {
    expect_response(query(false, Vec::new()), 503, 1)
}

fn proxy_paths() -> Check {
    for path in [
        "https://evil.example/v3",
        "v3/relative",
        "//evil.example/x",
        "/v3/../../admin",
        "/v3/./x",
        "/v3/%2e%2e/admin",
        "/v3/%2F/x",
        "/v3\\..\\x",
        "/v3/q?x=1",
        "/v3#fragment",
        "/v3/a b",
        "/v3/\u{0}",
    ] {
        let mut request = query(true, Vec::new());
        request.path = path.into();
        match proxy::send(&request) {
            Err(proxy::Error::InvalidPath(_)) => {}
            other => return Err(format!("{path:?}: expected invalid-path, got {other:?}")),
        }
    }
    Ok(())
}

fn proxy_headers() -> Check {
    for (name, value) in [
        ("Authorization", "Bearer stolen"),
        ("proxy-authorization", "x"),
        ("HOST", "evil.example"),
        ("Cookie", "a=b"),
        // wasi-http's default forbidden headers: hop-by-hop, the connection's.
        ("Connection", "close"),
        ("keep-alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authenticate", "Basic"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ("X-Smuggle", "1\r\nAuthorization: Bearer x"),
        ("X-Smuggle", "1\nx"),
        ("X-Smuggle\r\nAuthorization", "x"),
        ("X-Nul", "a\u{0}b"),
        ("X-Bell", "a\u{7}b"),
        ("X Space", "x"),
        ("X:Colon", "x"),
        ("", "x"),
    ] {
        match proxy::send(&query(true, vec![(name.into(), value.into())])) {
            Err(proxy::Error::ForbiddenHeader(_)) => {}
            other => return Err(format!("{name:?}: {value:?}: expected forbidden-header, got {other:?}")),
        }
    }
    Ok(())
}

fn logging_levels() -> Check {
    for level in [
        logging::Level::Trace,
        logging::Level::Debug,
        logging::Level::Info,
        logging::Level::Warn,
        logging::Level::Error,
    ] {
        logging::log(level, &format!("conformance log at {level:?} (not a failure)"));
    }
    logging::log(logging::Level::Info, &"a very long message ".repeat(1000));
    Ok(())
}

export!(Component);
