//! The `/v3` HTTP surface: routing, auth, faults, query and CDC answers.
//!
//! All `/v3` requests go through one fallback handler that parses the URI itself, so
//! that no client input can ever produce one of axum's own (non-QBO) rejections.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::Duration;
use serde_json::{json, Value};

use crate::query;
use crate::store::{parse_timestamp, response_time};
use crate::{admin, FakeQbo, Injected, RequestInfo, RequestKind};

/// CDC refuses `changedSince` further back than this.
const CDC_LOOKBACK_DAYS: i64 = 30;
/// CDC returns at most this many objects.
const CDC_MAX_OBJECTS: usize = 1000;

pub(crate) fn router(fake: FakeQbo) -> Router {
    admin::routes()
        .route("/oauth2/v1/tokens/bearer", axum::routing::post(crate::oauth::token))
        .fallback(api)
        .with_state(fake)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

/// An answer before it becomes an HTTP response (so it can still be truncated).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    content_type: String,
    body: String,
}

impl Reply {
    fn new(status: u16, value: &Value, format: Format) -> Reply {
        let (content_type, body) = match format {
            Format::Json => ("application/json", value.to_string()),
            Format::Xml => ("application/xml", crate::xml::render(value)),
        };
        Reply { status, headers: Vec::new(), content_type: content_type.into(), body }
    }

    fn into_response(self, n: usize) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.content_type) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("fake-{n}")) {
            headers.insert(HeaderName::from_static("intuit_tid"), v);
        }
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
                headers.insert(name, value);
            }
        }
        response
    }
}

// --- faults ------------------------------------------------------------------------

fn validation_fault(code: &str, message: &str, detail: &str, time: &str) -> Value {
    json!({
        "Fault": {
            "Error": [{"Message": message, "Detail": detail, "code": code, "element": ""}],
            "type": "ValidationFault",
        },
        "time": time,
    })
}

fn system_fault(detail: &str, time: &str) -> Value {
    json!({
        "Fault": {
            "Error": [{
                "Message": "An application error has occurred while processing your request",
                "Detail": detail,
                "code": "10000",
            }],
            "type": "SystemFault",
        },
        "time": time,
    })
}

/// The API gateway's faults (401, 429) use lower-case keys and a packed message.
fn gateway_fault(kind: &str, message: &str, detail: &str, code: &str, time: &str) -> Value {
    json!({
        "fault": {
            "error": [{"message": message, "detail": detail, "code": code}],
            "type": kind,
        },
        "time": time,
    })
}

fn unauthorized(time: &str, format: Format, expired: bool) -> Reply {
    let detail = if expired {
        "Token expired"
    } else {
        "Token invalid or missing: expected Authorization: Bearer <access token>"
    };
    let body = gateway_fault(
        "AUTHENTICATION",
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        detail,
        "3200",
        time,
    );
    let mut reply = Reply::new(401, &body, format);
    reply.headers.push(("WWW-Authenticate".into(), "Bearer realm=\"Intuit\"".into()));
    reply
}

fn forbidden(realm: &str, time: &str, format: Format) -> Reply {
    let body = json!({
        "Fault": {
            "Error": [{
                "Message": "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                "Detail": format!("The token is not authorized for company (realm) '{realm}'"),
                "code": "3100",
            }],
            "type": "AuthorizationFault",
        },
        "time": time,
    });
    Reply::new(403, &body, format)
}

/// What QuickBooks answers when a company's quota is spent: 429, no
/// `Retry-After`, and XML whatever the `Accept` header asked for.
fn throttled_as_qbo(time: &str) -> Reply {
    let body = json!({
        "Fault": {
            "Error": [{
                "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "Detail": "The request limit was reached.  Try again later",
                "code": "3001",
            }],
            "type": "SERVICE",
        },
        "time": time,
    });
    Reply::new(429, &body, Format::Xml)
}

fn bad_request(code: &str, message: &str, detail: &str, time: &str, format: Format) -> Reply {
    Reply::new(400, &validation_fault(code, message, detail, time), format)
}

fn render_injected(injected: Injected, time: &str, format: Format) -> Reply {
    match injected {
        Injected::Status { status, headers, body } => {
            let trimmed = body.trim_start();
            let content_type = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    if trimmed.starts_with('{') || trimmed.starts_with('[') {
                        "application/json".into()
                    } else if trimmed.starts_with('<') {
                        "application/xml".into()
                    } else {
                        "text/plain".into()
                    }
                });
            Reply { status, headers, content_type, body }
        }
        Injected::Throttle { retry_after_secs } => {
            let body = gateway_fault(
                "SERVICE",
                "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "The request limit was reached.",
                "3001",
                time,
            );
            let mut reply = Reply::new(429, &body, format);
            reply.headers.push(("Retry-After".into(), retry_after_secs.to_string()));
            reply
        }
        Injected::ThrottleXml => throttled_as_qbo(time),
        Injected::Unavailable => {
            let mut reply = Reply::new(503, &system_fault("Service temporarily unavailable", time), format);
            reply.headers.push(("Retry-After".into(), "1".into()));
            reply
        }
        Injected::ServerError => Reply::new(500, &system_fault("Internal server error", time), format),
        Injected::Fault { code, message, detail } => bad_request(&code, &message, &detail, time, format),
        // Handled by the caller, which has the real answer to cut.
        Injected::TruncatedJson => truncate(Reply::new(200, &json!({"QueryResponse": {}}), Format::Json)),
    }
}

/// A 200 whose JSON body stops halfway, as a dropped connection would leave it.
fn truncate(mut reply: Reply) -> Reply {
    const FIXED: &str = r#"{"QueryResponse":{"Customer":[{"Id":"1","DisplayName":"Trunc"#;
    let body = if reply.body.len() >= 16 { reply.body.as_str() } else { FIXED };
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    reply.body = body[..cut].to_owned();
    reply.status = 200;
    reply.content_type = "application/json".into();
    reply
}

// --- routing -------------------------------------------------------------------------

/// What a `/v3` path asks for.
enum Route {
    Query { realm: String },
    Cdc { realm: String },
    Read { realm: String, id: String },
    Unknown { realm: Option<String> },
}

fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v3", "company", realm, rest @ ..] => {
            let realm = (*realm).to_owned();
            match rest {
                [op] if op.eq_ignore_ascii_case("query") => Route::Query { realm },
                [op] if op.eq_ignore_ascii_case("cdc") => Route::Cdc { realm },
                [entity, id] if entity.eq_ignore_ascii_case("customer") => Route::Read { realm, id: (*id).to_owned() },
                _ => Route::Unknown { realm: Some(realm) },
            }
        }
        _ => Route::Unknown { realm: None },
    }
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

/// Answers every `/v3` request: log, hooks, then auth, realm and the operation.
async fn api(State(fake): State<FakeQbo>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let raw_query = uri.query().unwrap_or("").to_owned();
    let params: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
    let format = match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        Some(accept) if accept.to_ascii_lowercase().contains("json") => Format::Json,
        _ => Format::Xml,
    };
    let route = route(&path);
    let (kind, query_text, changed_since) = match &route {
        Route::Query { .. } => {
            let text = param(&params, "query").or_else(|| {
                (method == Method::POST && !body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned())
            });
            (RequestKind::Query, text, None)
        }
        Route::Cdc { .. } => (RequestKind::Cdc, None, param(&params, "changedSince")),
        _ => (RequestKind::Other, None, None),
    };
    let info = fake.begin_request(RequestInfo {
        n: 0,
        kind,
        method: method.to_string(),
        path,
        query: query_text,
        changed_since,
        raw_query,
    });

    let injected = if fake.over_quota() { Some(Injected::ThrottleXml) } else { fake.run_hooks(&info) };
    let time = response_time(fake.now());
    let reply = match injected {
        Some(Injected::TruncatedJson) => {
            truncate(answer(&fake, &route, &info, &method, &params, &headers, Format::Json))
        }
        Some(other) => render_injected(other, &time, format),
        None => answer(&fake, &route, &info, &method, &params, &headers, format),
    };
    fake.finish_request(info.n, reply.status);
    reply.into_response(info.n)
}

/// Whether the request's bearer token is the fixed token or a live access
/// token; `Err(expired)` says whether it was a known token that expired.
fn authorized(fake: &FakeQbo, headers: &HeaderMap) -> Result<(), bool> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .ok_or(false)?;
    if token == fake.token() {
        return Ok(());
    }
    match crate::lock(&fake.inner.oauth).as_ref().map(|o| o.bearer(&token)) {
        Some(crate::oauth::Bearer::Valid) => Ok(()),
        Some(crate::oauth::Bearer::Expired) => Err(true),
        _ => Err(false),
    }
}

fn answer(
    fake: &FakeQbo,
    route: &Route,
    info: &RequestInfo,
    method: &Method,
    params: &[(String, String)],
    headers: &HeaderMap,
    format: Format,
) -> Reply {
    let time = response_time(fake.now());
    if let Err(expired) = authorized(fake, headers) {
        return unauthorized(&time, format, expired);
    }
    let realm = match route {
        Route::Query { realm } | Route::Cdc { realm } | Route::Read { realm, .. } => Some(realm),
        Route::Unknown { realm } => realm.as_ref(),
    };
    if let Some(realm) = realm {
        if realm != fake.realm_id() {
            return forbidden(realm, &time, format);
        }
    }
    let read_only = *method == Method::GET || (*method == Method::POST && matches!(route, Route::Query { .. }));
    if !read_only {
        return bad_request("500", "Unsupported Operation", "This fake only serves reads", &time, format);
    }
    match route {
        Route::Query { .. } => answer_query(fake, info.query.as_deref(), &time, format),
        Route::Cdc { .. } => answer_cdc(fake, params, &time, format),
        Route::Read { id, .. } => match fake.get(id) {
            Some(customer) => Reply::new(200, &json!({"Customer": customer, "time": time}), format),
            None => bad_request(
                "610",
                "Object Not Found",
                &format!("Object Not Found : Something you're trying to use has been made inactive or deleted. Customer {id}"),
                &time,
                format,
            ),
        },
        Route::Unknown { .. } => {
            let body = json!({
                "Fault": {
                    "Error": [{"Message": "Unsupported Operation", "Detail": format!("Operation {} is not supported by this fake", info.path), "code": "500"}],
                    "type": "ValidationFault",
                },
                "time": time,
            });
            Reply::new(404, &body, format)
        }
    }
}

fn answer_query(fake: &FakeQbo, text: Option<&str>, time: &str, format: Format) -> Reply {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return bad_request("4000", "Error parsing query", "QueryParserError: no query given", time, format);
    };
    let query = match query::parse(text) {
        Ok(q) => q,
        Err(e) => return bad_request(e.code, e.message, &e.detail, time, format),
    };
    let answer = query.execute(&fake.store());
    match answer {
        query::Answer::Count(n) => Reply::new(200, &json!({"QueryResponse": {"totalCount": n}, "time": time}), format),
        query::Answer::Page(page) if page.is_empty() => {
            Reply::new(200, &json!({"QueryResponse": {}, "time": time}), format)
        }
        query::Answer::Page(page) if format == Format::Json => {
            // The customers are kept as the JSON the API returns: splice them
            // in rather than parse and print them again.
            let body = format!(
                r#"{{"QueryResponse":{{"Customer":[{}],"startPosition":{},"maxResults":{}}},"time":{}}}"#,
                page.join(","),
                query.start_position,
                page.len(),
                Value::String(time.to_owned())
            );
            Reply { status: 200, headers: Vec::new(), content_type: "application/json".into(), body }
        }
        query::Answer::Page(page) => {
            let customers: Vec<Value> = page.iter().filter_map(|c| serde_json::from_str(c).ok()).collect();
            let body = json!({
                "QueryResponse": {"Customer": customers, "startPosition": query.start_position, "maxResults": page.len()},
                "time": time,
            });
            Reply::new(200, &body, format)
        }
    }
}

/// Changed customers (active or not) since `changedSince`, oldest change
/// first, and after them the tombstones of customers deleted outright: QBO
/// lists deletions last, so when more than 1000 objects changed, the cut
/// falls on the deletions.
fn answer_cdc(fake: &FakeQbo, params: &[(String, String)], time: &str, format: Format) -> Reply {
    let invalid = |detail: &str| bad_request("4001", "Invalid query", detail, time, format);
    let Some(entities) = param(params, "entities") else {
        return invalid("CDC requires the entities parameter");
    };
    if !entities.split(',').any(|e| e.trim().eq_ignore_ascii_case("customer")) {
        return invalid(&format!("This fake only supports CDC for Customer, not '{entities}'"));
    }
    let Some(since_text) = param(params, "changedSince") else {
        return invalid("CDC requires the changedSince parameter");
    };
    let Some(since) = parse_timestamp(&since_text) else {
        return invalid(&format!("changedSince '{since_text}' is not a valid date-time"));
    };
    let store = fake.store();
    if since < store.now - Duration::days(CDC_LOOKBACK_DAYS) {
        return invalid(&format!("changedSince '{since_text}' is more than {CDC_LOOKBACK_DAYS} days in the past"));
    }
    let mut customers: Vec<Value> = store
        .updated_since(Some(since))
        .take(CDC_MAX_OBJECTS)
        .filter_map(|c| serde_json::from_str(&c.json).ok())
        .collect();
    let mut tombstones: Vec<_> = store.tombstones.iter().filter(|t| t.deleted_at >= since).collect();
    tombstones.sort_by_key(|t| t.deleted_at);
    let room = CDC_MAX_OBJECTS - customers.len();
    customers.extend(tombstones.into_iter().take(room).map(|t| t.to_json()));
    drop(store);
    let block = if customers.is_empty() {
        json!({})
    } else {
        let n = customers.len();
        json!({"Customer": customers, "startPosition": 1, "maxResults": n, "totalCount": n})
    };
    Reply::new(200, &json!({"CDCResponse": [{"QueryResponse": [block]}], "time": time}), format)
}

// --- running -------------------------------------------------------------------------

/// A fake served on a background thread. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningFake {
    addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningFake {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn start(fake: FakeQbo) -> anyhow::Result<RunningFake> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name(format!("fake-qbo-{}", addr.port())).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            // Stop at once on drop: open keep-alive connections are simply cut when
            // the runtime goes away, rather than waited for.
            tokio::select! {
                _ = axum::serve(listener, router(fake)) => {}
                _ = rx => {}
            }
        });
    })?;
    Ok(RunningFake { addr, shutdown: Some(tx), thread: Some(thread) })
}
