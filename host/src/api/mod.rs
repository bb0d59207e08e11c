//! The HTTP API over the host's database: every endpoint a component declares
//! in `describe()` (`GET /customers` for the customers sync) serves the synced
//! records with Nango-style change metadata, keyset-paginated
//! (docs/api.md); its OpenAPI document is made from the routes
//! (`openapi`).

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod control;
mod nango;
mod openapi;
pub mod server;
mod ui;
mod webhooks;

use crate::runtime::Endpoint;
use crate::store::{LastAction, ListQuery, Position, Scope, Store, StoredRecord};
use crate::time::format_us;

/// Default and largest page size.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;
/// The connection used when a request names none.
pub const DEFAULT_CONNECTION: &str = "default";

/// A request error: `{"error": {"code", "message"}}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ErrorDetail {
    /// What went wrong, for programs: `invalid_limit`, `unknown_connection`, …
    code: &'static str,
    /// What went wrong, for people, naming the parameter or cause.
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody { error: ErrorDetail { code: self.code, message: self.message } });
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid header"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, STORE_RETRY_AFTER_SECS.into());
        }
        response
    }
}

/// Every error answer is an [`ErrorBody`]: the document's `Error` response.
impl<'r> utoipa::ToResponse<'r> for ApiError {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::response::Response>) {
        let body = utoipa::openapi::Ref::from_schema_name(ErrorBody::name());
        let content = utoipa::openapi::ContentBuilder::new().schema(Some(body)).build();
        let response = utoipa::openapi::ResponseBuilder::new()
            .description("A request error naming the parameter or cause.")
            .content("application/json", content)
            .build();
        ("Error", response.into())
    }
}

/// Parsed, validated query parameters of a list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub modified_after_us: Option<i64>,
    pub limit: u32,
    pub after: Option<Position>,
    pub actions: Vec<LastAction>,
    /// Only these records (`ids`, repeated); empty: all.
    pub ids: Vec<String>,
}

/// At most this many `ids` in a request, each at most [`MAX_ID_LENGTH`]
/// characters (Nango's limits).
pub const MAX_IDS: usize = 100;
pub const MAX_ID_LENGTH: usize = 256;

/// Parses `modified_after`, `limit`, `cursor`, `filter` and `ids` (the one
/// that may be repeated); anything else, or another parameter given twice, is
/// refused.
pub fn parse_params(pairs: &[(String, String)]) -> Result<ListParams, ApiError> {
    let mut params =
        ListParams { modified_after_us: None, limit: DEFAULT_LIMIT, after: None, actions: Vec::new(), ids: Vec::new() };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        if name == "ids" {
            if value.is_empty() || value.chars().count() > MAX_ID_LENGTH {
                return Err(ApiError::bad_request(
                    "invalid_ids",
                    format!("each of `ids` must have 1 to {MAX_ID_LENGTH} characters, got `{}`", shorten(value)),
                ));
            }
            if !params.ids.contains(value) {
                params.ids.push(value.clone());
            }
            if params.ids.len() > MAX_IDS {
                return Err(ApiError::bad_request("invalid_ids", format!("at most {MAX_IDS} `ids` in one request")));
            }
            continue;
        }
        if seen.contains(&name.as_str()) {
            return Err(ApiError::bad_request("duplicate_parameter", format!("`{name}` is given more than once")));
        }
        seen.push(name);
        match name.as_str() {
            "limit" => {
                params.limit = value.parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_limit",
                        format!("`limit` must be an integer from 1 to {MAX_LIMIT}, got `{}`", shorten(value)),
                    )
                })?;
            }
            "modified_after" => {
                let instant = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| {
                    ApiError::bad_request(
                        "invalid_modified_after",
                        format!(
                            "`modified_after` must be an RFC 3339 timestamp such as 2026-05-05T10:08:49Z, got `{}`",
                            shorten(value)
                        ),
                    )
                })?;
                params.modified_after_us = Some(instant.timestamp_micros());
            }
            "cursor" => params.after = Some(decode_cursor(value)?),
            "filter" => params.actions = parse_filter(value)?,
            _ => {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("unknown parameter `{}`; known: modified_after, limit, cursor, filter, ids", shorten(name)),
                ))
            }
        }
    }
    Ok(params)
}

fn parse_filter(value: &str) -> Result<Vec<LastAction>, ApiError> {
    let mut actions = Vec::new();
    for part in value.split(',') {
        let action = match part.trim().to_ascii_lowercase().as_str() {
            "added" => LastAction::Added,
            "updated" => LastAction::Updated,
            "deleted" => LastAction::Deleted,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_filter",
                    format!(
                        "`filter` must be added, updated, deleted or a comma-separated combination, got `{}`",
                        shorten(value)
                    ),
                ))
            }
        };
        if !actions.contains(&action) {
            actions.push(action);
        }
    }
    Ok(actions)
}

/// Encodes a position as an opaque cursor.
pub fn encode_cursor(position: &Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("1|{}|{}", position.last_modified_us, position.id))
}

/// Decodes a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<Position, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!("`cursor` `{}` is not a cursor this API returned", shorten(cursor)),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim_end_matches('=')).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '|');
    let (Some("1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let last_modified_us = micros.parse::<i64>().map_err(|_| invalid())?;
    if id.is_empty() || micros.starts_with('+') {
        return Err(invalid());
    }
    Ok(Position { last_modified_us, id: id.to_owned() })
}

pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// What the control API needs beyond the database.
#[derive(Clone, Default)]
pub struct Control {
    /// Wakes the scheduler when a run is asked for (none without `--schedule`).
    pub waker: Option<Arc<tokio::sync::Notify>>,
    /// How often a connection without its own interval runs.
    pub component_interval: Option<std::time::Duration>,
    /// Verifies providers' change notifications (besides connections' own tokens).
    pub verifier_token: Option<String>,
    /// The name of the component's sync, as Nango's routes name it.
    pub sync_name: String,
    /// The failed runs the store refused to hold, shown in place of the
    /// stored status until it takes them (none without `--schedule`).
    pub unrecorded: Option<Arc<crate::runs::Unrecorded>>,
}

/// Shared state of the API server.
#[derive(Clone)]
pub struct ApiState {
    db: Store,
    /// SHA-256 of the API key, compared in constant time.
    api_key_hash: Option<[u8; 32]>,
    /// The endpoints of the components served, from their `describe`.
    endpoints: Arc<Vec<Endpoint>>,
    control: Control,
    /// The OpenAPI document of what the router serves, made with it.
    openapi: axum::body::Bytes,
}

impl ApiState {
    /// Serves the records in `db` at `endpoints`; with `api_key`, requests
    /// need `Authorization: Bearer <key>`.
    pub fn new(db: Store, api_key: Option<String>, endpoints: Vec<Endpoint>) -> Self {
        ApiState {
            db,
            api_key_hash: api_key.filter(|k| !k.is_empty()).map(|k| Sha256::digest(k.as_bytes()).into()),
            endpoints: Arc::new(endpoints),
            control: Control::default(),
            openapi: axum::body::Bytes::new(),
        }
    }

    /// With the control API's scheduler hooks.
    pub fn with_control(mut self, control: Control) -> Self {
        self.control = control;
        self
    }

    pub fn database(&self) -> &Store {
        &self.db
    }

    /// Checks `Authorization: Bearer <key>` when a key is configured (the
    /// scheme's name in any case, as HTTP has it), in constant time.
    pub(super) fn check_key(&self, headers: &HeaderMap) -> Result<(), KeyRefusal> {
        let Some(expected) = &self.api_key_hash else { return Ok(()) };
        let given = headers.get(header::AUTHORIZATION).ok_or(KeyRefusal::Missing)?;
        let key = given
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty())
            .map(|(_, key)| key.trim())
            .ok_or(KeyRefusal::Malformed)?;
        if bool::from(Sha256::digest(key.as_bytes()).as_slice().ct_eq(expected)) {
            Ok(())
        } else {
            Err(KeyRefusal::Wrong)
        }
    }

    /// [`ApiState::check_key`], answered as this API answers it.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.check_key(headers).map_err(|_| ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "this server requires `Authorization: Bearer <api key>`".into(),
        })
    }
}

/// Why a request's key was refused (Nango's routes name each case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyRefusal {
    Missing,
    Malformed,
    Wrong,
}

/// A request's body, taken by the handler as `Result` so that it is looked
/// at only once the caller is authorised, and a body the server refuses
/// (over its 2 MiB limit, or cut short) is answered in JSON like every other
/// error.
pub fn request_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
        ApiError { status, code, message: rejection.body_text() }
    })
}

/// How long a client is told to wait (`Retry-After`) when the store is away.
pub const STORE_RETRY_AFTER_SECS: u32 = 5;

/// A store failure as the caller sees it: the database unreachable, busy,
/// full or read-only is 503 `store_unavailable` with `Retry-After` and the
/// cause (which names no secret: the store's texts never hold a password);
/// anything else is [`internal`]. Logged either way.
pub fn store_failed(error: crate::store::StoreError) -> ApiError {
    if !error.is_transient() {
        return internal(error);
    }
    crate::metrics::store_error(&error);
    tracing::warn!(target: "api", "{error}");
    ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "store_unavailable", message: error.to_string() }
}

/// A failure of the host's own, logged; the caller learns only that it happened.
pub fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(target: "api", "{error}");
    ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message: "the records store failed".into() }
}

/// The router: every declared endpoint, `/openapi.json`, JSON 404 and 405.
pub fn router(state: ApiState) -> Router {
    routes(state).0
}

/// The OpenAPI document [`router`] serves at `/openapi.json` for `state`.
pub fn openapi_document(state: ApiState) -> serde_json::Value {
    routes(state).1
}

/// The router and its OpenAPI document, made together: each route is
/// registered with its operation.
fn routes(mut state: ApiState) -> (Router, serde_json::Value) {
    // Everything but the OpenAPI document and providers' notifications
    // (their signature authenticates them) is behind the API key, checked
    // once, before a handler looks at the request (its body included).
    let mut protected = OpenApiRouter::default();
    for endpoint in openapi::served(&state.endpoints) {
        let model = endpoint.model.clone();
        let handler =
            get(move |state: State<ApiState>, headers: HeaderMap, query: RawQuery| list(state, headers, query, model));
        protected = protected.routes(openapi::records(endpoint, handler));
    }
    let (protected, mut protected_doc) = protected.merge(control::routes()).routes(routes!(metrics)).split_for_parts();
    // Nango's routes check the key themselves, with Nango's error codes.
    let (nango, nango_doc) = nango::routes(&state).split_for_parts();
    protected_doc.merge(nango_doc);
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(state.clone(), require_api_key));
    let mut public = OpenApiRouter::default();
    for &provider in crate::providers::all() {
        let handler = axum::routing::post(
            move |state: State<ApiState>,
                  headers: HeaderMap,
                  body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>| {
                webhooks::notification(state, provider, headers, body)
            },
        );
        public = public.routes(openapi::notifications(provider, handler));
    }
    let (public, public_doc) = public.routes(routes!(openapi)).split_for_parts();
    let document = openapi::document(protected_doc, public_doc, &state);
    state.openapi = document.to_string().into();
    // The dashboard's page and assets (docs/ui.md): no data, so not behind the key.
    let router = public.merge(protected).merge(nango).merge(ui::routes(&state.endpoints));
    let router = router
        .fallback(|| async {
            ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: "no such endpoint".into() }
        })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "this method is not supported here".into(),
            }
        })
        .with_state(state);
    (router, document)
}

/// Refuses a request without the server's API key (when it has one).
async fn require_api_key(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    state.authorize(request.headers())?;
    Ok(next.run(request).await)
}

/// Prometheus metrics of this process (text format).
// docs/webhooks.md, "Metrics"; behind the API key.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", responses(
    (status = 200, description = "The text exposition format.", body = String, content_type = "text/plain"),
))]
async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let db = state.db.clone();
    let by_status = tokio::task::spawn_blocking(move || {
        let counts = match db.connections.count_by_status() {
            Ok(counts) => counts,
            // The process's counters still answer; `sync_store_up` says the rest.
            Err(error) if error.is_transient() => {
                crate::metrics::store_error(&error);
                tracing::warn!(target: "api", "metrics without the connections gauge: {error}");
                return Ok(None);
            }
            Err(error) => return Err(internal(error)),
        };
        Ok::<_, ApiError>(Some(counts))
    })
    .await
    .map_err(internal)??;
    let text = crate::metrics::render(by_status.as_deref());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "getOpenApi", responses(
    (status = 200, description = "The OpenAPI 3.1 document of what this server serves.",
        body = serde_json::Value, content_type = "application/json"),
))]
async fn openapi(State(state): State<ApiState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi)
}

/// A record's change tracking, after its own fields.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NangoMetadata {
    #[schema(format = DateTime)]
    first_seen_at: String,
    #[schema(format = DateTime)]
    last_modified_at: String,
    #[schema(inline)]
    last_action: Action,
    #[schema(format = DateTime, required)]
    deleted_at: Option<String>,
    /// Always null: the store never prunes a record's payload (Nango's does).
    #[schema(format = DateTime, required)]
    pruned_at: Option<String>,
    cursor: String,
}

/// What last happened to the record.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
enum Action {
    Added,
    Updated,
    Deleted,
}

impl From<LastAction> for Action {
    fn from(action: LastAction) -> Self {
        match action {
            LastAction::Added => Action::Added,
            LastAction::Updated => Action::Updated,
            LastAction::Deleted => Action::Deleted,
        }
    }
}

#[derive(Serialize)]
struct ListResponse {
    records: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    model: String,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let params = parse_params(&pairs)?;
    let named = headers.contains_key("connection-id");
    let connection = match headers.get("connection-id") {
        None => DEFAULT_CONNECTION.to_owned(),
        Some(value) => {
            value.to_str().ok().filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_owned()).ok_or_else(|| {
                ApiError::bad_request("invalid_connection_id", "`Connection-Id` must be a non-empty text")
            })?
        }
    };
    // The store is blocking; keep it off the async workers.
    let response = tokio::task::spawn_blocking(move || {
        let store = &state.db.records;
        {
            if !store.connection_exists(&connection).map_err(store_failed)? {
                let message = if named {
                    format!("`Connection-Id` `{}` has never been synced", shorten(&connection))
                } else {
                    format!(
                        "no `Connection-Id` header: send `Connection-Id: <connection id>` \
                         (without it, the connection `{DEFAULT_CONNECTION}` of `sync-host run` is read, and it was never synced)"
                    )
                };
                return Err(ApiError::bad_request("unknown_connection", message));
            }
            page(&state.db, Scope { connection, model }, params)
        }
    })
    .await
    .map_err(internal)??;
    Ok(Json(response).into_response())
}

/// A stored record as the API shows it: its own fields, in the order the
/// component wrote them, then `_nango_metadata`.
/// A page of records of `scope` as the records API answers it (blocking).
fn page(db: &Store, scope: Scope, params: ListParams) -> Result<ListResponse, ApiError> {
    let query = ListQuery {
        modified_after_us: params.modified_after_us,
        after: params.after,
        actions: params.actions,
        ids: params.ids,
        limit: params.limit,
    };
    let page = db.records.list(&scope, &query).map_err(store_failed)?;
    let next_cursor = match (page.has_more, page.records.last()) {
        (true, Some(last)) => {
            Some(encode_cursor(&Position { last_modified_us: last.last_modified_us, id: last.id.clone() }))
        }
        _ => None,
    };
    let records = page.records.iter().map(render).collect::<Result<Vec<_>, _>>()?;
    Ok(ListResponse { records, next_cursor })
}

fn render(record: &StoredRecord) -> Result<Box<RawValue>, ApiError> {
    let cursor = encode_cursor(&Position { last_modified_us: record.last_modified_us, id: record.id.clone() });
    let metadata = NangoMetadata {
        first_seen_at: format_us(record.first_seen_us),
        last_modified_at: format_us(record.last_modified_us),
        last_action: record.last_action.into(),
        deleted_at: record.deleted_us.map(format_us),
        pruned_at: None,
        cursor,
    };
    let metadata = serde_json::to_string(&metadata).map_err(internal)?;
    let body = record.json.trim_end();
    let Some(open) = body.strip_suffix('}') else {
        return Err(internal(format!("record {} is not a JSON object", record.id)));
    };
    let separator = if open.trim_end().ends_with('{') { "" } else { "," };
    RawValue::from_string(format!("{open}{separator}\"_nango_metadata\":{metadata}}}"))
        .map_err(|e| internal(format!("record {}: {e}", record.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Result<ListParams, ApiError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        parse_params(&pairs)
    }

    #[test]
    fn defaults_and_combinations() {
        assert_eq!(params("").unwrap().limit, 100);
        let p = params("limit=10000&filter=added,updated&modified_after=2026-05-05T10:08:49Z").unwrap();
        assert_eq!(p.limit, 10000);
        assert_eq!(p.actions, vec![LastAction::Added, LastAction::Updated]);
        assert_eq!(p.modified_after_us, Some(1_777_975_729_000_000));
    }

    #[test]
    fn bad_input_names_the_parameter() {
        for (query, code) in [
            ("limit=0", "invalid_limit"),
            ("limit=abc", "invalid_limit"),
            ("limit=10001", "invalid_limit"),
            ("limit=-1", "invalid_limit"),
            ("cursor=%%%", "invalid_cursor"),
            ("cursor=bm9wZQ", "invalid_cursor"),
            ("filter=bogus", "invalid_filter"),
            ("filter=added,", "invalid_filter"),
            ("modified_after=yesterday", "invalid_modified_after"),
            ("limt=5", "unknown_parameter"),
            ("limit=5&limit=6", "duplicate_parameter"),
        ] {
            let error = params(query).unwrap_err();
            assert_eq!(error.code, code, "{query}");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn cursors_round_trip() {
        let position = Position { last_modified_us: 1_777_975_729_123_456, id: "a|b".into() };
        assert_eq!(decode_cursor(&encode_cursor(&position)).unwrap(), position);
    }

    #[test]
    fn rendered_records_keep_their_fields_and_gain_metadata() {
        let record = StoredRecord {
            id: "1".into(),
            json: r#"{"id":"1","b":2,"a":1}"#.into(),
            first_seen_us: 1,
            last_modified_us: 2,
            last_action: LastAction::Added,
            deleted_us: None,
        };
        let text = render(&record).unwrap().get().to_owned();
        assert!(text.starts_with(r#"{"id":"1","b":2,"a":1,"_nango_metadata":{"#), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["_nango_metadata"]["last_action"], "ADDED");
        assert_eq!(value["_nango_metadata"]["deleted_at"], serde_json::Value::Null);
        assert_eq!(value["_nango_metadata"]["last_modified_at"], "1970-01-01T00:00:00.000002Z");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn pair(name: &str, value: String) -> Vec<(String, String)> {
            vec![(name.to_owned(), value)]
        }

        proptest! {
            #[test]
            fn arbitrary_parameters_never_panic(pairs in proptest::collection::vec((".{0,12}", ".{0,40}"), 0..6)) {
                if let Err(error) = parse_params(&pairs) {
                    prop_assert_eq!(error.status, StatusCode::BAD_REQUEST);
                }
            }

            #[test]
            fn a_limit_is_accepted_exactly_from_1_to_10000(limit in any::<i64>()) {
                let parsed = parse_params(&pair("limit", limit.to_string()));
                prop_assert_eq!(parsed.is_ok(), (1..=10_000).contains(&limit));
            }

            #[test]
            fn cursors_round_trip(micros in any::<i64>(), id in "\\PC{1,40}") {
                let position = Position { last_modified_us: micros, id };
                let parsed = parse_params(&pair("cursor", encode_cursor(&position))).unwrap();
                prop_assert_eq!(parsed.after, Some(position));
            }

            #[test]
            fn any_cursor_text_decodes_or_is_an_invalid_cursor(text in ".{0,80}") {
                match decode_cursor(&text) {
                    Ok(position) => prop_assert_eq!(decode_cursor(&encode_cursor(&position)).unwrap(), position),
                    Err(error) => prop_assert_eq!(error.code, "invalid_cursor"),
                }
            }

            #[test]
            fn filters_are_sets_of_actions(parts in proptest::collection::vec(prop_oneof!["added", "updated", "deleted", "ADDED"], 1..6)) {
                let parsed = parse_params(&pair("filter", parts.join(","))).unwrap();
                let mut expected: Vec<String> = parts.iter().map(|p| p.to_ascii_uppercase()).collect();
                expected.sort();
                expected.dedup();
                let mut got: Vec<String> = parsed.actions.iter().map(|a| a.as_str().to_owned()).collect();
                got.sort();
                prop_assert_eq!(got, expected);
            }
        }
    }
}
