//! The control API (docs/api.md, "Control"): connections, their status and
//! schedule, run now, reset, pause, resume, frequency, and run history.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{optional_body, page_query, with_parameters};
use super::{internal, shorten, ApiError, ApiState};
use crate::runtime::SummaryLine;
use crate::schedule;
use crate::store::{
    Connection, ConnectionStatus, ConnectionUpdate, Delivery, DeliveryStatus, Outcome, RunRecord, StoreError, Trigger,
};
use crate::time::every::{format_every, parse_every};
use crate::time::format_us;

/// Runs per page of history, by default and at most.
const DEFAULT_RUNS: u32 = 20;
const MAX_RUNS: u32 = 1000;

/// The control API's routes, each with its operation.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(list))
        .routes(routes!(show, patch))
        .routes(optional_body(routes!(sync)))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(with_parameters(routes!(runs), &page_query(DEFAULT_RUNS, MAX_RUNS)))
        .routes(with_parameters(routes!(deliveries), &page_query(DEFAULT_RUNS, MAX_RUNS)))
}

/// One run of a connection.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Run)]
struct RunView {
    id: String,
    #[schema(inline)]
    trigger: TriggerView,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime, required)]
    ended_at: Option<String>,
    /// `success`, `failure`, or null while the run goes on.
    #[schema(inline, required)]
    outcome: Option<OutcomeView>,
    #[schema(value_type = Option<super::openapi::SummarySchema>, required)]
    summary: Option<SummaryLine>,
    #[schema(required)]
    error: Option<String>,
}

/// What started the run.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum TriggerView {
    Schedule,
    Api,
    Webhook,
    Cli,
}

impl From<Trigger> for TriggerView {
    fn from(trigger: Trigger) -> Self {
        match trigger {
            Trigger::Schedule => TriggerView::Schedule,
            Trigger::Api => TriggerView::Api,
            Trigger::Webhook => TriggerView::Webhook,
            Trigger::Cli => TriggerView::Cli,
        }
    }
}

/// How the run ended.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum OutcomeView {
    Success,
    Failure,
}

impl From<Outcome> for OutcomeView {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => OutcomeView::Success,
            Outcome::Failure => OutcomeView::Failure,
        }
    }
}

impl From<RunRecord> for RunView {
    fn from(run: RunRecord) -> Self {
        RunView {
            id: run.id,
            trigger: run.trigger.into(),
            started_at: format_us(run.started_us),
            ended_at: run.ended_us.map(format_us),
            outcome: run.outcome.map(OutcomeView::from),
            summary: run.summary.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            error: run.error,
        }
    }
}

/// A connection: status, schedule, last run.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Connection)]
struct ConnectionView {
    id: String,
    #[schema(required)]
    realm_id: Option<String>,
    base_url: String,
    #[schema(inline)]
    status: StatusView,
    /// Why the status is what it is: the last error, or what re-authorising
    /// takes. Never a secret.
    #[schema(required)]
    status_message: Option<String>,
    /// Time between runs, e.g. 15m.
    #[schema(pattern = "^[0-9]+[smhd]$")]
    every: String,
    /// null while paused or waiting for re-authorisation.
    #[schema(format = DateTime, required)]
    next_run_at: Option<String>,
    /// The last finished run; null before the first.
    #[schema(required)]
    last_run: Option<RunView>,
    /// Nango's names (docs/nango.md): the connection's id again,
    connection_id: String,
    /// its integration (Nango's provider config key),
    provider_config_key: String,
    /// its provider,
    provider: String,
    /// and when it was added.
    #[schema(format = DateTime)]
    created: String,
}

/// The connection's state: idle, running, paused, needs_reauth (its
/// authorisation must be given again) or failing (its last run failed).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum StatusView {
    Idle,
    Running,
    Paused,
    NeedsReauth,
    Failing,
}

impl From<ConnectionStatus> for StatusView {
    fn from(status: ConnectionStatus) -> Self {
        match status {
            ConnectionStatus::Idle => StatusView::Idle,
            ConnectionStatus::Running => StatusView::Running,
            ConnectionStatus::NeedsReauth => StatusView::NeedsReauth,
            ConnectionStatus::Failing => StatusView::Failing,
        }
    }
}

/// `GET /connections`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConnectionList {
    connections: Vec<ConnectionView>,
}

/// A page of a connection's runs.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RunPage {
    runs: Vec<RunView>,
    #[schema(required)]
    next_cursor: Option<String>,
}

/// A page of a connection's webhook deliveries.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeliveryPage {
    deliveries: Vec<DeliveryView>,
    #[schema(required)]
    next_cursor: Option<String>,
}

pub(super) fn not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "unknown_connection",
        message: format!("no connection `{}`", shorten(id)),
    }
}

pub(super) fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError { status: StatusCode::CONFLICT, code, message }
}

pub(super) fn store(error: StoreError) -> ApiError {
    super::store_failed(error)
}

/// Runs blocking store work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(internal)?
}

impl ApiState {
    /// `connection` as this process knows it: failing, if the store refused
    /// to hold a failed run of it (docs/store.md, "When the store fails").
    pub(super) fn with_unwritten_failure(&self, mut connection: Connection) -> Connection {
        let unwritten = self.control.unrecorded.as_ref().and_then(|u| u.status(&connection.id));
        if let Some(failure) = unwritten {
            if connection.status != ConnectionStatus::NeedsReauth {
                connection.status = ConnectionStatus::Failing;
                connection.status_message = Some(failure.error);
                connection.failures = failure.failures;
                connection.next_run_at_us = Some(failure.retry_at_us);
            }
        }
        connection
    }

    fn view(&self, connection: Connection) -> Result<ConnectionView, ApiError> {
        let connection = self.with_unwritten_failure(connection);
        let (mut last, _) = self.db.runs.list(&connection.id, None, 5).map_err(store)?;
        last.retain(|run| run.outcome.is_some());
        let every = schedule::interval_in_force(connection.every, self.control.component_interval);
        let status = if connection.paused { StatusView::Paused } else { connection.status.into() };
        let provider_config_key = connection.integration_key();
        Ok(ConnectionView {
            realm_id: connection.config.get("realmId").cloned(),
            base_url: connection.base_url,
            status,
            status_message: connection.status_message,
            every: format_every(every),
            next_run_at: if connection.paused || connection.status == ConnectionStatus::NeedsReauth {
                None
            } else {
                // No time set: as soon as a worker takes it, i.e. now.
                Some(format_us(connection.next_run_at_us.unwrap_or_else(crate::time::now_us)))
            },
            last_run: last.into_iter().next().map(RunView::from),
            connection_id: connection.id.clone(),
            provider_config_key,
            provider: connection.provider,
            created: format_us(connection.created_us),
            id: connection.id,
        })
    }

    pub(super) fn connection(&self, id: &str) -> Result<Connection, ApiError> {
        self.db.connections.get(id).map_err(store)?.ok_or_else(|| not_found(id))
    }

    fn update(&self, id: &str, update: &ConnectionUpdate) -> Result<ConnectionView, ApiError> {
        let connection = self.db.connections.update(id, update).map_err(store)?.ok_or_else(|| not_found(id))?;
        self.view(connection)
    }

    pub(super) fn wake(&self) {
        if let Some(waker) = &self.control.waker {
            waker.notify_one();
        }
    }
}

/// A request's JSON body as `T`; an empty body means `{}`. `T` refuses
/// fields it does not know (`deny_unknown_fields`), and the error names them.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    // serde reads a struct from an array too (`[true]` as `{"reset": true}`).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object of the documented fields"));
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde's message names the field as sent: cut a huge one short.
        let mut why = e.to_string();
        if let Some((cut, _)) = why.char_indices().nth(200) {
            why.truncate(cut);
            why.push('…');
        }
        if why.starts_with("unknown field") {
            ApiError::bad_request("unknown_field", why)
        } else {
            ApiError::bad_request(
                "invalid_body",
                format!("the body must be a JSON object of the documented fields: {why}"),
            )
        }
    })
}

/// The body of `POST /connections/{id}/sync`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    /// Forget the checkpoint first (null: false).
    #[serde(default)]
    reset: Option<bool>,
    /// With `reset`, delete the records too.
    #[serde(default)]
    empty: Option<bool>,
}

/// The body of `PATCH /connections/{id}`: `every`, a duration, or null for
/// the component's frequency.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchRequest {
    /// e.g. 15m; null: the component's frequency.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+[smhd]$", required)]
    every: Option<Value>,
}

/// A field that is there, null included (`Some(Value::Null)`), as opposed
/// to absent (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// Every connection the host runs.
#[utoipa::path(get, path = "/connections", operation_id = "listConnections",
    responses(
    (status = 200, description = "The connections, by id.", body = ConnectionList),
))]
async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let views = blocking(move || {
        let connections = state.db.connections.list().map_err(store)?;
        connections.into_iter().map(|c| state.view(c)).collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(ConnectionList { connections: views }).into_response())
}

/// A connection: status, schedule, last run.
#[utoipa::path(get, path = "/connections/{id}", operation_id = "getConnection",
    params(("id" = String, Path, description = "The connection id.")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionView),
        (status = 404, response = ApiError),
    ))]
async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let view = blocking(move || state.view(state.connection(&id)?)).await?;
    Ok(Json(view).into_response())
}

/// Change how often the connection runs.
#[utoipa::path(patch, path = "/connections/{id}", operation_id = "updateConnection",
    params(("id" = String, Path, description = "The connection id.")),
    request_body = PatchRequest,
    responses(
        (status = 200, description = "The connection.", body = ConnectionView),
        (status = 400, response = ApiError),
        (status = 404, response = ApiError),
        (status = 413, response = ApiError),
    ))]
async fn patch(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body: PatchRequest = json_body(&super::request_body(body)?)?;
    let every = match &body.every {
        None => return Err(ApiError::bad_request("invalid_body", "nothing to change: give `every`")),
        Some(Value::Null) => None,
        Some(Value::String(text)) => {
            Some(parse_every(text).map_err(|why| ApiError::bad_request("invalid_every", why))?)
        }
        Some(_) => {
            return Err(ApiError::bad_request("invalid_every", "`every` must be a duration such as \"15m\", or null"))
        }
    };
    let view = blocking(move || {
        let connection = state.connection(&id)?;
        let (runs, _) = state.db.runs.list(&id, None, 1).map_err(store)?;
        let next = schedule::next_after_interval_change(
            runs.first().map(|r| r.started_us),
            crate::time::now_us(),
            schedule::interval_in_force(every, state.control.component_interval),
            connection.next_run_at_us,
            connection.status == ConnectionStatus::Failing,
        );
        let view = state
            .update(&id, &ConnectionUpdate { every: Some(every), next_run_at_us: Some(next), ..Default::default() })?;
        state.wake();
        Ok(view)
    })
    .await?;
    Ok(Json(view).into_response())
}

/// Run the connection now; with reset, forget its checkpoint (and with empty, its records) first.
///
/// 409 when the connection is paused (`paused`), needs authorising again
/// (`needs_reauth`), is running (`running`), or when this server was started
/// without `--schedule` and so runs no syncs (`not_scheduling`).
#[utoipa::path(post, path = "/connections/{id}/sync", operation_id = "syncConnection",
    params(("id" = String, Path, description = "The connection id.")),
    request_body(content = SyncRequest, description = "Optional: none is `{}`."),
    responses(
        (status = 202, description = "The run is due now.", body = ConnectionView),
        (status = 400, response = ApiError),
        (status = 404, response = ApiError),
        (status = 409, response = ApiError),
        (status = 413, response = ApiError),
    ))]
async fn sync(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body: SyncRequest = json_body(&super::request_body(body)?)?;
    let (reset, empty) = (body.reset.unwrap_or(false), body.empty.unwrap_or(false));
    if empty && !reset {
        return Err(ApiError::bad_request(
            "invalid_body",
            "`empty` needs `reset`: emptying the records forgets the checkpoint too",
        ));
    }
    let view = blocking(move || {
        let connection = state.run_now(&id, reset, empty)?;
        state.view(connection)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

impl ApiState {
    /// Asks for a run of `id` now, after forgetting its checkpoint with
    /// `reset` (and its records with `empty`); refused while it runs, is
    /// paused or needs re-authorisation, or when no scheduler runs here. The
    /// control API and Nango's `POST /sync/trigger` both ask here.
    pub(super) fn run_now(&self, id: &str, reset: bool, empty: bool) -> Result<Connection, ApiError> {
        let state = self;
        let connection = state.connection(id)?;
        // Without a scheduler in this process the request would be accepted
        // and never run (docs/api.md).
        if state.control.waker.is_none() {
            return Err(conflict(
                "not_scheduling",
                format!("this server runs no syncs (started without --schedule); start `sync-host serve --schedule` to run `{id}`"),
            ));
        }
        if connection.paused {
            return Err(conflict("paused", format!("connection `{id}` is paused; resume it first")));
        }
        if connection.status == ConnectionStatus::NeedsReauth {
            return Err(conflict(
                "needs_reauth",
                format!(
                    "connection `{id}` needs to be authorised again: {}",
                    connection.status_message.unwrap_or_default()
                ),
            ));
        }
        // Under the run lock: a run in flight would set its next run when it
        // ends, over this request, and save a checkpoint over a reset. So a
        // request during a run is refused, not silently dropped.
        let Some(_lease) = state.db.locks.try_lock_run(id).map_err(store)? else {
            return Err(conflict("running", format!("connection `{id}` is running; ask again when the run ends")));
        };
        if reset {
            state.db.connections.reset(id, empty).map_err(store)?;
        }
        let update = ConnectionUpdate { next_run_at_us: Some(None), ..Default::default() };
        let connection = state.db.connections.update(id, &update).map_err(store)?.ok_or_else(|| not_found(id))?;
        state.wake();
        Ok(connection)
    }
}

/// Stop scheduling the connection.
#[utoipa::path(post, path = "/connections/{id}/pause", operation_id = "pauseConnection",
    params(("id" = String, Path, description = "The connection id.")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionView),
        (status = 404, response = ApiError),
    ))]
async fn pause(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let view =
        blocking(move || state.update(&id, &ConnectionUpdate { paused: Some(true), ..Default::default() })).await?;
    Ok(Json(view).into_response())
}

/// Schedule the connection again.
#[utoipa::path(post, path = "/connections/{id}/resume", operation_id = "resumeConnection",
    params(("id" = String, Path, description = "The connection id.")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionView),
        (status = 404, response = ApiError),
    ))]
async fn resume(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let view = blocking(move || {
        let view = state.update(&id, &ConnectionUpdate { paused: Some(false), ..Default::default() })?;
        state.wake();
        Ok(view)
    })
    .await?;
    Ok(Json(view).into_response())
}

fn encode_run_cursor(run: &RunRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!("r1|{}|{}", run.started_us, run.id))
}

fn decode_run_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!("`cursor` `{}` is not a cursor this API returned", shorten(cursor)),
        )
    };
    let text = URL_SAFE_NO_PAD.decode(cursor).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next().and_then(|m| m.parse::<i64>().ok()), parts.next()) {
        (Some("r1"), Some(micros), Some(id)) if !id.is_empty() => Ok((micros, id.to_owned())),
        _ => Err(invalid()),
    }
}

/// `limit` and `cursor` of a history's page (runs, deliveries); any other
/// parameter is refused.
fn page_parameters<C>(
    query: Option<String>,
    decode_cursor: impl Fn(&str) -> Result<C, ApiError>,
) -> Result<(u32, Option<C>), ApiError> {
    let mut limit = DEFAULT_RUNS;
    let mut before = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "limit" => {
                limit = value.parse::<u32>().ok().filter(|l| (1..=MAX_RUNS).contains(l)).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_limit",
                        format!("`limit` must be an integer from 1 to {MAX_RUNS}, got `{}`", shorten(&value)),
                    )
                })?
            }
            "cursor" => before = Some(decode_cursor(&value)?),
            other => {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("unknown parameter `{}`; known: limit, cursor", shorten(other)),
                ))
            }
        }
    }
    Ok((limit, before))
}

/// The connection's runs, newest first.
#[utoipa::path(get, path = "/connections/{id}/runs", operation_id = "listConnectionRuns",
    params(("id" = String, Path, description = "The connection id.")),
    responses(
        (status = 200, description = "A page of runs.", body = RunPage),
        (status = 400, response = ApiError),
        (status = 404, response = ApiError),
    ))]
async fn runs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (limit, before) = page_parameters(query, decode_run_cursor)?;
    let page = blocking(move || {
        state.connection(&id)?;
        let (runs, more) = state.db.runs.list(&id, before, limit).map_err(store)?;
        let next_cursor = if more { runs.last().map(encode_run_cursor) } else { None };
        Ok(RunPage { runs: runs.into_iter().map(RunView::from).collect(), next_cursor })
    })
    .await?;
    Ok(Json(page).into_response())
}

/// A webhook delivery.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Delivery)]
struct DeliveryView {
    id: i64,
    #[schema(required)]
    run: Option<String>,
    url: String,
    #[schema(inline)]
    status: DeliveryStatusView,
    attempts: u32,
    #[schema(format = DateTime, required)]
    next_attempt_at: Option<String>,
    #[schema(required)]
    last_error: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime, required)]
    delivered_at: Option<String>,
    /// The body sent (signed anew at each attempt).
    #[schema(value_type = super::openapi::WebhookBodySchema)]
    body: Value,
}

/// pending (to be attempted), delivered, or given_up after the last attempt.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum DeliveryStatusView {
    Pending,
    Delivered,
    GivenUp,
}

impl From<DeliveryStatus> for DeliveryStatusView {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => DeliveryStatusView::Pending,
            DeliveryStatus::Delivered => DeliveryStatusView::Delivered,
            DeliveryStatus::GivenUp => DeliveryStatusView::GivenUp,
        }
    }
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        let pending = d.status == DeliveryStatus::Pending;
        DeliveryView {
            id: d.id,
            run: d.run,
            url: d.url,
            status: d.status.into(),
            attempts: d.attempts,
            next_attempt_at: pending.then(|| format_us(d.next_attempt_us)),
            last_error: d.last_error,
            created_at: format_us(d.created_us),
            delivered_at: d.delivered_us.map(format_us),
            body: serde_json::from_str(&d.body).unwrap_or(Value::Null),
        }
    }
}

/// The connection's webhook deliveries, newest first.
#[utoipa::path(get, path = "/connections/{id}/deliveries", operation_id = "listConnectionDeliveries",
    params(("id" = String, Path, description = "The connection id.")),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPage),
        (status = 400, response = ApiError),
        (status = 404, response = ApiError),
    ))]
async fn deliveries(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (limit, before) = page_parameters(query, |cursor| {
        cursor.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                format!("`cursor` `{}` is not a cursor this API returned", shorten(cursor)),
            )
        })
    })?;
    let page = blocking(move || {
        state.connection(&id)?;
        let (deliveries, more) = state.db.deliveries.list(&id, before, limit).map_err(store)?;
        let next_cursor = if more { deliveries.last().map(|d| d.id.to_string()) } else { None };
        Ok(DeliveryPage { deliveries: deliveries.into_iter().map(DeliveryView::from).collect(), next_cursor })
    })
    .await?;
    Ok(Json(page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_a_json_object_or_nothing() {
        for body in [&b"[true, true]"[..], b" [null]", b"null", b"\"reset\"", b"1"] {
            let error = json_body::<SyncRequest>(body).err().expect("refused");
            assert_eq!(error.code, "invalid_body", "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(json_body::<PatchRequest>(b"[\"15m\"]").err().map(|e| e.code), Some("invalid_body"));
        let request: SyncRequest = json_body(b" {\"reset\": true} ").unwrap();
        assert_eq!((request.reset, request.empty), (Some(true), None));
        let request: SyncRequest = json_body(b"  ").unwrap();
        assert_eq!((request.reset, request.empty), (None, None));
    }
}
