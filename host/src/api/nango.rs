//! Nango's routes, as Nango's SDK (`@nangohq/node`) calls them
//! (docs/nango.md): the records of a connection (`GET /records/`), and the
//! control of its sync (`POST /sync/trigger`, `/sync/pause`, `/sync/start`,
//! `GET /sync/status`). They run on the same store, runner, locks and history
//! as the records and control APIs: one mechanism, two vocabularies. Errors
//! are in Nango's shape and with Nango's codes.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use super::control::{blocking, json_body, not_found};
use super::{openapi, parse_params, shorten, store_failed, ApiError, ApiState, KeyRefusal, ListParams};
use crate::schedule;
use crate::store::{Connection, ConnectionStatus, ConnectionUpdate, Outcome, Scope};
use crate::time::every::format_every;
use crate::time::format_us;

/// The only variant of a sync this host runs.
const VARIANT: &str = "base";

/// An error in Nango's shape: `{"error": {"code", "message", "errors"?}}`.
#[derive(Debug)]
pub(super) struct NangoError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// What was wrong with each parameter or header: `{code, message, path}`.
    errors: Vec<Value>,
}

impl NangoError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        NangoError { status, code, message: message.into(), errors: Vec::new() }
    }

    fn invalid(code: &'static str, what: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let errors = vec![json!({"code": code, "message": message, "path": [what]})];
        NangoError { status: StatusCode::BAD_REQUEST, code: "invalid_query_params", message, errors }
    }
}

fn unknown_connection(message: String) -> ApiError {
    ApiError::bad_request("unknown_connection", message)
}

/// The records and control APIs' errors in Nango's vocabulary: a refused
/// parameter is `invalid_query_params` naming it, the rest keep their code.
impl From<ApiError> for NangoError {
    fn from(error: ApiError) -> Self {
        let parameter = match error.code {
            "invalid_limit" => Some("limit"),
            "invalid_cursor" => Some("cursor"),
            "invalid_filter" => Some("filter"),
            "invalid_modified_after" => Some("modified_after"),
            "invalid_ids" => Some("ids"),
            "unknown_parameter" | "duplicate_parameter" => Some(""),
            _ => None,
        };
        match parameter {
            Some(what) => NangoError::invalid(error.code, what, error.message),
            None => NangoError::new(error.status, error.code, error.message),
        }
    }
}

impl IntoResponse for NangoError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.errors.is_empty() {
            error["errors"] = Value::Array(self.errors);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let wait = super::STORE_RETRY_AFTER_SECS.into();
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, wait);
        }
        response
    }
}

/// Nango's routes, behind the API key as Nango checks it.
pub(super) fn routes(state: &ApiState) -> OpenApiRouter<ApiState> {
    let records = || get(records);
    OpenApiRouter::default()
        .routes(route("/records", "listNangoRecords", "get", records(), records_operation()))
        .routes(route("/records/", "listNangoRecordsSlash", "get", records(), records_operation()))
        .routes(route("/sync/trigger", "triggerNangoSync", "post", post(trigger), control_operation(true)))
        .routes(route("/sync/pause", "pauseNangoSync", "post", post(pause), control_operation(false)))
        .routes(route("/sync/start", "startNangoSync", "post", post(start), control_operation(false)))
        .routes(route("/sync/status", "getNangoSyncStatus", "get", get(status), status_operation()))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_key))
}

/// One route and its operation, written as OpenAPI JSON.
fn route(
    path: &str,
    operation_id: &str,
    method: &str,
    handler: axum::routing::MethodRouter<ApiState>,
    mut operation: Value,
) -> UtoipaMethodRouter<ApiState> {
    operation["operationId"] = operation_id.into();
    operation["tags"] = json!(["nango"]);
    openapi::operation(path, json!({ method: operation }), handler)
}

/// The key, checked as Nango's server checks it, with its error codes:
/// `missing_auth_header`, `malformed_auth_header`, `unknown_account`.
async fn require_key(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, NangoError> {
    let unauthorized = |code, message: &str| NangoError::new(StatusCode::UNAUTHORIZED, code, message);
    state.check_key(request.headers()).map_err(|refusal| match refusal {
        KeyRefusal::Missing => unauthorized("missing_auth_header", "send `Authorization: Bearer <api key>`"),
        KeyRefusal::Malformed => {
            unauthorized("malformed_auth_header", "the Authorization header must be `Bearer <api key>`")
        }
        KeyRefusal::Wrong => unauthorized("unknown_account", "no account has this key"),
    })?;
    Ok(next.run(request).await)
}

fn pairs(query: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The connection named by Nango's pair (integration, connection id), if it
/// is one of this host's.
fn named(state: &ApiState, integration: &str, id: &str) -> Result<Connection, ApiError> {
    match state.db.connections.get(id).map_err(store_failed)? {
        Some(connection) if connection.integration_key() == integration => Ok(connection),
        _ => Err(unknown_connection(format!(
            "no connection `{}` of the integration `{}`",
            shorten(id),
            shorten(integration)
        ))),
    }
}

/// The connections a sync request names: one, or without `connection_id`
/// every connection of the integration.
fn targets(state: &ApiState, integration: &str, id: Option<&str>) -> Result<Vec<Connection>, ApiError> {
    if let Some(id) = id {
        return Ok(vec![named(state, integration, id)?]);
    }
    let all = state.db.connections.list().map_err(store_failed)?;
    let of_integration: Vec<Connection> = all.into_iter().filter(|c| c.integration_key() == integration).collect();
    if of_integration.is_empty() {
        return Err(unknown_connection(format!("the integration `{}` has no connection", shorten(integration))));
    }
    Ok(of_integration)
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// `GET /records/`: a page of a connection's records of `model`, as the
/// records API answers it.
async fn records(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, NangoError> {
    let mut model = None;
    let mut rest = Vec::new();
    for (name, value) in pairs(query) {
        match name.as_str() {
            "model" if model.is_some() => {
                return Err(NangoError::invalid("duplicate_parameter", "model", "`model` is given more than once"))
            }
            "model" => model = Some(value),
            "variant" if value == VARIANT => {}
            "variant" => {
                return Err(NangoError::invalid(
                    "unknown_variant",
                    "variant",
                    format!("this host runs the `{VARIANT}` variant only, not `{}`", shorten(&value)),
                ))
            }
            // The SDK's older name of `modified_after`.
            "delta" => rest.push(("modified_after".to_owned(), value)),
            _ => rest.push((name, value)),
        }
    }
    let models: Vec<String> = state.endpoints.iter().map(|e| e.model.clone()).collect();
    let model = match model {
        None => return Err(NangoError::invalid("missing", "model", "`model` is required")),
        Some(model) if !models.contains(&model) => {
            return Err(NangoError::invalid(
                "unknown_model",
                "model",
                format!("no model `{}`; this host's: {}", shorten(&model), models.join(", ")),
            ))
        }
        Some(model) => model,
    };
    let params: ListParams = parse_params(&rest)?;
    let (connection_id, integration) =
        match (header_text(&headers, "connection-id"), header_text(&headers, "provider-config-key")) {
            (Some(id), Some(key)) => (id.to_owned(), key.to_owned()),
            (id, key) => {
                let missing: Vec<Value> = [("Connection-Id", id), ("Provider-Config-Key", key)]
                .into_iter()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| json!({"code": "missing", "message": format!("`{name}` is required"), "path": [name]}))
                .collect();
                return Err(NangoError {
                    errors: missing,
                    ..NangoError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_headers",
                        "send the `Connection-Id` and `Provider-Config-Key` headers",
                    )
                });
            }
        };
    let page = blocking(move || {
        named(&state, &integration, &connection_id)?;
        super::page(&state.db, Scope { connection: connection_id, model }, params)
    })
    .await?;
    Ok(Json(page).into_response())
}

/// A sync as the SDK names it: its name, or `{name, variant}`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SyncName {
    Name(String),
    Variant { name: String, variant: String },
}

/// `opts` of `POST /sync/trigger`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerOptions {
    /// Forget the checkpoint: the next run starts over.
    #[serde(default)]
    reset: bool,
    /// With `reset`, delete the records too.
    #[serde(default, rename = "emptyCache")]
    empty_cache: bool,
}

/// The body of `POST /sync/trigger`, `/sync/pause` and `/sync/start`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    syncs: Vec<SyncName>,
    provider_config_key: String,
    #[serde(default)]
    connection_id: Option<String>,
    #[serde(default)]
    opts: Option<TriggerOptions>,
    /// The SDK's older form of `opts`.
    #[serde(default)]
    sync_mode: Option<String>,
}

impl ApiState {
    /// The name of the sync this host runs (the component's).
    fn sync_name(&self) -> &str {
        &self.control.sync_name
    }

    /// Refuses syncs that are not this host's.
    fn check_syncs<'a>(&self, syncs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), NangoError> {
        for (name, variant) in syncs {
            if name != self.sync_name() || variant != VARIANT {
                return Err(NangoError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_sync",
                    format!(
                        "no sync `{}` (variant `{}`): this host runs `{}` (variant `{VARIANT}`)",
                        shorten(name),
                        shorten(variant),
                        self.sync_name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn sync_request(
    state: &ApiState,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    with_options: bool,
) -> Result<SyncRequest, NangoError> {
    let body: SyncRequest = json_body(&super::request_body(body)?)?;
    if !with_options && (body.opts.is_some() || body.sync_mode.is_some()) {
        return Err(NangoError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "`opts` and `sync_mode` are for triggers",
        ));
    }
    if body.syncs.is_empty() {
        return Err(NangoError::new(StatusCode::BAD_REQUEST, "invalid_body", "`syncs` names no sync"));
    }
    state.check_syncs(body.syncs.iter().map(|s| match s {
        SyncName::Name(name) => (name.as_str(), VARIANT),
        SyncName::Variant { name, variant } => (name.as_str(), variant.as_str()),
    }))?;
    Ok(body)
}

fn success() -> Response {
    Json(json!({"success": true})).into_response()
}

/// `POST /sync/trigger`: a run now of each connection named, after a reset
/// when asked (`opts.reset`, `opts.emptyCache`, or the older `sync_mode`).
async fn trigger(
    State(state): State<ApiState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, NangoError> {
    let request = sync_request(&state, body, true)?;
    let options = request.opts.unwrap_or_default();
    let (reset, empty) = match request.sync_mode.as_deref() {
        None => (options.reset, options.reset && options.empty_cache),
        Some("incremental") => (false, false),
        Some("full_refresh") => (true, false),
        Some("full_refresh_and_clear_cache") => (true, true),
        Some(other) => {
            return Err(NangoError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!(
                    "`sync_mode` must be incremental, full_refresh or full_refresh_and_clear_cache, not `{}`",
                    shorten(other)
                ),
            ))
        }
    };
    blocking(move || {
        let targets = targets(&state, &request.provider_config_key, request.connection_id.as_deref())?;
        for connection in targets {
            state.run_now(&connection.id, reset, empty)?;
        }
        Ok(())
    })
    .await?;
    Ok(success())
}

/// `POST /sync/pause`: no more runs of the connections named until started.
async fn pause(
    State(state): State<ApiState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, NangoError> {
    let request = sync_request(&state, body, false)?;
    set_paused(state, request, true).await
}

/// `POST /sync/start`: the connections named resume, and run now.
async fn start(
    State(state): State<ApiState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, NangoError> {
    let request = sync_request(&state, body, false)?;
    set_paused(state, request, false).await
}

async fn set_paused(state: ApiState, request: SyncRequest, paused: bool) -> Result<Response, NangoError> {
    blocking(move || {
        let targets = targets(&state, &request.provider_config_key, request.connection_id.as_deref())?;
        for connection in targets {
            // Starting asks for a run now, as Nango's start does.
            let next = if paused { None } else { Some(None) };
            let update = ConnectionUpdate { paused: Some(paused), next_run_at_us: next, ..Default::default() };
            state
                .db
                .connections
                .update(&connection.id, &update)
                .map_err(store_failed)?
                .ok_or_else(|| not_found(&connection.id))?;
        }
        if !paused {
            state.wake();
        }
        Ok(())
    })
    .await?;
    Ok(success())
}

/// `GET /sync/status`: where each named connection's sync stands.
async fn status(State(state): State<ApiState>, RawQuery(query): RawQuery) -> Result<Response, NangoError> {
    let (mut syncs, mut integration, mut connection_id) = (None, None, None);
    for (name, value) in pairs(query) {
        let slot = match name.as_str() {
            "syncs" => &mut syncs,
            "provider_config_key" => &mut integration,
            "connection_id" => &mut connection_id,
            other => {
                return Err(NangoError::invalid(
                    "unknown_parameter",
                    other,
                    format!("unknown parameter `{}`; known: syncs, provider_config_key, connection_id", shorten(other)),
                ))
            }
        };
        if slot.replace(value).is_some() {
            return Err(NangoError::invalid("duplicate_parameter", &name, format!("`{name}` is given more than once")));
        }
    }
    let Some(syncs) = syncs else { return Err(NangoError::invalid("missing", "syncs", "`syncs` is required")) };
    let Some(integration) = integration else {
        return Err(NangoError::invalid("missing", "provider_config_key", "`provider_config_key` is required"));
    };
    if syncs != "*" {
        let names: Vec<(&str, &str)> =
            syncs.split(',').map(|s| s.trim().split_once("::").unwrap_or((s.trim(), VARIANT))).collect();
        state.check_syncs(names)?;
    }
    let answer = blocking(move || {
        let targets = targets(&state, &integration, connection_id.as_deref())?;
        let syncs = targets.into_iter().map(|c| state.sync_status(c)).collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "syncs": syncs }))
    })
    .await?;
    Ok(Json(answer).into_response())
}

impl ApiState {
    /// One entry of `GET /sync/status` (docs/nango.md, "Sync status").
    fn sync_status(&self, connection: Connection) -> Result<Value, ApiError> {
        let connection = self.with_unwritten_failure(connection);
        let sync = self.sync_name().to_owned();
        let (runs, _) = self.db.runs.list(&connection.id, None, 5).map_err(store_failed)?;
        let in_flight = runs.first().is_some_and(|r| r.outcome.is_none());
        let finished = runs.iter().find(|r| r.outcome.is_some());
        let checkpoint =
            self.db.run_writes().and_then(|mut w| w.checkpoints.get(&connection.id, &sync)).map_err(store_failed)?;
        let status = if connection.paused {
            "PAUSED"
        } else if connection.status == ConnectionStatus::Running || in_flight {
            "RUNNING"
        } else if connection.status == ConnectionStatus::NeedsReauth {
            "STOPPED"
        } else if self.control.unrecorded.as_ref().is_some_and(|u| u.status(&connection.id).is_some()) {
            // Failed, and the store has not taken it yet.
            "ERROR"
        } else {
            match finished.and_then(|r| r.outcome) {
                Some(Outcome::Failure) => "ERROR",
                // Idle after a success, or never run yet (it runs as soon as a worker takes it).
                _ => "SUCCESS",
            }
        };
        let latest_execution = if in_flight {
            Some("RUNNING")
        } else {
            finished.and_then(|r| r.outcome).map(|o| if o == Outcome::Success { "SUCCESS" } else { "FAILED" })
        };
        let counts: Option<crate::runtime::SummaryLine> =
            finished.and_then(|r| r.summary.as_deref()).and_then(|s| serde_json::from_str(s).ok());
        let models: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| e.model.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut latest_result = serde_json::Map::new();
        let mut record_count = serde_json::Map::new();
        for model in &models {
            if let (Some(counts), true) = (counts, models.len() == 1) {
                latest_result.insert(
                    model.clone(),
                    json!({"added": counts.added, "updated": counts.updated, "deleted": counts.deleted}),
                );
            }
            let scope = Scope { connection: connection.id.clone(), model: model.clone() };
            record_count.insert(model.clone(), self.db.records.count(&scope).map_err(store_failed)?.into());
        }
        let every = schedule::interval_in_force(connection.every, self.control.component_interval);
        let next = (!connection.paused && connection.status != ConnectionStatus::NeedsReauth)
            .then(|| format_us(connection.next_run_at_us.unwrap_or_else(crate::time::now_us)));
        Ok(json!({
            "id": format!("{}/{sync}", connection.id),
            "connection_id": connection.id,
            "name": sync,
            "variant": VARIANT,
            "type": if checkpoint.is_none() { "INITIAL" } else { "INCREMENTAL" },
            "status": status,
            "frequency": format!("every {}", format_every(every)),
            "finishedAt": finished.and_then(|r| r.ended_us).map(format_us),
            "nextScheduledSyncAt": next,
            "latestResult": latest_result,
            "latestExecutionStatus": latest_execution,
            "recordCount": record_count,
            "checkpoint": checkpoint.and_then(|c| serde_json::from_str::<Value>(&c).ok()),
        }))
    }
}

/// The answers every Nango operation may give besides its own; the 401
/// (missing_auth_header, malformed_auth_header, unknown_account) is added
/// with the key's security requirement when the server has a key.
fn error_responses() -> Value {
    json!({
        "400": {"description": "A refused request, in Nango's error shape.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NangoError"}}}},
    })
}

fn records_operation() -> Value {
    let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": true, "schema": {"type": "string", "minLength": 1}, "description": description});
    let mut parameters = vec![
        json!({"name": "model", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}, "description": "The model, e.g. Customer."}),
        header("Connection-Id", "The connection."),
        header("Provider-Config-Key", "Its integration (Nango's provider config key)."),
        json!({"name": "variant", "in": "query", "required": false, "schema": {"type": "string", "enum": [VARIANT]}}),
        json!({"name": "delta", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"}, "description": "An older name of modified_after."}),
    ];
    parameters.extend(openapi::record_parameters());
    let mut responses = error_responses();
    responses["200"] = openapi::records_page_response();
    json!({
        "summary": "Nango's listRecords: a connection's records of a model, with _nango_metadata, keyset-paginated.",
        "parameters": parameters,
        "responses": responses,
    })
}

fn control_operation(trigger: bool) -> Value {
    let sync = json!({"oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "object", "additionalProperties": false, "required": ["name", "variant"],
         "properties": {"name": {"type": "string"}, "variant": {"type": "string"}}}
    ]});
    let mut properties = json!({
        "syncs": {"type": "array", "minItems": 1, "items": sync},
        "provider_config_key": {"type": "string", "minLength": 1},
        "connection_id": {"type": "string", "minLength": 1},
    });
    if trigger {
        properties["opts"] = json!({"type": ["object", "null"], "additionalProperties": false,
            "properties": {"reset": {"type": "boolean"}, "emptyCache": {"type": "boolean"}}});
        properties["sync_mode"] =
            json!({"type": "string", "enum": ["incremental", "full_refresh", "full_refresh_and_clear_cache"]});
    }
    let mut responses = error_responses();
    responses["200"] = json!({"description": "Done.", "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false, "required": ["success"],
        "properties": {"success": {"type": "boolean", "const": true}}}}}});
    responses["409"] = json!({"description": "A connection is running, paused, needs re-authorisation, or no scheduler runs here.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NangoError"}}}});
    json!({
        "summary": if trigger { "Nango's triggerSync: a run now, after a reset when asked." } else { "Nango's pauseSync / startSync." },
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": false, "required": ["syncs", "provider_config_key"], "properties": properties}}}},
        "responses": responses,
    })
}

fn status_operation() -> Value {
    let query = |name: &str, required: bool| json!({"name": name, "in": "query", "required": required, "schema": {"type": "string", "minLength": 1}});
    let counts = json!({"type": "object", "additionalProperties": false, "required": ["added", "updated", "deleted"],
        "properties": {"added": {"type": "integer"}, "updated": {"type": "integer"}, "deleted": {"type": "integer"}}});
    let entry = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "connection_id", "name", "variant", "type", "status", "frequency", "finishedAt",
                     "nextScheduledSyncAt", "latestResult", "latestExecutionStatus", "recordCount", "checkpoint"],
        "properties": {
            "id": {"type": "string"}, "connection_id": {"type": "string"}, "name": {"type": "string"},
            "variant": {"type": "string"},
            "type": {"type": "string", "enum": ["INITIAL", "INCREMENTAL"]},
            "status": {"type": "string", "enum": ["RUNNING", "SUCCESS", "ERROR", "PAUSED", "STOPPED"]},
            "frequency": {"type": "string"},
            "finishedAt": {"type": ["string", "null"], "format": "date-time"},
            "nextScheduledSyncAt": {"type": ["string", "null"], "format": "date-time"},
            "latestResult": {"type": "object", "additionalProperties": counts},
            "latestExecutionStatus": {"type": ["string", "null"], "enum": ["RUNNING", "SUCCESS", "FAILED", null]},
            "recordCount": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "checkpoint": {}
        }
    });
    let mut responses = error_responses();
    responses["200"] = json!({"description": "Each named connection's sync.", "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false, "required": ["syncs"],
        "properties": {"syncs": {"type": "array", "items": entry}}}}}});
    json!({
        "summary": "Nango's syncStatus: where each named connection's sync stands.",
        "parameters": [query("syncs", true), query("provider_config_key", true), query("connection_id", false)],
        "responses": responses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_parameter_is_nangos_invalid_query_params_naming_it() {
        let error = NangoError::from(ApiError::bad_request("invalid_limit", "`limit` must be …"));
        assert_eq!((error.status, error.code), (StatusCode::BAD_REQUEST, "invalid_query_params"));
        assert_eq!(
            error.errors,
            vec![json!({"code": "invalid_limit", "message": "`limit` must be …", "path": ["limit"]})]
        );
        let other = NangoError::from(ApiError::bad_request("unknown_connection", "no connection"));
        assert_eq!((other.code, other.errors.len()), ("unknown_connection", 0));
    }
}
