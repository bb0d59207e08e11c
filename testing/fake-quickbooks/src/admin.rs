//! The `/_fake` admin API, for users that can only reach the fake over HTTP (the
//! Node.js test). No auth; requests here are neither logged nor hooked.
//!
//! | method & path | effect | answer |
//! |---|---|---|
//! | `GET /_fake/customers` | | every customer (active or not), by Id |
//! | `GET /_fake/customers/{id}` | | the customer, or 404 |
//! | `POST /_fake/customers` | insert the JSON body (see [`FakeQbo::insert`]) | the stored customer |
//! | `POST /_fake/customers/{id}` | merge the body's top-level fields in, as an update | the updated customer |
//! | `POST /_fake/customers/{id}/archive` | `Active = false` (an update) | the customer |
//! | `POST /_fake/customers/{id}/reactivate` | `Active = true` (an update) | the customer |
//! | `DELETE /_fake/customers/{id}` | delete outright (CDC tombstone) | `{"deleted": id}` |
//! | `GET /_fake/clock` | | `{"now": ...}` |
//! | `POST /_fake/clock/advance?seconds=N` | advance the clock (N may be negative) | `{"now": ...}` |
//! | `POST /_fake/clock/set?now=<RFC 3339>` | set the clock | `{"now": ...}` |
//! | `GET /_fake/requests` | | the request log ([`crate::RequestRecord`]s) |
//! | `DELETE /_fake/requests` | reset the log and numbering | |
//! | `POST /_fake/seed/recorded` | insert the 33 recorded customers | their Ids |
//! | `POST /_fake/seed/generated?n=N&seed=S&archived_fraction=F&shared=K` | generate N customers, the first K sharing the clock's now | their Ids |
//! | `POST /_fake/inject` | script an injected answer, body below | |
//! | `DELETE /_fake/inject` | remove hooks and scripted injections | |
//!
//! | `POST /_fake/quota?per_minute=N` | enforce QBO's quota (N requests in any 60 s; `0` lifts it) | |
//! | `POST /_fake/throttle?from_request=N&seconds=S` | answer as QBO throttles (429, XML, no `Retry-After`) for S seconds from request N | |
//! | `POST /_fake/notify?url=U&verifier=V&ids=1,2&operation=update&format=cloudevents` | send U a change notification signed with verifier token V (`operation`: create, update, delete, merge; `format`: cloudevents or legacy) | `{"status": <U's answer>}` |
//!
//! `/_fake/inject` body: `{"respond": "throttle" | "throttle_xml" | "unavailable" | "server_error" |
//! "truncated_json" | "fault", "kind": "query" | "cdc" | "other" (default: any),
//! "at_request": n (default: any), "times": 1, "retry_after": 1, "code": "4000",
//! "message": "...", "detail": "..."}`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::store::entity_timestamp;
use crate::{FakeQbo, GenerateOptions, Injected, RequestKind, Scripted};

pub(crate) fn routes() -> Router<FakeQbo> {
    Router::new()
        .route("/_fake/customers", get(list).post(create))
        .route("/_fake/customers/{id}", get(read).post(merge).delete(remove))
        .route("/_fake/customers/{id}/archive", post(archive))
        .route("/_fake/customers/{id}/reactivate", post(reactivate))
        .route("/_fake/clock", get(clock))
        .route("/_fake/clock/advance", post(advance))
        .route("/_fake/clock/set", post(set_clock))
        .route("/_fake/requests", get(requests).delete(reset_requests))
        .route("/_fake/seed/recorded", post(seed_recorded))
        .route("/_fake/seed/generated", post(seed_generated))
        .route("/_fake/inject", post(inject).delete(clear_injections))
        .route("/_fake/quota", post(set_quota))
        .route("/_fake/throttle", post(throttle_for))
        .route("/_fake/notify", post(notify))
}

type Params = Query<HashMap<String, String>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no customer {id}"))
}

/// The body as a JSON object, or the 400 answer to give instead.
fn json_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Box::new(error(StatusCode::BAD_REQUEST, "body must be a JSON object"))),
        Err(e) => Err(Box::new(error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))),
    }
}

fn found(customer: Option<Value>, id: &str) -> Response {
    match customer {
        Some(c) => Json(c).into_response(),
        None => not_found(id),
    }
}

async fn list(State(fake): State<FakeQbo>) -> Response {
    Json(fake.all_customers()).into_response()
}

async fn read(State(fake): State<FakeQbo>, Path(id): Path<String>) -> Response {
    found(fake.get(&id), &id)
}

async fn create(State(fake): State<FakeQbo>, body: Bytes) -> Response {
    match json_object(&body) {
        Ok(customer) => {
            let id = fake.insert(Value::Object(customer));
            found(fake.get(&id), &id)
        }
        Err(answer) => *answer,
    }
}

async fn merge(State(fake): State<FakeQbo>, Path(id): Path<String>, body: Bytes) -> Response {
    let fields = match json_object(&body) {
        Ok(fields) => fields,
        Err(answer) => return *answer,
    };
    let updated = fake.update(&id, |c| {
        for (k, v) in fields {
            // Id, SyncToken and MetaData are the server's to set.
            if !matches!(k.as_str(), "Id" | "SyncToken" | "MetaData") {
                c.insert(k, v);
            }
        }
    });
    found(updated, &id)
}

async fn archive(State(fake): State<FakeQbo>, Path(id): Path<String>) -> Response {
    found(fake.archive(&id), &id)
}

async fn reactivate(State(fake): State<FakeQbo>, Path(id): Path<String>) -> Response {
    found(fake.reactivate(&id), &id)
}

async fn remove(State(fake): State<FakeQbo>, Path(id): Path<String>) -> Response {
    if fake.delete_outright(&id) {
        Json(json!({"deleted": id})).into_response()
    } else {
        not_found(&id)
    }
}

fn now_json(fake: &FakeQbo) -> Response {
    Json(json!({"now": entity_timestamp(fake.now()), "time": crate::store::response_time(fake.now())})).into_response()
}

async fn clock(State(fake): State<FakeQbo>) -> Response {
    now_json(&fake)
}

async fn advance(State(fake): State<FakeQbo>, Query(params): Params) -> Response {
    match params.get("seconds").and_then(|s| s.parse::<i64>().ok()) {
        Some(secs) if secs.unsigned_abs() < 100 * 365 * 86_400 => {
            fake.advance(chrono::Duration::seconds(secs));
            now_json(&fake)
        }
        _ => error(StatusCode::BAD_REQUEST, "seconds=N (an integer) is required"),
    }
}

async fn set_clock(State(fake): State<FakeQbo>, Query(params): Params) -> Response {
    match params.get("now").and_then(|s| crate::parse_timestamp(s)) {
        Some(now) => {
            fake.set_now(now);
            now_json(&fake)
        }
        None => error(StatusCode::BAD_REQUEST, "now=<RFC 3339 timestamp> is required"),
    }
}

async fn requests(State(fake): State<FakeQbo>) -> Response {
    Json(fake.requests()).into_response()
}

async fn reset_requests(State(fake): State<FakeQbo>) -> Response {
    fake.reset_requests();
    StatusCode::NO_CONTENT.into_response()
}

async fn seed_recorded(State(fake): State<FakeQbo>) -> Response {
    Json(fake.seed_recorded()).into_response()
}

async fn seed_generated(State(fake): State<FakeQbo>, Query(params): Params) -> Response {
    let number = |key: &str| params.get(key).and_then(|v| v.parse::<u64>().ok());
    let Some(n) = number("n").filter(|n| *n <= 100_000) else {
        return error(StatusCode::BAD_REQUEST, "n=N (at most 100000) is required");
    };
    let mut opts = GenerateOptions::default();
    if let Some(seed) = number("seed") {
        opts.seed = seed;
    }
    if let Some(f) = params.get("archived_fraction").and_then(|v| v.parse::<f64>().ok()) {
        opts.archived_fraction = f;
    }
    if let Some(k) = number("shared") {
        opts.shared_timestamp = Some((k as usize, fake.now()));
    }
    Json(fake.seed_generated(n as usize, &opts)).into_response()
}

async fn inject(State(fake): State<FakeQbo>, body: Bytes) -> Response {
    let spec = match json_object(&body) {
        Ok(spec) => spec,
        Err(answer) => return *answer,
    };
    let text = |key: &str, default: &str| spec.get(key).and_then(Value::as_str).unwrap_or(default).to_owned();
    let injected = match text("respond", "").as_str() {
        "throttle" => Injected::throttle(spec.get("retry_after").and_then(Value::as_u64).unwrap_or(1)),
        "throttle_xml" => Injected::throttle_xml(),
        "unavailable" => Injected::unavailable(),
        "server_error" => Injected::server_error(),
        "truncated_json" => Injected::truncated_json(),
        "fault" => Injected::fault(
            &text("code", "4000"),
            &text("message", "Error parsing query"),
            &text("detail", "Injected fault"),
        ),
        other => return error(StatusCode::BAD_REQUEST, format!("unknown respond '{other}'")),
    };
    let kind = match spec.get("kind").and_then(Value::as_str) {
        None | Some("any") => None,
        Some("query") => Some(RequestKind::Query),
        Some("cdc") => Some(RequestKind::Cdc),
        Some("other") => Some(RequestKind::Other),
        Some(other) => return error(StatusCode::BAD_REQUEST, format!("unknown kind '{other}'")),
    };
    let at_request = spec.get("at_request").and_then(Value::as_u64).map(|n| n as usize);
    let times = spec.get("times").and_then(Value::as_u64).unwrap_or(1).clamp(1, u32::MAX as u64) as u32;
    fake.add_scripted(Scripted { kind, at_request, injected, remaining: times });
    StatusCode::NO_CONTENT.into_response()
}

async fn set_quota(State(fake): State<FakeQbo>, Query(params): Params) -> Response {
    match params.get("per_minute").map(|v| v.parse::<usize>()) {
        Some(Ok(0)) => fake.set_quota(None),
        Some(Ok(n)) => fake.set_quota(Some(n)),
        _ => return error(StatusCode::BAD_REQUEST, "per_minute must be a whole number"),
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn throttle_for(State(fake): State<FakeQbo>, Query(params): Params) -> Response {
    let number = |key: &str| params.get(key).and_then(|v| v.parse::<u64>().ok());
    let (Some(from_request), Some(seconds)) = (number("from_request"), number("seconds")) else {
        return error(StatusCode::BAD_REQUEST, "from_request and seconds must be whole numbers");
    };
    fake.throttle_for(from_request as usize, std::time::Duration::from_secs(seconds));
    StatusCode::NO_CONTENT.into_response()
}

async fn notify(State(fake): State<FakeQbo>, Query(params): Params) -> Response {
    use crate::notify::{NotificationFormat, Operation};
    let (Some(url), Some(verifier), Some(ids)) = (params.get("url"), params.get("verifier"), params.get("ids")) else {
        return error(StatusCode::BAD_REQUEST, "url, verifier and ids are required");
    };
    let operation = match params.get("operation").map(String::as_str).unwrap_or("update") {
        "create" => Operation::Create,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        "merge" => Operation::Merge,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown operation {other:?}: create, update, delete or merge"),
            )
        }
    };
    let format = match params.get("format").map(String::as_str).unwrap_or("cloudevents") {
        "cloudevents" => NotificationFormat::CloudEvents,
        "legacy" => NotificationFormat::Legacy,
        other => return error(StatusCode::BAD_REQUEST, format!("unknown format {other:?}: cloudevents or legacy")),
    };
    let ids: Vec<String> = ids.split(',').map(str::trim).filter(|id| !id.is_empty()).map(String::from).collect();
    if ids.is_empty() {
        return error(StatusCode::BAD_REQUEST, "ids must name at least one customer");
    }
    let (url, verifier) = (url.clone(), verifier.clone());
    // The notification is a blocking HTTP call; keep it off the server's threads.
    let sent = tokio::task::spawn_blocking(move || {
        let changes: Vec<(&str, Operation)> = ids.iter().map(|id| (id.as_str(), operation)).collect();
        fake.notify(&url, &verifier, format, &changes)
    })
    .await;
    match sent {
        Ok(Ok(status)) => Json(json!({"status": status})).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, format!("could not deliver the notification: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("notification task failed: {e}")),
    }
}

async fn clear_injections(State(fake): State<FakeQbo>) -> Response {
    fake.clear_hooks();
    StatusCode::NO_CONTENT.into_response()
}
