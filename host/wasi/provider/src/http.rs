//! The `proxy` capability over `wasi:http/outgoing-handler`: the base URL and
//! the bearer token come from the environment and never reach the component;
//! the same path and header rules as sync-host; retries within a time budget
//! that honour `Retry-After` and the component's throttle advice; pacing to
//! the component's declared requests a minute.
//!
//! COPIED from sync-host (to share later, see store.rs): `check_path`,
//! `check_headers` (capabilities/proxy.rs), `RetryPolicy::wait` and
//! `doubling` (provider/retry.rs, schedule.rs), the query encoding and
//! `retry_after` (provider/client.rs), the burst/period of
//! `provider/pacing.rs::rate_limit`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::time::{Duration, Instant};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// Characters left as they are in query components (RFC 3986 unreserved).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Headers the host sets or that belong to the connection (sync-host's
/// list: the credentials, and wasi-http's default forbidden hop-by-hop
/// headers, which a runtime would refuse anyway, less clearly).
const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];
/// The largest chunk a WASI output stream takes in one blocking write.
const WRITE_CHUNK: usize = 4096;

/// Refuses anything that is not a plain path under the base URL.
pub fn check_path(path: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("`{path}` {why}"));
    if !path.starts_with('/') {
        return refuse("is not a path relative to the base URL (it must start with `/`)");
    }
    if path.contains("//") {
        return refuse("contains `//`");
    }
    if path.chars().any(|c| c == '\\' || c == '?' || c == '#' || c.is_control() || c == ' ') {
        return refuse("contains a character not allowed in a path (`\\`, `?`, `#`, space or control)");
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"].iter().any(|encoded| lower.contains(encoded)) {
        return refuse("contains an encoded `.`, `/`, `\\` or NUL");
    }
    if path.split('/').any(|segment| segment == ".." || segment == ".") {
        return refuse("contains a `.` or `..` segment");
    }
    Ok(())
}

/// Refuses headers the host owns, names that are not HTTP tokens, and values
/// with control characters.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("`{}` is not a valid header name", name.escape_debug()));
        }
        if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("`{name}` is set by the host"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("the value of `{name}` contains a control character (CR, LF, NUL, …)"));
        }
    }
    Ok(())
}

/// How retries wait (sync-host's `RetryPolicy`, same defaults).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_wait: Duration,
    pub budget: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(250),
            max_wait: Duration::from_secs(120),
            budget: Duration::from_secs(600),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Retryable {
    Throttled { retry_after: Option<Duration> },
    ServerError { retry_after: Option<Duration> },
    Failed,
}

fn doubling(base: Duration, attempt: u32, max: Duration) -> Duration {
    base.saturating_mul(1 << attempt.max(1).saturating_sub(1).min(16)).min(max)
}

impl RetryPolicy {
    fn wait(&self, last: Retryable, attempt: u32, throttled_in_a_row: u32, advice: Duration, jitter: f64) -> Duration {
        let backoff = || doubling(self.base, attempt, Duration::MAX).mul_f64(jitter);
        let wait = match last {
            Retryable::Throttled { retry_after: Some(after) } | Retryable::ServerError { retry_after: Some(after) } => {
                after
            }
            Retryable::Throttled { retry_after: None } if !advice.is_zero() => {
                doubling(advice, throttled_in_a_row, Duration::MAX)
            }
            _ => backoff(),
        };
        wait.min(self.max_wait)
    }
}

/// A GCRA pacer (what governor does for sync-host): a burst of a tenth of the
/// quota, then one request per period, so no minute holds more than the quota.
/// One request at a time here, so `max-concurrent` is always met.
pub struct Pacer {
    period: Option<Duration>,
    burst: u32,
    /// The theoretical arrival time of the next request.
    next: Option<Instant>,
}

impl Pacer {
    pub fn per_minute(requests: u32) -> Self {
        if requests == 0 {
            return Pacer { period: None, burst: 0, next: None };
        }
        let burst = (requests / 10).max(1);
        let steady = requests.saturating_sub(burst).max(1);
        Pacer { period: Some(Duration::from_secs(60) / steady), burst, next: None }
    }

    /// Sleeps until a request may go; returns how long it slept.
    fn acquire(&mut self) -> Duration {
        let Some(period) = self.period else { return Duration::ZERO };
        let now = Instant::now();
        let tolerance = period * self.burst.saturating_sub(1);
        let tat = self.next.unwrap_or(now).max(now);
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        let slept = allowed_at.saturating_duration_since(now);
        if !slept.is_zero() {
            std::thread::sleep(slept);
        }
        self.next = Some(tat + period);
        slept
    }
}

/// The provider's answer to the last attempt.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// Why a request produced no response. Never holds a header (the token).
pub enum Failure {
    Timeout(String),
    ConnectionFailed(String),
    Unauthorized(String),
    /// The answer is larger than the limit: stops the run.
    TooLarge(u64),
}

/// A request as the component gave it, already checked.
pub struct Request {
    pub method: Method,
    pub method_name: &'static str,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub retry: bool,
}

/// The provider's base URL, credentials, retries and pacing.
pub struct Client {
    scheme: Scheme,
    authority: String,
    /// The base URL's path, without a trailing `/` (often empty).
    prefix: String,
    token: Option<String>,
    pub policy: RetryPolicy,
    pacer: Pacer,
    throttle_wait: Duration,
}

impl Client {
    /// `base_url` like `https://quickbooks.api.intuit.com` (a trailing `/` is ignored).
    pub fn new(
        base_url: &str,
        token: Option<String>,
        policy: RetryPolicy,
        pacer: Pacer,
        throttle_wait: Duration,
    ) -> Result<Self, String> {
        let base = base_url.trim_end_matches('/');
        let (scheme, rest) = if let Some(rest) = base.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = base.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(format!("SYNC_BASE_URL `{base}` must start with http:// or https://"));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            // Not echoed: it may carry credentials.
            return Err("SYNC_BASE_URL names no host, or carries a user name or password".into());
        }
        Ok(Client {
            scheme,
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
            token,
            policy,
            pacer,
            throttle_wait,
        })
    }

    fn path_with_query(&self, request: &Request) -> String {
        let mut url = format!("{}{}", self.prefix, request.path);
        for (index, (key, value)) in request.query.iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.extend(utf8_percent_encode(key, QUERY));
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY));
        }
        url
    }

    /// Sends `request`, retrying 429, 5xx and failed connections within the
    /// budget when the request allows it.
    pub fn send(&mut self, request: &Request, max_body: u64) -> Result<Response, Failure> {
        let Some(token) = self.token.clone() else {
            return Err(Failure::Unauthorized("no access token: set SYNC_ACCESS_TOKEN".into()));
        };
        let deadline = Instant::now() + self.policy.budget;
        let path_q = self.path_with_query(request);
        let mut headers: Vec<(String, Vec<u8>)> =
            request.headers.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
        headers.push(("authorization".into(), format!("Bearer {token}").into_bytes()));
        let mut throttled_in_a_row = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pacer.acquire();
            let outcome = self.attempt(request, &path_q, &headers, max_body);
            let retryable = match &outcome {
                Ok(r) if r.status == 429 => {
                    throttled_in_a_row += 1;
                    Some(Retryable::Throttled { retry_after: retry_after(&r.headers) })
                }
                Ok(r) if r.status >= 500 => Some(Retryable::ServerError { retry_after: retry_after(&r.headers) }),
                Err(Failure::Timeout(_) | Failure::ConnectionFailed(_)) => Some(Retryable::Failed),
                _ => None,
            };
            let Some(last) = retryable.filter(|_| request.retry) else {
                return outcome.map(|r| Response { attempts: attempt, ..r });
            };
            if !matches!(last, Retryable::Throttled { retry_after: None }) {
                throttled_in_a_row = 0;
            }
            let jitter = 0.5 + (wasip2::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
            let wait = self.policy.wait(last, attempt, throttled_in_a_row, self.throttle_wait, jitter);
            if Instant::now() + wait > deadline {
                eprintln!(
                    "WARN proxy: {} {}: giving up after attempt {attempt}, the retry budget of {:?} would run out before the next",
                    request.method_name, request.path, self.policy.budget
                );
                return outcome.map(|r| Response { attempts: attempt, ..r });
            }
            match &outcome {
                Ok(r) => eprintln!(
                    "WARN proxy: {} {}: provider answered {}; retrying in {wait:?}",
                    request.method_name, request.path, r.status
                ),
                Err(Failure::Timeout(m) | Failure::ConnectionFailed(m)) => {
                    eprintln!("WARN proxy: {} {}: {m}; retrying in {wait:?}", request.method_name, request.path)
                }
                Err(_) => {}
            }
            std::thread::sleep(wait);
        }
    }

    /// One attempt. Every child resource (stream, pollable) is dropped before
    /// its parent: wasmtime traps otherwise.
    fn attempt(
        &self,
        request: &Request,
        path_q: &str,
        headers: &[(String, Vec<u8>)],
        max_body: u64,
    ) -> Result<Response, Failure> {
        let fields = Fields::from_list(headers)
            .map_err(|e| Failure::ConnectionFailed(format!("a request header was refused by the runtime: {e:?}")))?;
        let outgoing = OutgoingRequest::new(fields);
        let invalid = |what: &str| Failure::ConnectionFailed(format!("the runtime refused the request's {what}"));
        outgoing.set_method(&request.method).map_err(|()| invalid("method"))?;
        outgoing.set_scheme(Some(&self.scheme)).map_err(|()| invalid("scheme"))?;
        outgoing.set_authority(Some(&self.authority)).map_err(|()| invalid("authority"))?;
        outgoing.set_path_with_query(Some(path_q)).map_err(|()| invalid("path"))?;
        let body = outgoing.body().map_err(|()| invalid("body"))?;
        if let Some(bytes) = &request.body {
            let stream = body.write().map_err(|()| invalid("body stream"))?;
            for chunk in bytes.chunks(WRITE_CHUNK) {
                stream.blocking_write_and_flush(chunk).map_err(stream_failure)?;
            }
        }
        let options = RequestOptions::new();
        let timeout = Some(self.policy.timeout.as_nanos() as u64);
        let _ = (
            options.set_connect_timeout(timeout),
            options.set_first_byte_timeout(timeout),
            options.set_between_bytes_timeout(timeout),
        );
        let future = outgoing_handler::handle(outgoing, Some(options)).map_err(failure)?;
        OutgoingBody::finish(body, None).map_err(failure)?;
        let response = loop {
            match future.get() {
                Some(Ok(result)) => break result.map_err(failure)?,
                Some(Err(())) => return Err(Failure::ConnectionFailed("the response was taken twice".into())),
                None => future.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| Failure::ConnectionFailed("no response body".into()))?;
        let mut buffer = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| Failure::ConnectionFailed("no response body stream".into()))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => {
                        buffer.extend_from_slice(&chunk);
                        if buffer.len() as u64 > max_body {
                            return Err(Failure::TooLarge(max_body));
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(Failure::ConnectionFailed(format!("reading the response: {}", e.to_debug_string())))
                    }
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(Response { status, headers, body: buffer, attempts: 1 })
    }
}

fn stream_failure(error: StreamError) -> Failure {
    match error {
        StreamError::Closed => Failure::ConnectionFailed("the request body stream closed".into()),
        StreamError::LastOperationFailed(e) => {
            Failure::ConnectionFailed(format!("writing the request body: {}", e.to_debug_string()))
        }
    }
}

/// wasi:http's error codes as the proxy's errors. Never a header in them.
fn failure(code: ErrorCode) -> Failure {
    match code {
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => Failure::Timeout(format!("{code:?}")),
        other => Failure::ConnectionFailed(format!("{other:?}")),
    }
}

/// `Retry-After` as seconds (what providers mostly send) or an HTTP date.
fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let value = headers.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.trim())?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(date.timestamp().saturating_sub(now).max(0) as u64))
}
