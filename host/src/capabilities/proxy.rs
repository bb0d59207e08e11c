//! The `proxy` capability: the component's only way to the network.
//!
//! The host owns the provider's base URL and the credentials; the component
//! gives a relative path. Paths that could escape the base URL and headers
//! the host owns (or that could smuggle one) are refused here; pacing and
//! retries are the provider client's.

use super::{Interrupted, Limit, LimitExceeded, StopSignal};
use crate::bindings::portable_sync::sync::proxy as wit;
use crate::provider::client::{Method, Waits};
use crate::provider::{ProviderClient, ProviderError, ProviderRequest};
use http::header::{self, HeaderName, HeaderValue};

/// Headers the host sets or that belong to the connection, never the
/// component's: the credentials it must not see or forge (`authorization`,
/// `cookie`) and wasi-http's default forbidden list (`DEFAULT_FORBIDDEN_HEADERS`:
/// hop-by-hop headers that would let a request smuggle another).
const FORBIDDEN_HEADERS: [HeaderName; 11] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    HeaderName::from_static("http2-settings"),
];

/// Limits on the proxy per run.
#[derive(Debug, Clone, Copy)]
pub struct ProxyLimits {
    /// Requests the component may send in one run (retries not counted).
    pub requests_per_run: u32,
    /// Bytes of one response body.
    pub bytes_per_response: u64,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits { requests_per_run: 100_000, bytes_per_response: 64 << 20 }
    }
}

/// What the proxy did in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests sent (not counting retries).
    pub requests: u32,
    /// Retries after a 429.
    pub throttled: u32,
    /// Time spent waiting for the quota and before retries.
    pub waited: std::time::Duration,
}

/// The proxy capability of one run.
pub struct ProxyCtx {
    client: ProviderClient,
    limits: ProxyLimits,
    stats: ProxyStats,
    stop: StopSignal,
    /// The run's deadline: retries never wait past it.
    deadline: Option<std::time::Instant>,
}

impl ProxyCtx {
    pub fn new(
        client: ProviderClient,
        limits: ProxyLimits,
        stop: StopSignal,
        deadline: Option<std::time::Instant>,
    ) -> Self {
        ProxyCtx { client, limits, stats: ProxyStats::default(), stop, deadline }
    }

    pub fn stats(&self) -> ProxyStats {
        self.stats
    }
}

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
/// with control characters (CR and LF could end the header line early and
/// smuggle another one).
pub fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    for (name, value) in headers {
        let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
            return Err(format!("`{}` is not a valid header name", name.escape_debug()));
        };
        if FORBIDDEN_HEADERS.contains(&parsed) {
            return Err(format!("`{name}` is set by the host"));
        }
        // What HTTP allows in a value (HeaderValue: no CR, LF, NUL or other
        // ASCII control but tab), and no Unicode control character either.
        if value.chars().any(|c| c.is_control() && c != '\t') || HeaderValue::from_bytes(value.as_bytes()).is_err() {
            return Err(format!("the value of `{name}` contains a control character (CR, LF, NUL, …)"));
        }
    }
    Ok(())
}

impl wit::Host for ProxyCtx {
    fn send(&mut self, request: wit::Request) -> wasmtime::Result<Result<wit::Response, wit::Error>> {
        if let Err(why) = check_path(&request.path) {
            return Ok(Err(wit::Error::InvalidPath(why)));
        }
        if let Err(why) = check_headers(&request.headers) {
            return Ok(Err(wit::Error::ForbiddenHeader(why)));
        }
        // Between pages: what the run stored before this request, and its
        // checkpoint, are committed.
        if self.stop.is_stopped() {
            return Err(Interrupted.into());
        }
        if self.stats.requests >= self.limits.requests_per_run {
            return Err(LimitExceeded::new(
                Limit::RequestsPerRun,
                u64::from(self.limits.requests_per_run),
                format!("request {} to {}", self.stats.requests + 1, request.path),
            )
            .into());
        }
        self.stats.requests += 1;
        let request = ProviderRequest {
            method: match request.method {
                wit::Method::Get => Method::Get,
                wit::Method::Post => Method::Post,
                wit::Method::Put => Method::Put,
                wit::Method::Patch => Method::Patch,
                wit::Method::Delete => Method::Delete,
            },
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
            retry: request.retry,
        };
        let (result, Waits { throttled, waited }) =
            self.client.send(&request, self.limits.bytes_per_response, self.deadline, &|| self.stop.is_stopped());
        self.stats.throttled += throttled;
        self.stats.waited += waited;
        let retries = result.as_ref().map_or(0, |response| response.attempts.saturating_sub(1));
        crate::metrics::provider_request(retries, throttled);
        Ok(match result {
            Ok(response) => Ok(wit::Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
                attempts: response.attempts,
            }),
            Err(ProviderError::Interrupted) => return Err(Interrupted.into()),
            Err(ProviderError::BodyTooLarge(max)) => {
                return Err(
                    LimitExceeded::new(Limit::BytesPerResponse, max, format!("the answer to {}", request.path)).into()
                )
            }
            Err(ProviderError::Timeout(m)) => Err(wit::Error::Timeout(m)),
            Err(ProviderError::ConnectionFailed(m) | ProviderError::InvalidRequest(m)) => {
                Err(wit::Error::ConnectionFailed(m))
            }
            Err(ProviderError::Unauthorized(m)) => Err(wit::Error::Unauthorized(m)),
        })
    }
}
