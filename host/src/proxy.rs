//! The proxy capability: the guest's only way to the network.
//!
//! The host owns the provider's base URL and the bearer token; the guest
//! gives a relative path. Paths that could escape the base URL are refused at
//! the WIT boundary, and retries (429, 5xx, connection failures) happen here,
//! with exponential backoff, jitter and `Retry-After`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use std::time::Duration;

use crate::bindings::portable_sync::sync::proxy as wit;
use crate::runtime::RunState;

/// Characters left as they are in query components (RFC 3986 unreserved).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Headers only the host sets.
const FORBIDDEN_HEADERS: &[&str] = &["authorization", "proxy-authorization", "host", "cookie"];
/// The host's cap on retries, whatever the guest asks for.
const MAX_RETRIES_CAP: u32 = 8;
/// Longest wait before a retry, `Retry-After` included.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Largest response body accepted.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// HTTP method of a proxied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A request relative to the provider's base URL.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub max_retries: u32,
}

/// The provider's answer to the last attempt.
#[derive(Debug, Clone)]
pub struct ProxyResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// Why a request produced no response. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("forbidden header: {0}")]
    ForbiddenHeader(String),
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("connection failed: {0}")]
    ConnectionFailed(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
}

/// How retries wait.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First backoff; doubles on each retry.
    pub base: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_millis(250), timeout: Duration::from_secs(30) }
    }
}

/// Sends requests to one provider with one connection's credentials.
pub struct HttpProxy {
    base_url: String,
    token: Option<String>,
    agent: ureq::Agent,
    policy: RetryPolicy,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is deliberately not shown.
        f.debug_struct("HttpProxy").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl HttpProxy {
    /// `base_url` like `https://quickbooks.api.intuit.com` (a trailing `/` is ignored).
    pub fn new(base_url: &str, token: Option<String>, policy: RetryPolicy) -> anyhow::Result<Self> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            anyhow::bail!("base URL `{base_url}` must start with http:// or https://");
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(policy.timeout))
            .build()
            .into();
        Ok(HttpProxy { base_url, token: token.filter(|t| !t.is_empty()), agent, policy })
    }

    /// Sends a request, retrying as the policy and `max_retries` allow.
    pub fn send(&self, request: &ProxyRequest) -> Result<ProxyResponse, ProxyError> {
        check_path(&request.path)?;
        for (name, _) in &request.headers {
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(ProxyError::ForbiddenHeader(format!("`{name}` is set by the host")));
            }
        }
        if self.token.is_none() {
            return Err(ProxyError::Unauthorized(
                "the connection has no access token (pass --token or set QBO_ACCESS_TOKEN)".into(),
            ));
        }
        let url = self.url(request);
        let retries = request.max_retries.min(MAX_RETRIES_CAP);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(request, &url);
            let retryable = match &outcome {
                Ok(response) => response.status == 429 || response.status >= 500,
                Err(error) => matches!(error, ProxyError::Timeout(_) | ProxyError::ConnectionFailed(_)),
            };
            if !retryable || attempt > retries {
                return outcome.map(|response| ProxyResponse { attempts: attempt, ..response });
            }
            let wait = match &outcome {
                Ok(response) => retry_after(&response.headers).unwrap_or_else(|| self.backoff(attempt)),
                Err(_) => self.backoff(attempt),
            }
            .min(MAX_BACKOFF);
            match &outcome {
                Ok(response) => tracing::warn!(
                    target: "proxy",
                    attempt,
                    "provider answered {}; retrying in {wait:?}",
                    response.status
                ),
                Err(error) => tracing::warn!(target: "proxy", attempt, "{error}; retrying in {wait:?}"),
            }
            std::thread::sleep(wait);
        }
    }

    fn url(&self, request: &ProxyRequest) -> String {
        let mut url = format!("{}{}", self.base_url, request.path);
        for (index, (key, value)) in request.query.iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.extend(utf8_percent_encode(key, QUERY));
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY));
        }
        url
    }

    fn attempt(&self, request: &ProxyRequest, url: &str) -> Result<ProxyResponse, ProxyError> {
        let method = match request.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        };
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(token) = &self.token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        let http_request = builder
            .body(request.body.clone().unwrap_or_default())
            .map_err(|e| ProxyError::InvalidPath(format!("cannot build the request: {e}")))?;
        let mut response = self.agent.run(http_request).map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|e| classify(&e))?;
        Ok(ProxyResponse { status, headers, body, attempts: 1 })
    }

    /// Exponential backoff with full jitter between half and all of the step.
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self.policy.base.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
        let jitter = rand::rng().random_range(0.5..=1.0);
        step.mul_f64(jitter)
    }
}

fn classify(error: &ureq::Error) -> ProxyError {
    match error {
        ureq::Error::Timeout(_) => ProxyError::Timeout(error.to_string()),
        _ => ProxyError::ConnectionFailed(error.to_string()),
    }
}

/// `Retry-After` as seconds (the form QuickBooks uses) or an HTTP date.
fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let value = headers.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.trim())?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Refuses anything that is not a plain path under the base URL.
pub fn check_path(path: &str) -> Result<(), ProxyError> {
    let refuse = |why: &str| Err(ProxyError::InvalidPath(format!("`{path}` {why}")));
    if !path.starts_with('/') {
        return refuse("is not a path relative to the base URL (it must start with `/`)");
    }
    if path.starts_with("//") || path.contains("//") {
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

impl wit::Host for RunState {
    fn send(&mut self, request: wit::Request) -> Result<wit::Response, wit::Error> {
        let request = ProxyRequest {
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
            max_retries: request.max_retries,
        };
        let response = self.proxy.send(&request).map_err(|error| match error {
            ProxyError::InvalidPath(m) => wit::Error::InvalidPath(m),
            ProxyError::ForbiddenHeader(m) => wit::Error::ForbiddenHeader(m),
            ProxyError::Timeout(m) => wit::Error::Timeout(m),
            ProxyError::ConnectionFailed(m) => wit::Error::ConnectionFailed(m),
            ProxyError::Unauthorized(m) => wit::Error::Unauthorized(m),
        })?;
        Ok(wit::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
            attempts: response.attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert!(check_path("/v3/company/123/query").is_ok());
        for bad in [
            "https://evil.example/v3",
            "v3/company",
            "//evil.example/x",
            "/v3/../../admin",
            "/v3/./x",
            "/v3/%2e%2e/admin",
            "/v3/%2F/x",
            "/v3\\..\\x",
            "/v3/q?x=1",
            "/v3#frag",
            "/v3/a b",
        ] {
            assert!(matches!(check_path(bad), Err(ProxyError::InvalidPath(_))), "{bad} must be refused");
        }
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let headers = vec![("retry-after".to_string(), "2".to_string())];
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let past = vec![("retry-after".to_string(), "Wed, 21 Oct 2015 07:28:00 GMT".to_string())];
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        assert_eq!(retry_after(&[]), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let proxy = HttpProxy::new("http://127.0.0.1:1", None, RetryPolicy::default()).unwrap();
        assert!(proxy.backoff(1) <= Duration::from_millis(250));
        assert!(proxy.backoff(3) >= Duration::from_millis(500));
        assert!(proxy.backoff(40) <= MAX_BACKOFF);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let proxy = HttpProxy::new("http://127.0.0.1:1", Some("s3cret".into()), RetryPolicy::default()).unwrap();
        assert!(!format!("{proxy:?}").contains("s3cret"));
    }

    #[test]
    fn without_a_token_nothing_is_sent() {
        let proxy = HttpProxy::new("http://127.0.0.1:1", None, RetryPolicy::default()).unwrap();
        let request = ProxyRequest {
            method: Method::Get,
            path: "/x".into(),
            query: vec![],
            headers: vec![],
            body: None,
            max_retries: 3,
        };
        assert!(matches!(proxy.send(&request), Err(ProxyError::Unauthorized(_))));
    }

    #[test]
    fn host_owned_headers_are_refused() {
        let proxy = HttpProxy::new("http://127.0.0.1:1", Some("t".into()), RetryPolicy::default()).unwrap();
        let request = ProxyRequest {
            method: Method::Get,
            path: "/x".into(),
            query: vec![],
            headers: vec![("Authorization".into(), "Bearer stolen".into())],
            body: None,
            max_retries: 0,
        };
        assert!(matches!(proxy.send(&request), Err(ProxyError::ForbiddenHeader(_))));
    }
}
